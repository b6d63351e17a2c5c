"""What every route of the workspace needs, built once (:func:`~.app.build_web_app`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from act.v1 import task_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

from services.review_gateway.errors import (
    GatewayError,
    PermissionDenied,
    Unauthenticated,
    is_unavailable,
)
from services.review_gateway.ops import ReviewOps
from services.review_gateway.policy import ReviewPolicy
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import Reviewer, ReviewStore
from services.review_gateway.web.security import LoginLimiter, same_token

HERE = Path(__file__).parent
SESSION_COOKIE = "act_session"
LOGIN_CSRF_COOKIE = "act_login_csrf"

#: gRPC status names of gateway errors, as HTTP statuses.
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "DEADLINE_EXCEEDED": 504,
}


@dataclass(frozen=True, slots=True)
class WebUser:
    """The reviewer behind a request's session cookie."""

    reviewer: Reviewer
    csrf_token: str
    session_token: str


class WebContext:
    """Operations, store, settings, templates and the login throttle."""

    def __init__(self, ops: ReviewOps, store: ReviewStore, settings: GatewaySettings) -> None:
        self.ops = ops
        self.store = store
        self.settings = settings
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.limiter = LoginLimiter(settings.web_login_attempts_per_minute)
        # Verified sessions, trusted for ``token_cache_s`` like gRPC tokens: a
        # logout or a disable on this replica drops them at once, on another
        # replica within that time.
        self._sessions: dict[str, tuple[float, WebUser]] = {}
        # Review policies per task version (the task's bytes), shared by the pages.
        self._policies: dict[bytes, ReviewPolicy] = {}

    async def user(self, request: Request) -> WebUser:
        """The session's reviewer; Unauthenticated without a live session."""
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token or len(token) > 200:
            raise Unauthenticated("not logged in")
        now = time.monotonic()
        cached = self._sessions.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self.store.session(token)
        if row is None:
            self._sessions.pop(token, None)
            raise Unauthenticated("session expired or revoked")
        user = WebUser(row.reviewer, row.csrf_token, token)
        ttl = min(self.settings.token_cache_s, (row.expires_at_us / 1e6) - time.time())
        if ttl > 0:
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            self._sessions[token] = (now + ttl, user)
        return user

    def forget_session(self, token: str) -> None:
        """Drop a session from the cache (after a logout)."""
        self._sessions.pop(token, None)

    def policy(self, task: task_pb2.Task, raw: bytes) -> ReviewPolicy:
        """The task's review policy (cached per task version, ``raw`` its bytes)."""
        found = self._policies.get(raw)
        if found is None:
            if len(self._policies) > 1000:
                self._policies.clear()
            s = self.settings
            found = self._policies[raw] = ReviewPolicy.from_task(
                task,
                default_break_after_s=s.web_break_after_s,
                default_daily_cap_s=s.web_daily_cap_s,
            )
        return found

    def blur_px(self, reviewer: Reviewer) -> int:
        """The reviewer's image blur: its own when an admin set one, else the server default."""
        return self.settings.web_blur_px if reviewer.blur_px is None else reviewer.blur_px

    def forget_reviewer(self, reviewer_id: str) -> None:
        """Drop every cached session of a reviewer (after it was disabled or changed)."""
        for token, (_, user) in list(self._sessions.items()):
            if user.reviewer.id == reviewer_id:
                self._sessions.pop(token, None)

    async def acting_user(self, request: Request, form_token: str | None = None) -> WebUser:
        """:meth:`user` for a state-changing request: the CSRF token must match."""
        user = await self.user(request)
        given = form_token if form_token is not None else request.headers.get("x-csrf-token")
        if not same_token(user.csrf_token, given):
            raise PermissionDenied("missing or wrong CSRF token")
        return user


def http_status(exc: GatewayError) -> int:
    """The HTTP status of a refused operation (its gRPC status, translated)."""
    return _HTTP_STATUS.get(exc.code.name, 500)


def error_response(exc: Exception) -> Response:
    """A JSON error for a refused or failed API call (no item content in it)."""
    if isinstance(exc, GatewayError):
        return JSONResponse(
            {"error": str(exc), "code": exc.code.name}, status_code=http_status(exc)
        )
    if is_unavailable(exc):
        return JSONResponse({"error": "database unavailable, retry", "code": "UNAVAILABLE"}, 503)
    return JSONResponse({"error": "internal error", "code": "INTERNAL"}, status_code=500)


def json_ok(body: Any, status: int = 200) -> JSONResponse:
    """A JSON answer."""
    return JSONResponse(body, status_code=status)
