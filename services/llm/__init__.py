"""Model clients of the annotator and the criticizer.

One async interface, :class:`~services.llm.types.LLMClient`, over

* any OpenAI-compatible server (OpenAI, vLLM, llama.cpp), through the
  ``openai`` SDK (:mod:`services.llm.openai_client`), and
* the Anthropic API, through the ``anthropic`` SDK
  (:mod:`services.llm.anthropic_client`).

Retry policy (one loop, visible): the SDKs' own retries are disabled
(``max_retries=0``). A client call makes exactly one HTTP request and maps a
transient failure (429, 5xx, timeout, connection error, malformed response) to
:class:`~services.runtime.retry.RetryableError` with ``retry_after_s`` taken
from ``Retry-After`` when the server sent one. The stage runner owns the
attempts (``max_attempts``, capped exponential backoff with jitter) and
dead-letters after the last one. Nothing else retries, so attempts never
multiply.

The pieces every prompt needs live here too: the nonce-fenced data block
(:mod:`~services.llm.datablock`), bracketed-output splitting
(:mod:`~services.llm.outputs`), token log-probability helpers
(:mod:`~services.llm.logprobs`) and constrained-decoding grammars
(:mod:`~services.llm.grammar`).

On top of the clients sit the LLM implementations of the backend protocols
(:mod:`services.backend_api.protocols`), as :mod:`services.fewshot` holds the few-shot
ones: the annotator (:mod:`services.llm.annotator`: naive and chain-of-thought
prompts, strict parsing, confidence from logprobs) and the critic
(:mod:`services.llm.critic`: the paper's seven strategies). The stages never
build them themselves: :mod:`services.backends.build` does.
"""
