"""Model backends of the annotator and the criticizer.

Every backend (an LLM behind an OpenAI-compatible or Anthropic API, the local
few-shot pair) implements :class:`~services.models.base.AnnotatorBackend` or
:class:`~services.models.base.CriticBackend`, so the annotator and criticizer
services do not know which one they run.
"""
