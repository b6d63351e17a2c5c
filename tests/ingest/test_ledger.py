"""The ledger of accepted ids on SQLite (local development; PostgreSQL runs end to end)."""

from __future__ import annotations

from pathlib import Path

from services.ingest.ledger import Ledger
from services.review_gateway.db import create_engine


async def test_ledger_records_and_finds_ids(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        ledger = Ledger(engine)
        await ledger.create()
        await ledger.create()  # idempotent
        assert await ledger.known("t1", ["a", "b"]) == set()
        await ledger.record([("t1", "a"), ("t2", "b")])
        await ledger.record([("t1", "a")])  # a second record of an id is kept once
        assert await ledger.known("t1", ["a", "b"]) == {"a"}
        assert await ledger.known("t2", ["a", "b"]) == {"b"}
        many = [f"i{n}" for n in range(1200)]  # more than one statement's worth
        await ledger.record(("t3", i) for i in many)
        assert await ledger.known("t3", many) == set(many)
    finally:
        await engine.dispose()
