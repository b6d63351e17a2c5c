"""The LLM annotator: :class:`~services.llm.annotator.backend.LLMAnnotatorBackend`.

The paper's annotation prompts (:mod:`~services.llm.annotator.prompts`, naive
and chain-of-thought), their strict parsing
(:mod:`~services.llm.annotator.parsing`) and the backend that asks a model over
any :class:`~services.llm.types.LLMClient`. Built by :mod:`services.backends.build`.
"""
