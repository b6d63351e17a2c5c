"""Tests of the LLM critic (services.llm.critic)."""
