"""Web sessions of the reviewer workspace, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from sqlalchemy import select

from services.review_gateway import schema as s
from services.review_gateway.errors import InvalidArgument, NotFound, Unauthenticated
from services.review_gateway.store import ROLE_REVIEWER, ReviewStore
from services.review_gateway.store import sessions as sessions_module
from tests.review_gateway.conftest import Running


async def _reviewer(store: ReviewStore, name: str = "alice") -> str:
    token_hash = hashlib.sha256(name.encode()).hexdigest()
    return (await store.create_reviewer(name, ROLE_REVIEWER, token_hash, "admin")).id


async def _session_rows(store: ReviewStore) -> list[dict[str, object]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(s.web_sessions))).mappings().all()
    return [dict(r) for r in rows]


async def _audit(store: ReviewStore) -> list[tuple[str, str, str]]:
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(s.audit_log.c.actor, s.audit_log.c.action, s.audit_log.c.detail).order_by(
                    s.audit_log.c.id
                )
            )
        ).all()
    return [(r.actor, r.action, r.detail) for r in rows]


async def test_session_lifecycle(running: Running):
    store = running.store
    alice = await _reviewer(store)
    token, csrf, expires = await store.create_session(alice, ttl_s=3600)
    assert token and csrf and token != csrf
    session = await store.session(token)
    assert session is not None
    assert session.reviewer.id == alice and session.reviewer.name == "alice"
    assert session.csrf_token == csrf and session.expires_at_us == expires
    # Only the hash is stored; the cookie never reaches the audit log.
    rows = await _session_rows(store)
    assert len(rows) == 1
    assert rows[0]["session_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(rows[0])
    # Unknown, empty and almost-right cookies are no session.
    assert await store.session("") is None
    assert await store.session(token + "x") is None
    # Logging out ends the session for good; a second logout is a no-op.
    assert await store.revoke_session(token)
    assert await store.session(token) is None
    assert not await store.revoke_session(token)
    assert not await store.revoke_session("never-issued")
    audit = await _audit(store)
    actions = [a for _, a, _ in audit]
    assert actions.count("session_created") == 1 and actions.count("session_revoked") == 1
    assert all(token not in d and csrf not in d for _, _, d in audit)
    assert all(rows[0]["session_sha256"] not in d for _, _, d in audit)


async def test_sessions_expire(running: Running):
    store = running.store
    alice = await _reviewer(store)
    token, _, _ = await store.create_session(alice, ttl_s=0.3)
    assert await store.session(token) is not None
    await asyncio.sleep(0.4)
    assert await store.session(token) is None
    with pytest.raises(InvalidArgument):
        await store.create_session(alice, ttl_s=0)


async def test_last_seen_is_recorded(running: Running, monkeypatch: pytest.MonkeyPatch):
    store = running.store
    alice = await _reviewer(store)
    token, _, _ = await store.create_session(alice, ttl_s=3600)
    first = (await _session_rows(store))[0]["last_seen_at_us"]
    await store.session(token)  # within the touch interval: read only
    assert (await _session_rows(store))[0]["last_seen_at_us"] == first
    monkeypatch.setattr(sessions_module, "TOUCH_INTERVAL_US", 0)
    await asyncio.sleep(0.01)
    await store.session(token)
    assert (await _session_rows(store))[0]["last_seen_at_us"] > first  # type: ignore[operator]


async def test_disabling_a_reviewer_revokes_its_sessions(running: Running):
    store = running.store
    alice = await _reviewer(store, "alice")
    bob = await _reviewer(store, "bob")
    alice_tokens = [(await store.create_session(alice, 3600))[0] for _ in range(2)]
    bob_token, _, _ = await store.create_session(bob, 3600)
    await store.disable_reviewer(alice, "admin", "left the project")
    for token in alice_tokens:
        assert await store.session(token) is None
    assert await store.session(bob_token) is not None
    rows = {r["reviewer_id"]: r for r in await _session_rows(store)}
    assert rows[alice]["revoked_at_us"] is not None
    assert rows[bob]["revoked_at_us"] is None
    revoked = [(actor, d) for actor, a, d in await _audit(store) if a == "session_revoked"]
    assert len(revoked) == 2 and all(actor == "admin" for actor, _ in revoked)
    # No new session for a disabled or unknown reviewer.
    with pytest.raises(Unauthenticated):
        await store.create_session(alice, 3600)
    with pytest.raises(NotFound):
        await store.create_session("usr_nobody", 3600)
