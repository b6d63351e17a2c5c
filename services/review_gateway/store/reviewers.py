"""Reviewer accounts: creation, token lookup, disabling (which revokes their leases
and their web sessions), the per-reviewer image blur."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from services.review_gateway import schema as s
from services.review_gateway.errors import InvalidArgument, NotFound, PermissionDenied
from services.review_gateway.store.base import StoreCore, audit_row, new_id, now_us, write_audit
from services.review_gateway.store.queue import return_to_queue
from services.review_gateway.store.rows import Reviewer, lease_row, reviewer_row
from services.review_gateway.store.sessions import revoke_reviewer_sessions

#: Bounds of a reviewer's image blur in CSS pixels: sensitive images always
#: start blurred, so there is no 0.
MIN_BLUR_PX = 2
MAX_BLUR_PX = 60


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

    async def set_blur(self, actor: Reviewer, reviewer_id: str, blur_px: int | None) -> Reviewer:
        """An admin sets a reviewer's image blur (None: back to the server default).

        PermissionDenied unless ``actor`` is an admin, InvalidArgument outside
        :data:`MIN_BLUR_PX`..:data:`MAX_BLUR_PX`, NotFound for an unknown
        reviewer; returns the updated reviewer.
        """
        if not actor.is_admin:
            raise PermissionDenied("setting a reviewer's blur needs an admin")
        if blur_px is not None and (
            isinstance(blur_px, bool) or not MIN_BLUR_PX <= blur_px <= MAX_BLUR_PX
        ):
            raise InvalidArgument(f"blur_px must be {MIN_BLUR_PX} to {MAX_BLUR_PX} (or unset)")
        at = now_us()
        rv = s.reviewers
        async with self._core.tx() as conn:
            row = (
                await conn.execute(
                    update(rv)
                    .where(rv.c.id == reviewer_id)
                    .values(blur_px=blur_px)
                    .returning(
                        rv.c.id,
                        rv.c.name,
                        rv.c.role,
                        rv.c.disabled,
                        rv.c.created_at_us,
                        rv.c.blur_px,
                    )
                )
            ).first()
            if row is None:
                raise NotFound(f"reviewer {reviewer_id} not found")
            shown = "default" if blur_px is None else str(blur_px)
            await write_audit(
                conn,
                [
                    audit_row(
                        at,
                        actor.id,
                        "blur_set",
                        detail=f"reviewer_id={reviewer_id} blur_px={shown}",
                    )
                ],
            )
        return reviewer_row(row)
