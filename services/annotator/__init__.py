"""Annotator service: items -> annotations through a model backend (naive or chain-of-thought)."""
