"""The batch driver as a :class:`~services.runtime.app.Service`: wiring and lifecycle.

Builds every client once (task registry, batch provider, journal) and runs
the driver under the project's one lifecycle: gRPC health reports SERVING
once the state is restored and the inputs are positioned; SIGTERM finishes
the current step (a transaction is never cut) and exits 0; a driver error
exits 1, and the restart recovers from the state topic.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from services.batchapi.driver import BatchDriver
from services.batchapi.journal import Journal
from services.batchapi.kinds import PENDING_TOPIC, make_kind
from services.batchapi.providers import make_provider
from services.batchapi.settings import BatchSettings
from services.runtime.config import KafkaSettings
from services.runtime.grpc_server import GrpcServer
from services.runtime.tasks import TaskRegistry
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)


class BatchProcess:
    """Registry, provider, journal and driver, started and stopped in order."""

    def __init__(
        self, settings: BatchSettings, kafka: KafkaSettings, catalog: TopicCatalog | None = None
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        catalog = catalog or default_catalog()
        group = settings.group_id or f"act-batch-{settings.stage_kind}"
        # First, so that an unknown kind or strategy fails before any client exists.
        kind = make_kind(settings.stage_kind, settings.llm, settings.default_strategy)
        self.tasks = TaskRegistry(kafka, catalog=catalog)
        self.provider = make_provider(settings.llm, anthropic_skew_s=settings.anthropic_skew_s)
        self.journal = Journal(
            kafka,
            catalog,
            group_id=group,
            # The kind's own input (items, or annotations as the streaming
            # criticizer reads them) and the retries of failed attempts.
            input_topics=(kind.input_topic, PENDING_TOPIC),
            max_record_bytes=settings.max_record_bytes,
        )
        self.driver = BatchDriver(settings, self.journal, self.provider, kind, self.tasks)
        self.server: GrpcServer | None = None
        self._run: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Health NOT_SERVING, tasks, restore, then run the loop and report SERVING."""
        s = self.settings.service
        self.server = GrpcServer(s.grpc_port, (), s.grpc_reflection, tls=s.grpc_server_tls())
        await self.server.start()
        await self.tasks.start()
        await self.driver.restore()
        self._run = asyncio.create_task(self.driver.run(), name="act-batch-driver")
        await self.server.set_serving(True)
        log.info(
            "batch_driver_started", provider=self.provider.name, stage_kind=self.driver.kind.name
        )

    async def wait(self, stop: asyncio.Event) -> int:
        """Until SIGTERM (0) or the loop ends on its own (1: it failed)."""
        assert self._run is not None
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({self._run, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        return 1 if self._run.done() else 0

    async def stop(self) -> int:
        """Finish the current step, close everything; 1 when the loop failed."""
        code = 0
        if self.server is not None:
            await self.server.set_serving(False)
        if self._run is not None:
            self.driver.stop()
            try:
                await asyncio.wait_for(self._run, timeout=60)
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                log.error(
                    "batch_driver_failed", error_type=type(exc).__name__, error=str(exc)[:500]
                )
                code = 1
        for close in (self.journal.close, self.provider.aclose, self.tasks.stop):
            with contextlib.suppress(Exception):
                await close()
        if self.server is not None:
            await self.server.stop()
        return code
