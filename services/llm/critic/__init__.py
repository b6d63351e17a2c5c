"""The LLM critic: :class:`~services.llm.critic.backend.LLMCriticBackend`.

The paper's seven criticism strategies: prompts (:mod:`~services.llm.critic.prompts`),
parsing and eps (:mod:`~services.llm.critic.scoring`) and the backend that asks
a model over any :class:`~services.llm.types.LLMClient`. Built by
:mod:`services.backends.build`.
"""
