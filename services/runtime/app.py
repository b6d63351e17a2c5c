"""Process lifecycle of a service: logs, metrics, gRPC health, signals.

A stage's ``__main__`` builds its settings and stage once (the factory) and
calls :func:`run_stage_main`; SIGTERM drains in-flight work, commits it and exits 0.

SIGTERM during start-up (before the gRPC health service reports SERVING)
abandons the start: nothing has been consumed, so nothing is committed, and
the process exits 0. Only the interpreter's own start (imports, before
:func:`run_stage_main` runs) is unguarded: a SIGTERM there ends the process
with the default action (exit status -15), equally without any effect on
Kafka. Callers that need a clean exit status wait for SERVING first.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

import structlog

from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.grpc_server import GrpcServer, Registration
from services.runtime.logging import configure_logging
from services.runtime.metrics import start_metrics_server
from services.runtime.runner import RuntimeFatalError, StageRunner
from services.runtime.stage import M, Stage
from services.runtime.topics import TopicCatalog


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (graceful shutdown)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def serve_stage(
    stage: Stage[M],
    kafka: KafkaSettings,
    settings: StageSettings,
    registrations: Sequence[Registration] = (),
    catalog: TopicCatalog | None = None,
) -> int:
    """Run a stage with its gRPC server until SIGTERM; returns the exit code."""
    log = structlog.get_logger(__name__)
    # Handlers first: a SIGTERM that arrives while the servers and the
    # consumer start must not kill the process with the default action.
    stop = asyncio.Event()
    install_signal_handlers(stop)
    start_metrics_server(settings.metrics_port)
    server = GrpcServer(settings.grpc_port, registrations, settings.grpc_reflection)
    await server.start()
    runner = StageRunner(stage, kafka, settings, catalog)
    run = asyncio.create_task(runner.run(), name="act-runner")
    stopper = asyncio.create_task(stop.wait())
    started = asyncio.create_task(runner.started.wait())
    await asyncio.wait({run, started, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set() and not runner.started.is_set():
        # SIGTERM during start-up: nothing was consumed, so there is nothing
        # to drain or commit. Cancel the start and exit 0.
        log.info("stopped_during_startup")
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run
        started.cancel()
        stopper.cancel()
        await server.stop()
        return 0
    if not run.done():
        await server.set_serving(True)
    await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
    await server.set_serving(False)
    runner.stop()
    code = 0
    try:
        await run
    except RuntimeFatalError as exc:
        log.error("fatal", error=str(exc))
        code = 1
    finally:
        stopper.cancel()
        started.cancel()
        await server.stop()
    return code


def run_stage_main(
    stage: Stage[M],
    kafka: KafkaSettings,
    settings: StageSettings,
    registrations: Sequence[Registration] = (),
) -> None:
    """Entry point helper for ``python -m services.<stage>``."""
    configure_logging(stage.name, settings.log_level, settings.log_json)
    sys.exit(asyncio.run(serve_stage(stage, kafka, settings, registrations)))
