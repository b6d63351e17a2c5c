"""Web sessions of the reviewer workspace: a random cookie token, stored hashed.

* The cookie value is ``secrets.token_urlsafe(32)``, never the reviewer's API
  token; the database keeps only its SHA-256 (``session_sha256``), so a copy
  of the database cannot log anybody in.
* A session is live while it is neither revoked nor expired and its reviewer
  is not disabled; :meth:`Sessions.session` answers None otherwise, whatever
  the reason. Disabling a reviewer revokes all its sessions in the same
  transaction (:meth:`~.reviewers.Reviewers.disable_reviewer`).
* Each session has its own CSRF token, which the workspace's forms echo.
* Audit rows (``session_created``, ``session_revoked``) name the reviewer and
  a short prefix of the hash (:func:`session_ref`), never a token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import BigInteger, String, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review_gateway import schema as s
from services.review_gateway.errors import InvalidArgument, NotFound, Unauthenticated
from services.review_gateway.store.base import StoreCore, audit_row, now_us, write_audit
from services.review_gateway.store.rows import Reviewer, SessionRow

_ws, _rv = s.web_sessions, s.reviewers

#: ``last_seen_at_us`` is written at most this often per session (a read of a
#: live session is otherwise read-only).
TOUCH_INTERVAL_US = 60_000_000

# Looked up on every request of the workspace: one prepared statement on the
# PostgreSQL fast path (:meth:`~.base.StoreCore.read`).
_LIVE_SESSION = (
    select(
        _rv.c.id,
        _rv.c.name,
        _rv.c.role,
        _rv.c.disabled,
        _rv.c.created_at_us,
        _rv.c.blur_px,
        _ws.c.csrf_token,
        _ws.c.expires_at_us,
        _ws.c.last_seen_at_us,
    )
    .select_from(_ws.join(_rv, _rv.c.id == _ws.c.reviewer_id))
    .where(
        _ws.c.session_sha256 == bindparam("p_digest", type_=String),
        _ws.c.revoked_at_us.is_(None),
        _ws.c.expires_at_us > bindparam("p_at", type_=BigInteger),
        _rv.c.disabled.is_(False),
    )
)


def session_hash(session_token: str) -> str:
    """The stored form of a session cookie: its SHA-256, hex."""
    return hashlib.sha256(session_token.encode()).hexdigest()


def session_ref(session_sha256: str) -> str:
    """The audit log's name of a session: a prefix of its hash (not usable as a cookie)."""
    return session_sha256[:12]


async def revoke_reviewer_sessions(
    conn: AsyncConnection, reviewer_id: str, actor: str, at: int
) -> int:
    """Revoke every live session of a reviewer in ``conn``'s transaction; returns how many."""
    revoked: Sequence[str] = (
        (
            await conn.execute(
                update(_ws)
                .where(_ws.c.reviewer_id == reviewer_id, _ws.c.revoked_at_us.is_(None))
                .values(revoked_at_us=at)
                .returning(_ws.c.session_sha256)
            )
        )
        .scalars()
        .all()
    )
    await write_audit(
        conn,
        [
            audit_row(
                at,
                actor,
                "session_revoked",
                detail=f"reviewer_id={reviewer_id} session={session_ref(h)} reviewer_disabled=1",
            )
            for h in revoked
        ],
    )
    return len(revoked)


class Sessions:
    """The ``web_sessions`` table."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def create_session(self, reviewer_id: str, ttl_s: float) -> tuple[str, str, int]:
        """Log a reviewer in: ``(session_token, csrf_token, expires_at_us)``.

        NotFound for an unknown reviewer, Unauthenticated for a disabled one.
        """
        if not ttl_s > 0:
            raise InvalidArgument("ttl_s must be > 0")
        session_token = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        digest = session_hash(session_token)
        at = now_us()
        expires = at + int(ttl_s * 1_000_000)
        async with self._core.tx() as conn:
            disabled = (
                await conn.execute(select(_rv.c.disabled).where(_rv.c.id == reviewer_id))
            ).scalar_one_or_none()
            if disabled is None:
                raise NotFound(f"reviewer {reviewer_id} not found")
            if disabled:
                raise Unauthenticated(f"reviewer {reviewer_id} is disabled")
            await conn.execute(
                insert(_ws).values(
                    session_sha256=digest,
                    reviewer_id=reviewer_id,
                    csrf_token=csrf_token,
                    created_at_us=at,
                    expires_at_us=expires,
                    last_seen_at_us=at,
                    revoked_at_us=None,
                )
            )
            await write_audit(
                conn,
                [
                    audit_row(
                        at,
                        reviewer_id,
                        "session_created",
                        detail=(
                            f"reviewer_id={reviewer_id} session={session_ref(digest)} "
                            f"expires_at_us={expires}"
                        ),
                    )
                ],
            )
        return session_token, csrf_token, expires

    async def session(self, session_token: str) -> SessionRow | None:
        """The live session of a cookie; None when unknown, revoked, expired or the
        reviewer is disabled. Records ``last_seen_at_us`` (at most once a minute)."""
        if not session_token:
            return None
        digest = session_hash(session_token)
        at = now_us()
        rows = await self._core.read(_LIVE_SESSION, {"p_digest": digest, "p_at": at})
        if not rows:
            return None
        row = rows[0]
        if at - row["last_seen_at_us"] >= TOUCH_INTERVAL_US:
            async with self._core.tx() as conn:
                await conn.execute(
                    update(_ws)
                    .where(_ws.c.session_sha256 == digest, _ws.c.last_seen_at_us < at)
                    .values(last_seen_at_us=at)
                )
        reviewer = Reviewer(
            id=row["id"],
            name=row["name"],
            role=row["role"],
            disabled=bool(row["disabled"]),
            created_at_us=row["created_at_us"],
            blur_px=row["blur_px"],
        )
        return SessionRow(
            reviewer=reviewer, csrf_token=row["csrf_token"], expires_at_us=row["expires_at_us"]
        )

    async def revoke_session(self, session_token: str) -> bool:
        """Log out: end a session for good; True when a live one was revoked
        (revoking an unknown or already revoked session is a no-op)."""
        if not session_token:
            return False
        digest = session_hash(session_token)
        at = now_us()
        async with self._core.tx() as conn:
            reviewer_id = (
                await conn.execute(
                    update(_ws)
                    .where(_ws.c.session_sha256 == digest, _ws.c.revoked_at_us.is_(None))
                    .values(revoked_at_us=at)
                    .returning(_ws.c.reviewer_id)
                )
            ).scalar_one_or_none()
            if reviewer_id is None:
                return False
            await write_audit(
                conn,
                [
                    audit_row(
                        at,
                        reviewer_id,
                        "session_revoked",
                        detail=f"reviewer_id={reviewer_id} session={session_ref(digest)}",
                    )
                ],
            )
        return True
