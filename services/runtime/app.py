"""Process lifecycle of every service: logs, metrics, gRPC health, signals.

One lifecycle serves every process (the pipeline stages, the review gateway
and the API services): a :class:`Service` is started, watched until SIGTERM
or a component failure, and stopped once; :func:`serve` owns the signals and
the exit code, :func:`run_main` the logging and the process exit.

- SIGTERM after start-up stops taking work, drains what is in flight,
  commits it and exits 0.
- SIGTERM during start-up (before the gRPC health service reports SERVING)
  abandons the start: nothing has been consumed, so nothing is committed, and
  the process exits 0. Only the interpreter's own start (imports, before
  :func:`run_main` runs) is unguarded: a SIGTERM there ends the process with
  the default action (exit status -15), equally without any effect on Kafka.
  Callers that need a clean exit status wait for SERVING first.
- A component that fails (a fatal runner error, a server that stops) ends
  the process with exit 1 so that the orchestrator restarts it; an unusable
  gRPC TLS file ends it with exit 2 before anything starts.

A stage's ``__main__`` builds its settings and stage once (the factory) and
calls :func:`run_stage_main`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from services.runtime.config import KafkaSettings, ServiceSettings, StageSettings
from services.runtime.grpc_server import GrpcServer, Registration
from services.runtime.grpc_tls import GrpcTlsError
from services.runtime.logging import configure_logging
from services.runtime.metrics import start_metrics_server
from services.runtime.runner import RuntimeFatalError, StageRunner
from services.runtime.stage import M, Stage
from services.runtime.topics import TopicCatalog

log = structlog.get_logger(__name__)


class Service(Protocol):
    """What :func:`serve` runs: started once, watched, stopped once."""

    async def start(self) -> None:
        """Start every component; return once the process serves (health SERVING).

        May be cancelled (SIGTERM during start-up); :meth:`stop` follows.
        """

    async def wait(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set (return 0) or a component fails (return 1)."""

    async def stop(self) -> int:
        """Stop taking work, drain and commit, close; 0, or 1 when the drain failed.

        Called exactly once, also after a failed or cancelled :meth:`start`.
        """


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (graceful shutdown)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def serve(service: Service, metrics_port: int | None) -> int:
    """Run ``service`` until SIGTERM/SIGINT or its failure; returns the exit code."""
    # Handlers first: a SIGTERM that arrives while the servers and the
    # consumers start must not kill the process with the default action.
    stop = asyncio.Event()
    install_signal_handlers(stop)
    if metrics_port:
        start_metrics_server(metrics_port)
    stopper = asyncio.create_task(stop.wait())
    starting = asyncio.create_task(service.start(), name="act-start")
    code = 0
    try:
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            # SIGTERM during start-up: nothing was consumed, so there is
            # nothing to drain or commit. Cancel the start and exit 0.
            log.info("stopped_during_startup")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        starting.result()  # a start that failed raises here (TLS: exit 2 in run_main)
        code = await service.wait(stop)
    finally:
        stopper.cancel()
        if not starting.done():
            starting.cancel()
        code = max(code, await service.stop())
    return code


def run_main(name: str, build: Callable[[], Service], settings: ServiceSettings) -> int:
    """Entry point body of ``python -m services.<name>``: logs, serve, exit code.

    ``settings`` gives the log level and format and the metrics port. Returns 2
    when a gRPC TLS file cannot be used (the error names the setting).
    """
    configure_logging(name, settings.log_level, settings.log_json)
    try:
        return asyncio.run(serve(build(), settings.metrics_port))
    except GrpcTlsError as exc:
        log.error("grpc_tls_invalid", error=str(exc))
        return 2


class StageProcess:
    """A pipeline stage as a :class:`Service`: the runner plus its gRPC server."""

    def __init__(
        self,
        stage: Stage[M],
        kafka: KafkaSettings,
        settings: StageSettings,
        registrations: Sequence[Registration] = (),
        catalog: TopicCatalog | None = None,
    ) -> None:
        self.stage = stage
        self.kafka = kafka
        self.settings = settings
        self.registrations = registrations
        self.catalog = catalog
        self.server: GrpcServer | None = None
        self.runner: StageRunner[M] | None = None
        self._run: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve health (NOT_SERVING), start the runner, report SERVING once it consumes."""
        s = self.settings
        # TLS files are read before anything starts: a bad one fails the start.
        tls = s.grpc_server_tls()
        self.server = GrpcServer(s.grpc_port, self.registrations, s.grpc_reflection, tls=tls)
        await self.server.start()
        self.runner = StageRunner(self.stage, self.kafka, s, self.catalog)
        self._run = asyncio.create_task(self.runner.run(), name="act-runner")
        started = asyncio.create_task(self.runner.started.wait())
        try:
            await asyncio.wait({self._run, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if not self._run.done():
            await self.server.set_serving(True)

    async def wait(self, stop: asyncio.Event) -> int:
        """Until SIGTERM, or until the runner ends on its own (its error is read in stop)."""
        assert self._run is not None
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({self._run, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        return 0

    async def stop(self) -> int:
        """Report NOT_SERVING, drain and commit (or abandon an unfinished start)."""
        code = 0
        if self.server is not None:
            await self.server.set_serving(False)
        if self._run is not None and self.runner is not None:
            if self.runner.started.is_set():
                self.runner.stop()
            else:
                self._run.cancel()  # nothing consumed yet: nothing to drain
            try:
                await self._run
            except asyncio.CancelledError:
                pass
            except RuntimeFatalError as exc:
                log.error("fatal", error=str(exc))
                code = 1
        if self.server is not None:
            await self.server.stop()
        return code


def run_stage_main(
    stage: Stage[M],
    kafka: KafkaSettings,
    settings: StageSettings,
    registrations: Sequence[Registration] = (),
) -> None:
    """Entry point helper for ``python -m services.<stage>``: exits with serve's code."""
    sys.exit(
        run_main(stage.name, lambda: StageProcess(stage, kafka, settings, registrations), settings)
    )
