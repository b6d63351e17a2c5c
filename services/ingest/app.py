"""Assembly of the ingest service: database, producer, task registry, gRPC API.

:class:`IngestService` builds every client once and hands it to
:class:`~services.ingest.ops.IngestOps`, so ``__main__``, the tests and the
benchmark start the same thing. The same process serves
``act.v1.PipelineStatusService`` (:mod:`services.pipeline_status`), sharing
its task registry. It is a :class:`services.runtime.app.Service`: the process
runs it with the lifecycle of every service (``run_main``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from services.ingest.api import IngestServicer, registration
from services.ingest.ledger import Ledger
from services.ingest.ops import INGEST_ROLES, IngestOps, TaskBook
from services.ingest.settings import IngestSettings
from services.pipeline_status.api import registration as status_registration
from services.pipeline_status.ops import StatusOps
from services.pipeline_status.settings import PipelineStatusSettings
from services.review_gateway.auth import Authenticator
from services.review_gateway.db import open_database
from services.review_gateway.store import ReviewStore
from services.runtime.claimcheck import open_store
from services.runtime.config import KafkaSettings
from services.runtime.grpc_server import GrpcServer
from services.runtime.kafka_clients import idempotent_producer
from services.runtime.tasks import TaskRegistry
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)


class IngestService:
    """One ingest process: every component, started and stopped together."""

    def __init__(
        self,
        settings: IngestSettings,
        kafka: KafkaSettings,
        catalog: TopicCatalog | None = None,
        host: str = "[::]",
        status: PipelineStatusSettings | None = None,
    ) -> None:
        self.settings = settings
        self.status_settings = status or _status_settings(settings)
        self.kafka = kafka
        self.catalog = catalog or default_catalog()
        self.host = host
        self.store: ReviewStore | None = None
        self.producer: AIOKafkaProducer | None = None
        self.tasks: TaskRegistry | None = None
        self.ops: IngestOps | None = None
        self.server: GrpcServer | None = None
        self.status: StatusOps | None = None

    @property
    def port(self) -> int:
        """The bound gRPC port (after :meth:`start`)."""
        assert self.server is not None
        return int(self.server.port)

    async def start(self) -> None:
        """Open the database, Kafka and the task registry, then serve gRPC."""
        s = self.settings
        tls = s.grpc_server_tls()  # a bad TLS file fails before anything opens
        # The gateway owns the schema (its migrations); this service only reads
        # its reviewers and keeps its own ledger table.
        engine = await open_database(
            s.resolved_database_url(),
            schema=s.database_schema,
            pool_size=s.database_pool_size,
            run_migrations=False,
        )
        self.store = ReviewStore(engine, schema=s.database_schema, hot_pool_size=1)
        ledger = Ledger(engine)
        await ledger.create()
        # One producer for every stream: idempotent, acks=all; its records are
        # at most max_request_bytes, within aiokafka's default 1 MiB request.
        self.producer = idempotent_producer(self.kafka)
        await self.producer.start()
        book = TaskBook()
        self.tasks = TaskRegistry(
            self.kafka, wait_s=s.task_wait_s, on_task=book.put, catalog=self.catalog
        )
        await self.tasks.start()
        self.ops = IngestOps(
            s,
            producer=self.producer,
            tasks=self.tasks,
            book=book,
            ledger=ledger,
            auth=Authenticator(self.store, s.admin_token, s.token_cache_s, roles=INGEST_ROLES),
            items_topic=self.catalog.name("items", self.kafka.topic_prefix),
            tasks_topic=self.catalog.name("tasks", self.kafka.topic_prefix),
            claims=open_store(s.claim_store_url) if s.claim_store_url else None,
        )
        self.status = await StatusOps.open(
            self.status_settings, self.kafka, catalog=self.catalog, tasks=self.tasks
        )
        self.server = GrpcServer(
            s.grpc_port,
            [registration(IngestServicer(self.ops)), status_registration(self.status)],
            s.grpc_reflection and s.environment != "production",
            host=self.host,
            max_receive_bytes=s.resolved_max_request_bytes(),
            tls=tls,
        )
        await self.server.start()
        await self.server.set_serving(True)
        log.info(
            "ingest_started",
            port=self.port,
            database=engine.dialect.name,
            grpc_tls="mutual" if tls and tls.mutual else "on" if tls else "off",
        )

    async def wait(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set (the gRPC server has no loop of its own to fail)."""
        await stop.wait()
        return 0

    async def stop(self) -> int:
        """Refuse new calls, let running streams finish (5 s), close every client."""
        if self.server is not None:
            await self.server.set_serving(False)
            await self.server.stop(grace_s=5.0)
        if self.status is not None:
            await self.status.close()
        if self.tasks is not None:
            await self.tasks.stop()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        if self.store is not None:
            await self.store.close()
        log.info("ingest_stopped")
        return 0


def _status_settings(settings: IngestSettings) -> PipelineStatusSettings:
    """``ACT_STATUS_*`` settings; the review queue is read from this service's database
    (the gateway's) unless ``ACT_STATUS_REVIEW_DATABASE_URL`` names another."""
    status = PipelineStatusSettings()
    if status.review_database_url:
        return status
    updates: dict[str, Any] = {
        "review_database_url": settings.resolved_database_url(),
        "review_database_schema": settings.database_schema,
    }
    return status.model_copy(update=updates)
