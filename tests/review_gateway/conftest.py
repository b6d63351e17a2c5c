"""Fixtures of the review-gateway tests, parametrised over SQLite and PostgreSQL.

Every test gets its own database: a fresh SQLite file, or a fresh schema in
the session's PostgreSQL (``postgres_dsn`` from tests/conftest.py), dropped
afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from services.review_gateway.app import Gateway
from services.review_gateway.db import create_engine, normalize_url
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import ReviewStore
from tests.review_gateway.support import ADMIN_TOKEN, Client, make_task


@dataclass(frozen=True)
class Database:
    """Where one test's gateway keeps its state."""

    backend: str
    url: str
    schema: str


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, empty database on each back end."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", "")
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"gw_{uuid.uuid4().hex[:12]}"
    yield Database("postgres", normalize_url(dsn), schema)
    engine = create_engine(dsn)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def gateway_settings(database: Database, **overrides: object) -> GatewaySettings:
    """Settings of an in-process test gateway on ``database``."""
    values: dict[str, object] = {
        "database_url": database.url,
        "database_schema": database.schema,
        "admin_token": ADMIN_TOKEN,
        "grpc_port": 0,
        "metrics_port": 0,
        "environment": "test",
        "reaper_interval_s": 3600.0,  # tests call expire_leases() themselves
        "token_cache_s": 0.0,
        "database_pool_size": 8,
        "http_host": "127.0.0.1",
        "http_port": 0,
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@dataclass
class Running:
    """An in-process gateway (gRPC API, no Kafka) and clients for it."""

    gateway: Gateway
    channel: grpc.aio.Channel
    admin: Client

    @property
    def store(self) -> ReviewStore:
        assert self.gateway.store is not None
        return self.gateway.store

    def client(self, token: str | None) -> Client:
        return Client(self.channel, token)

    async def reviewer(self, name: str = "r", admin: bool = False) -> tuple[str, Client]:
        from act.v1 import api_pb2

        role = api_pb2.REVIEWER_ROLE_ADMIN if admin else api_pb2.REVIEWER_ROLE_REVIEWER
        created = await self.admin.CreateReviewer(
            api_pb2.CreateReviewerRequest(name=name, role=role)
        )
        return created.reviewer_id, self.client(created.token)


@pytest.fixture
async def running(database: Database) -> AsyncIterator[Running]:
    """A started gateway with one known task (``task-1``, three labels)."""
    gateway = Gateway(gateway_settings(database), kafka=None, host="127.0.0.1")
    await gateway.start(consume=False, relay=False, reaper=False)
    assert gateway.store is not None
    await gateway.store.upsert_task(make_task())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    try:
        yield Running(gateway, channel, Client(channel, ADMIN_TOKEN))
    finally:
        await channel.close()
        await gateway.stop()
