"""Bearer-token authentication of reviewers and the bootstrap admin.

Tokens travel as ``authorization: Bearer <token>`` gRPC metadata. The gateway
stores only their SHA-256 (a token is 256 random bits, so a fast hash is
enough: there is nothing to brute-force), compares hashes in constant time
and never logs either. The bootstrap admin token comes from
``ACT_GATEWAY_ADMIN_TOKEN`` and is not stored at all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Collection, Iterable

from pydantic import SecretStr

from services.review_gateway.errors import PermissionDenied, Unauthenticated
from services.review_gateway.store import ROLE_ADMIN, ROLE_REVIEWER, Reviewer, ReviewStore

TOKEN_PREFIX = "act_"  # noqa: S105 - a prefix, not a secret
BOOTSTRAP_ADMIN_ID = "admin"
MAX_TOKEN_CHARS = 512


def new_token() -> str:
    """A fresh bearer token (shown once to its owner)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    """Hex SHA-256 of a token: what the database stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata that carries ``token`` (what :func:`bearer_token` reads)."""
    return (("authorization", f"Bearer {token}"),)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of an ``authorization: Bearer`` header; Unauthenticated if absent."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("invalid token")
        return token
    raise Unauthenticated("missing authorization metadata")


#: Roles the review gateway admits (its API and web page); a producer token,
#: made for the ingest service, is refused there.
GATEWAY_ROLES = frozenset({ROLE_REVIEWER, ROLE_ADMIN})


class Authenticator:
    """Turns a bearer token into a :class:`Reviewer` (cached for a short time).

    ``roles`` are the roles this edge admits: a valid token of another role is
    PermissionDenied (a producer token cannot lease reviews; a reviewer token
    cannot ingest).
    """

    def __init__(
        self,
        store: ReviewStore,
        admin_token: SecretStr | None,
        cache_s: float = 2.0,
        roles: Collection[str] = GATEWAY_ROLES,
    ) -> None:
        self._store = store
        self._roles = frozenset(roles)
        self._admin_hash = token_sha256(admin_token.get_secret_value()) if admin_token else None
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, Reviewer]] = {}
        self._admin = Reviewer(
            id=BOOTSTRAP_ADMIN_ID,
            name="bootstrap admin",
            role=ROLE_ADMIN,
            disabled=False,
            created_at_us=0,
        )

    def forget(self, reviewer_id: str) -> None:
        """Drop cached tokens of a reviewer (after it was disabled)."""
        for digest, (_, reviewer) in list(self._cache.items()):
            if reviewer.id == reviewer_id:
                self._cache.pop(digest, None)

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Reviewer:
        """The caller; Unauthenticated for a missing, unknown or disabled token,
        PermissionDenied for a role this edge does not admit."""
        reviewer = await self._lookup(metadata)
        if reviewer.role not in self._roles:
            raise PermissionDenied(f"the {reviewer.role} role cannot use this service")
        return reviewer

    async def _lookup(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Reviewer:
        token = bearer_token(metadata)
        digest = token_sha256(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return self._admin
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        reviewer = await self._store.reviewer_by_token(digest)
        if reviewer is None or reviewer.disabled:
            raise Unauthenticated("invalid token")
        if self._cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._cache_s, reviewer)
        return reviewer


def require_admin(reviewer: Reviewer) -> None:
    """PermissionDenied unless the caller is an admin."""
    if not reviewer.is_admin:
        raise PermissionDenied("admin role required")
