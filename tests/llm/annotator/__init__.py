"""Tests of the LLM annotator (services.llm.annotator)."""
