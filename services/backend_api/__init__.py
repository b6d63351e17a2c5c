"""Model backends of the annotator and the criticizer.

Every backend (an LLM behind an OpenAI-compatible or Anthropic API, the local
few-shot pair) implements :class:`~services.backend_api.protocols.AnnotatorBackend` or
:class:`~services.backend_api.protocols.CriticBackend`, so the annotator and criticizer
services do not know which one they run.
"""
