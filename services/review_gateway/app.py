"""Assembly of the review gateway: database, gRPC API, Kafka consumer, relay, reaper.

:class:`Gateway` owns every component so that ``__main__``, the tests and the
benchmark start the same thing; it is a :class:`services.runtime.app.Service`, so
the process runs it with the same lifecycle as every stage (``run_main``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog
from act.v1 import review_pb2

from services.review_gateway import metrics
from services.review_gateway.api import ReviewServicer, registration
from services.review_gateway.db import open_database
from services.review_gateway.errors import describe_error
from services.review_gateway.ops import ReviewOps
from services.review_gateway.relay import OutboxRelay
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.stage import ReviewRequestStage
from services.review_gateway.store import ReviewStore
from services.review_gateway.web.app import WebServer, build_web_app
from services.runtime.config import KafkaSettings
from services.runtime.grpc_server import GrpcServer
from services.runtime.runner import RuntimeFatalError, StageRunner
from services.runtime.tasks import TaskRegistry
from services.runtime.topics import TopicCatalog

log = structlog.get_logger(__name__)


class Gateway:
    """One review-gateway process: every component, started and stopped together."""

    def __init__(
        self,
        settings: GatewaySettings,
        kafka: KafkaSettings | None = None,
        catalog: TopicCatalog | None = None,
        host: str = "[::]",
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.catalog = catalog
        self.host = host
        self.store: ReviewStore | None = None
        self.ops: ReviewOps | None = None
        self.servicer: ReviewServicer | None = None
        self.server: GrpcServer | None = None
        self.runner: StageRunner[review_pb2.ReviewRequest] | None = None
        self.relay: OutboxRelay | None = None
        self.web: WebServer | None = None
        self.tasks: TaskRegistry | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failed = asyncio.Event()
        self._failure = ""

    @property
    def http_port(self) -> int:
        """The bound port of the web workspace (after :meth:`start`, when enabled)."""
        assert self.web is not None
        return self.web.port

    @property
    def port(self) -> int:
        """The bound gRPC port (after :meth:`start`)."""
        assert self.server is not None
        return int(self.server.port)

    async def start(self, *, consume: bool = True, relay: bool = True, reaper: bool = True) -> None:
        """Open the database (migrating it), serve gRPC, start the background loops.

        ``consume``/``relay`` need Kafka settings; tests and the benchmark run
        the API alone.
        """
        s = self.settings
        tls = s.grpc_server_tls()  # a bad TLS file fails before the database opens
        engine = await open_database(
            s.resolved_database_url(),
            schema=s.database_schema,
            pool_size=s.database_pool_size,
            run_migrations=s.migrate_on_start,
        )
        self.store = store = ReviewStore(
            engine, schema=s.database_schema, hot_pool_size=s.database_pool_size
        )
        self.ops = ReviewOps(store, s)
        self.servicer = ReviewServicer(self.ops)
        self.server = GrpcServer(
            s.grpc_port,
            [registration(self.servicer)],
            s.reflection_enabled,
            max_receive_bytes=s.max_request_bytes,
            max_send_bytes=s.max_response_bytes,
            host=self.host,
            tls=tls,
        )
        await self.server.start()
        if s.http_enabled:
            self.web = WebServer(
                build_web_app(self.ops, store, s),
                s.http_host,
                s.http_port,
                s.web_forwarded_allow_ips,
            )
            await self.web.start()
        if reaper:
            self._spawn("reaper", self._reap())
        if self.kafka is not None:
            if relay:
                self.relay = OutboxRelay(store, self.kafka, s, self.catalog)
                self._spawn("relay", self.relay.run())
            if s.tasks_topic_enabled:
                # The one follower of act.tasks (as in every stage), copying each
                # task into the database so the API can validate labels.
                self.tasks = TaskRegistry(
                    self.kafka, catalog=self.catalog, on_task=store.upsert_task
                )
                await self.tasks.start()
            if consume:
                stage = ReviewRequestStage(
                    store, max_outage_s=s.handler_timeout_s * 0.8, on_fatal=self.fail
                )
                self.runner = StageRunner(stage, self.kafka, s, self.catalog)
                self._spawn("consumer", self.runner.run())
                started = asyncio.create_task(self.runner.started.wait())
                await asyncio.wait(
                    {started, self._tasks["consumer"]}, return_when=asyncio.FIRST_COMPLETED
                )
                started.cancel()
        await self.server.set_serving(True)
        log.info(
            "gateway_started",
            port=self.port,
            database=engine.dialect.name,
            grpc_tls="mutual" if tls and tls.mutual else "on" if tls else "off",
        )

    def fail(self, reason: str) -> None:
        """A component cannot go on: :meth:`wait` returns 1 (the process restarts)."""
        self._failure = reason
        self._failed.set()

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks[name] = asyncio.create_task(coro, name=f"gateway-{name}")

    async def _reap(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(self.settings.reaper_interval_s)
            expired = 0
            try:
                while True:  # a backlog (e.g. after an outage) drains in batches
                    batch = await self.store.expire_leases(limit=500)
                    expired += batch
                    if batch < 500:
                        break
            except Exception as exc:
                log.warning("reaper_failed", error_type=type(exc).__name__)
            if expired:
                metrics.EXPIRED.inc(expired)
                log.info("leases_expired", count=expired)

    async def wait(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set or a component fails; returns the exit code."""
        stopper = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(self._failed.wait())
        try:
            watched = {stopper, failed, *self._tasks.values()}
            if self.web is not None:
                watched.add(self.web.task)
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            failed.cancel()
        if self._failed.is_set():
            log.error("gateway_failed", reason=self._failure)
            return 1
        for task in done:
            if task is stopper or task.cancelled():
                continue
            if self.web is not None and task is self.web.task and task.exception() is None:
                log.error("component_failed", component="web", error="the HTTP server stopped")
                return 1
            exc = task.exception()
            if exc is not None:
                log.error("component_failed", component=task.get_name(), error=describe_error(exc))
                return 1
        return 0

    async def stop(self) -> int:
        """Graceful stop: refuse new calls, finish running ones, commit, close.

        Returns 1 when a component ended with a fatal error, else 0.
        """
        code = 0
        if self.server is not None:
            await self.server.set_serving(False)
            await self.server.stop(grace_s=5.0)
        if self.web is not None:
            await self.web.stop()
        if self.runner is not None:
            self.runner.stop()
        if self.relay is not None:
            self.relay.stop()
        for name in ("consumer", "relay"):
            task = self._tasks.get(name)
            if task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait({task}, timeout=self.settings.drain_timeout_s + 10)
        for task in self._tasks.values():
            task.cancel()
        results = await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for task, result in zip(self._tasks.values(), results, strict=True):
            if isinstance(result, RuntimeFatalError):
                log.error("fatal", component=task.get_name(), error=describe_error(result))
                code = 1
        self._tasks.clear()
        if self.tasks is not None:
            await self.tasks.stop()
        if self.store is not None:
            await self.store.close()
        log.info("gateway_stopped")
        return code
