"""HTTP hardening of the reviewer workspace: headers, CSRF, login throttling.

* Every response carries a strict Content-Security-Policy (``default-src
  'self'``, no inline script or style, no framing), ``Cache-Control:
  no-store`` (item content never lands in the disk or history cache),
  ``Referrer-Policy: no-referrer``, ``X-Content-Type-Options: nosniff`` and a
  Permissions-Policy that turns off autoplay, camera, microphone and the like.
* CSRF: a logged-in session has its own random token; every state-changing
  request must echo it (``X-CSRF-Token`` header from the page's script, or a
  ``csrf`` form field), compared in constant time. The login form, before any
  session exists, uses the double-submit pattern: a random cookie and the
  same value in the form.
* Login attempts are throttled per client address (a sliding window), so a
  stolen-token guessing run is slow even though tokens carry 256 bits.
"""

from __future__ import annotations

import collections
import hmac
import time
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'none'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; connect-src 'self'"
)
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (
        b"permissions-policy",
        b"autoplay=(), camera=(), microphone=(), geolocation=(), fullscreen=(self)",
    ),
]


class SecurityHeaders:
    """ASGI middleware adding :data:`HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in HEADERS if name not in names
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token (False for a missing one)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class LoginLimiter:
    """At most ``attempts`` logins per ``window_s`` per client address (per replica)."""

    def __init__(self, attempts: int, window_s: float = 60.0, max_clients: int = 100_000) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.max_clients = max_clients
        self._seen: MutableMapping[str, collections.deque[float]] = {}

    def allow(self, client: str, now: float | None = None) -> bool:
        """Count one attempt of ``client``; False when it is over the limit."""
        at = time.monotonic() if now is None else now
        if len(self._seen) > self.max_clients:
            self._seen.clear()  # a flood of addresses: forget rather than grow
        times = self._seen.setdefault(client, collections.deque())
        while times and times[0] <= at - self.window_s:
            times.popleft()
        if len(times) >= self.attempts:
            return False
        times.append(at)
        return True


def client_address(scope: MutableMapping[str, Any]) -> str:
    """The peer address of a request (the Ingress must not be trusted blindly: no
    X-Forwarded-For here; put the limit in the Ingress too when it hides peers)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
