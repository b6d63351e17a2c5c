"""Reviewer accounts: creation, token lookup, disabling (which revokes their leases
and their web sessions)."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from services.review_gateway import schema as s
from services.review_gateway.errors import NotFound
from services.review_gateway.store.base import StoreCore, audit_row, new_id, now_us, write_audit
from services.review_gateway.store.queue import return_to_queue
from services.review_gateway.store.rows import Reviewer, lease_row, reviewer_row
from services.review_gateway.store.sessions import revoke_reviewer_sessions


class Reviewers:
    """The ``reviewers`` table; tokens are stored only as SHA-256 digests."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def create_reviewer(
        self, name: str, role: str, token_sha256: str, actor: str
    ) -> Reviewer:
        """Create a reviewer account holding the hash of its token."""
        at = now_us()
        reviewer = Reviewer(
            id=new_id("usr_"), name=name, role=role, disabled=False, created_at_us=at
        )
        async with self._core.tx() as conn:
            await conn.execute(
                insert(s.reviewers).values(
                    id=reviewer.id,
                    name=name,
                    role=role,
                    token_sha256=token_sha256,
                    disabled=False,
                    created_at_us=at,
                )
            )
            await write_audit(
                conn,
                [
                    audit_row(
                        at,
                        actor,
                        "reviewer_created",
                        detail=f"reviewer_id={reviewer.id} role={role}",
                    )
                ],
            )
        return reviewer

    async def reviewer_by_token(self, token_sha256: str) -> Reviewer | None:
        """The reviewer whose token hashes to ``token_sha256``."""
        async with self._core.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(s.reviewers).where(s.reviewers.c.token_sha256 == token_sha256)
                )
            ).first()
        return None if row is None else reviewer_row(row)

    async def get_reviewer(self, reviewer_id: str) -> Reviewer | None:
        """A reviewer by id."""
        async with self._core.reader.connect() as conn:
            row = (
                await conn.execute(select(s.reviewers).where(s.reviewers.c.id == reviewer_id))
            ).first()
        return None if row is None else reviewer_row(row)

    async def disable_reviewer(self, reviewer_id: str, actor: str, reason: str) -> int:
        """Disable a reviewer, revoke its active leases (returns how many) and its
        web sessions, in one transaction."""
        at = now_us()
        async with self._core.tx() as conn:
            found = (
                await conn.execute(
                    update(s.reviewers)
                    .where(s.reviewers.c.id == reviewer_id)
                    .values(disabled=True, disabled_at_us=at)
                    .returning(s.reviewers.c.id)
                )
            ).scalar_one_or_none()
            if found is None:
                raise NotFound(f"reviewer {reviewer_id} not found")
            rows = (
                await conn.execute(
                    select(s.leases)
                    .where(s.leases.c.reviewer_id == reviewer_id, s.leases.c.state == s.ACTIVE)
                    .with_for_update()
                )
            ).all()
            revoked = [lease_row(r._mapping) for r in rows]
            await return_to_queue(conn, revoked, s.REVOKED, at)
            audit = [
                audit_row(
                    at,
                    actor,
                    "reviewer_disabled",
                    detail=f"reviewer_id={reviewer_id} reason_chars={len(reason)}",
                )
            ]
            audit += [audit_row(at, actor, "revoked", r.request_id, r.lease_id) for r in revoked]
            await write_audit(conn, audit)
            # Logged out everywhere in the same transaction.
            await revoke_reviewer_sessions(conn, reviewer_id, actor, at)
        self._core.notify_queue()
        return len(revoked)
