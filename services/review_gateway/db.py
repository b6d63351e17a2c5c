"""Database engines and schema migrations (Alembic) of the review gateway.

Both back ends go through SQLAlchemy's asyncio layer: ``aiosqlite`` for the
embedded SQLite default, ``psycopg`` 3 for PostgreSQL. SQLite transactions
start with ``BEGIN IMMEDIATE`` so that a transaction that reads and then writes
holds the write lock from its first statement (the serialisation PostgreSQL
gets from ``SELECT ... FOR UPDATE``); read-only connections (execution option
``act_read_only``) use a deferred ``BEGIN`` and never block writers (WAL).
SQLite runs with ``synchronous=FULL``: an acknowledged review survives a power
loss, not only a process crash.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Execution option marking read-only connections (SQLite: deferred BEGIN).
READ_ONLY_OPTION = "act_read_only"


def normalize_url(url: str) -> str:
    """Map libpq DSNs and plain SQLite URLs to the async drivers the gateway uses."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def is_sqlite(engine: AsyncEngine) -> bool:
    """True for the embedded SQLite back end."""
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, schema: str = "", pool_size: int = 20) -> AsyncEngine:
    """An async engine for ``url``; ``schema`` selects a PostgreSQL search_path."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _sqlite_setup(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"unsupported database back end {parsed.get_backend_name()!r}")
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def _sqlite_setup(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (the driver's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at the gateway's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def ensure_schema(engine: AsyncEngine, schema: str) -> None:
    """Create the PostgreSQL schema if it is missing (no-op for SQLite or no schema)."""
    if not schema or is_sqlite(engine):
        return
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


async def migrate(engine: AsyncEngine, schema: str = "", revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (idempotent; safe with several replicas).

    PostgreSQL: an advisory lock serialises replicas that start together.
    """
    await ensure_schema(engine, schema)
    async with engine.connect() as conn:
        if not is_sqlite(engine):
            await conn.execute(text("SELECT pg_advisory_lock(872346001)"))
            await conn.commit()
        try:
            await conn.run_sync(_upgrade, revision)
            await conn.commit()
        finally:
            if not is_sqlite(engine):
                with contextlib.suppress(Exception):
                    await conn.execute(text("SELECT pg_advisory_unlock(872346001)"))
                    await conn.commit()


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def open_database(
    url: str, *, schema: str = "", pool_size: int = 20, run_migrations: bool = True
) -> AsyncEngine:
    """Create the engine and bring the schema to the latest migration."""
    engine = create_engine(url, schema=schema, pool_size=pool_size)
    if run_migrations:
        try:
            await migrate(engine, schema)
        except BaseException:
            await engine.dispose()
            raise
    return engine
