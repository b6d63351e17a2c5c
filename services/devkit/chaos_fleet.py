"""The six processes of a chaos run and their supervision through kills and restarts.

:func:`make_fleet` configures annotator, criticizer (the CPU few-shot backend),
sampler, review gateway, trainer and the ingest service as
:class:`~services.devkit.processes.ServiceProcess` es under one topic prefix,
with the demo's :meth:`~services.devkit.processes.Supervisor.of`. The stages get short consumer
session timeouts, so a SIGKILLed member is replaced in seconds rather than
the production defaults' minutes, and many handler attempts, so a database or
broker outage is waited out rather than dead-lettered.

:class:`Fleet` adds what a chaos run needs on top of the
:class:`~services.devkit.processes.Supervisor`: start a service and wait for
gRPC SERVING (retrying a start that dies, e.g. while the broker is down),
kill one with SIGKILL and restart it, and a monitor that restarts any service
that exits on its own (a stage exits non-zero after its recovery attempts, so
an orchestrator restarts it; here the monitor is the orchestrator). One lock
per service keeps the monitor and the chaos loop from restarting the same
process twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

from services.devkit.processes import (
    ServiceProcess,
    Supervisor,
    sigkill,
    wait_serving,
)

#: The services of a chaos run, in start order (ingest last: it needs the migrated schema).
SERVICES = ("annotator", "criticizer", "sampler", "review-gateway", "trainer", "ingest")

#: Stage knobs of every Kafka stage: fast failure detection, patient retries.
_STAGE_KNOBS = {
    "SESSION_TIMEOUT_MS": "6000",
    "HEARTBEAT_INTERVAL_MS": "1000",
    "MAX_POLL_INTERVAL_MS": "60000",
    "MAX_ATTEMPTS": "40",
    "BACKOFF_MAX_MS": "2000",
}


def make_fleet(
    *,
    bootstrap: str,
    prefix: str,
    database_url: str,
    schema: str,
    admin_token: str,
    run_dir: Path,
    dataset: str,
) -> Supervisor:
    """The six services' processes for one chaos run (not started)."""
    model = {"BACKEND": "local-fewshot", "FEWSHOT_DATASET": dataset, **_STAGE_KNOBS}
    database = {"DATABASE_URL": database_url, "DATABASE_SCHEMA": schema, "ADMIN_TOKEN": admin_token}
    specs: list[tuple[str, str, str, dict[str, str]]] = [
        ("annotator", "services.annotator", "ACT_ANNOTATOR_", model),
        ("criticizer", "services.criticizer", "ACT_CRITICIZER_", model),
        ("sampler", "services.sampler", "ACT_SAMPLER_", dict(_STAGE_KNOBS)),
        (
            "review-gateway",
            "services.review_gateway",
            "ACT_GATEWAY_",
            {
                **database,
                **_STAGE_KNOBS,
                "DATA_DIR": str(run_dir / "gateway"),
                "HTTP_PORT": "0",
                # A lease held by a reviewer whose gateway died comes back soon.
                "LEASE_SECONDS": "15",
                "REAPER_INTERVAL_S": "1",
                "OUTBOX_POLL_INTERVAL_S": "0.05",
            },
        ),
        (
            "trainer",
            "services.trainer",
            "ACT_TRAINER_",
            {
                **_STAGE_KNOBS,
                "STORE_PATH": str(run_dir / "trainer" / "store.sqlite"),
                "CHECKPOINT_DIR": str(run_dir / "trainer" / "checkpoints"),
                "DEVICE": "cpu",
                "TORCH_THREADS": "1",
            },
        ),
        (
            "ingest",
            "services.ingest",
            "ACT_INGEST_",
            # Small chunks: a SIGKILL republishes at most one chunk (services.ingest.ledger).
            {**database, "TASK_WAIT_S": "5", "MAX_IN_FLIGHT": "32"},
        ),
    ]
    return Supervisor.of(specs, bootstrap=bootstrap, topic_prefix=prefix, log_dir=run_dir / "logs")


def log_tail(service: ServiceProcess, chars: int = 3000) -> str:
    """The end of a service's log, for failure messages."""
    try:
        text = service.log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return text[-chars:]


class FleetError(RuntimeError):
    """A service could not be brought back to SERVING in time (the message has its log)."""


class Fleet:
    """Start, kill, restart and watch the services of a :class:`Supervisor`."""

    def __init__(self, services: Supervisor, *, serving_timeout_s: float = 180.0) -> None:
        self.services = services
        self.serving_timeout_s = serving_timeout_s
        self.kills: Counter[str] = Counter()
        #: Exits nobody asked for (the monitor restarted them), by service.
        self.crashes: Counter[str] = Counter()
        self._locks = {s.name: asyncio.Lock() for s in services}
        self._monitor: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def start_all(self) -> None:
        """Start every service in order, each SERVING before the next starts."""
        for service in self.services:
            service.log.parent.mkdir(parents=True, exist_ok=True)
            async with self._locks[service.name]:
                await self._bring_up(service)

    async def _bring_up(self, service: ServiceProcess) -> None:
        """Start ``service`` until it answers SERVING; a start that dies is retried
        (the broker or the database may still be coming back)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.serving_timeout_s
        delay = 0.5
        while True:
            if service.proc is None or service.proc.poll() is not None:
                service.start()
            assert service.proc is not None
            left = deadline - loop.time()
            try:
                await wait_serving(
                    service.grpc_port, service.proc, what=service.name, timeout=max(1.0, left)
                )
                return
            except AssertionError as exc:
                if service.proc.poll() is None or loop.time() + delay >= deadline:
                    raise FleetError(
                        f"{service.name} not SERVING within {self.serving_timeout_s:.0f} s "
                        f"({exc}); its log ends:\n{log_tail(service)}"
                    ) from None
                self.crashes[service.name] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def kill_and_restart(self, name: str, downtime_s: float = 0.0) -> None:
        """SIGKILL ``name`` (no warning: a crash), wait ``downtime_s``, start it
        again and wait until it is SERVING."""
        service = self.services[name]
        async with self._locks[name]:
            if service.proc is not None and service.proc.poll() is None:
                await asyncio.to_thread(sigkill, service.proc)
            self.kills[name] += 1
            await asyncio.sleep(downtime_s)
            await self._bring_up(service)

    async def restart_exited(self) -> None:
        """Restart every service that exited on its own (counted as a crash)."""
        for service in self.services:
            lock = self._locks[service.name]
            if lock.locked() or service.exited() is None:
                continue
            async with lock:
                if service.exited() is not None:
                    self.crashes[service.name] += 1
                    await self._bring_up(service)

    def start_monitor(self, interval_s: float = 0.5) -> None:
        """Watch the services in the background (see :meth:`restart_exited`)."""

        async def watch() -> None:
            try:
                while True:
                    await self.restart_exited()
                    await asyncio.sleep(interval_s)
            except FleetError as exc:
                self._failure = exc

        self._monitor = asyncio.create_task(watch())

    def check(self) -> None:
        """Raise the monitor's failure, if it had one."""
        if self._failure is not None:
            raise self._failure

    async def stop_monitor(self) -> None:
        """Stop watching (before the services are stopped on purpose)."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None

    async def stop_all(self, timeout_s: float = 30.0) -> dict[str, int | None]:
        """Stop every service (SIGTERM, then SIGKILL), last started first."""
        await self.stop_monitor()
        return await asyncio.to_thread(self.services.stop, timeout_s)
