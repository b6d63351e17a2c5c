"""The reviewer's routes: log in and out, the page, and its JSON calls.

Each handler authenticates (session cookie, plus the CSRF token for anything
that changes state), calls :class:`~services.review_gateway.ops.ReviewOps`
or the store, and answers; the rules live in the service layer.

``/api/next`` first gives back the reviewer's own live lease, if any, before
leasing a new item: after a reload, or when the answer to a submission was
lost and the page retries it, the item already leased for this reviewer is
shown again instead of sitting locked until its lease expires.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import structlog
from act.v1 import api_pb2, review_pb2, task_pb2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.review_gateway.auth import BOOTSTRAP_ADMIN_ID, bearer_metadata
from services.review_gateway.errors import (
    FailedPrecondition,
    GatewayError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.review_gateway.labels import machine_label
from services.review_gateway.ops import check_id
from services.review_gateway.store import Leased
from services.review_gateway.web import render
from services.review_gateway.web.context import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    WebContext,
    WebUser,
    error_response,
    json_ok,
)
from services.review_gateway.web.security import client_address, same_token

log = structlog.get_logger(__name__)

SKIP_CODES = {
    "unsure": api_pb2.SKIP_REASON_UNSURE,
    "distressing": api_pb2.SKIP_REASON_DISTRESSING,
    "broken": api_pb2.SKIP_REASON_BROKEN_CONTENT,
}
MAX_BODY_BYTES = 16 * 1024
MAX_WAIT_S = 20.0


async def body_json(request: Request) -> dict[str, Any]:
    """The JSON object of a request body; InvalidArgument when it is not one."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidArgument("request body too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise InvalidArgument("request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def _str(body: dict[str, Any], name: str, required: bool = True) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    check_id(name, value, required=required)
    return value


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer")
    return value


class ReviewerRoutes:
    """Handlers of the reviewer's side of the workspace."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- session

    async def login_page(self, request: Request) -> Response:
        """The login form, with a fresh double-submit CSRF cookie."""
        return self._login_form(request, error="")

    def _login_form(self, request: Request, error: str, status: int = 200) -> Response:
        token = uuid.uuid4().hex
        response = self.ctx.templates.TemplateResponse(
            request, "login.html", {"csrf": token, "error": error}, status_code=status
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            max_age=600,
            httponly=True,
            secure=self.ctx.settings.web_cookie_secure,
            samesite="strict",
        )
        return response

    async def login(self, request: Request) -> Response:
        """Exchange a reviewer token for a server-side session (the cookie never holds it)."""
        if not self.ctx.limiter.allow(client_address(request.scope)):
            log.warning("web_login_throttled")
            return self._login_form(request, "Too many attempts; wait a minute.", 429)
        form = await request.form()
        given = str(form.get("csrf", ""))
        if not same_token(request.cookies.get(LOGIN_CSRF_COOKIE, ""), given):
            return self._login_form(request, "The form expired; try again.", 403)
        token = str(form.get("token", "")).strip()
        try:
            reviewer = await self.ctx.ops.auth.authenticate(bearer_metadata(token))
        except GatewayError:
            return self._login_form(request, "Unknown or disabled token.", 401)
        if reviewer.id == BOOTSTRAP_ADMIN_ID:
            return self._login_form(
                request,
                "The bootstrap token cannot open a web session: create an admin "
                "reviewer (act reviewers create --role admin) and use its token.",
                403,
            )
        ttl = self.ctx.settings.web_session_ttl_s
        session, _csrf, _expires = await self.ctx.store.create_session(reviewer.id, ttl)
        target = "/admin" if reviewer.is_admin else "/review"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=ttl,
            httponly=True,
            secure=self.ctx.settings.web_cookie_secure,
            samesite="strict",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        log.info("web_login", reviewer_id=reviewer.id)
        return response

    async def logout(self, request: Request) -> Response:
        """End the session (CSRF-checked form post) and forget the cookie."""
        form = await request.form()
        try:
            user = await self.ctx.acting_user(request, str(form.get("csrf", "")))
        except GatewayError:
            return RedirectResponse("/login", status_code=303)
        await self.ctx.store.revoke_session(user.session_token)
        self.ctx.forget_session(user.session_token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        log.info("web_logout", reviewer_id=user.reviewer.id)
        return response

    # ---------------------------------------------------------------- page

    async def page(self, request: Request) -> Response:
        """The reviewer page (the item itself comes from ``/api/next``)."""
        try:
            user = await self.ctx.user(request)
        except GatewayError:
            return RedirectResponse("/login", status_code=303)
        return self.ctx.templates.TemplateResponse(
            request,
            "review.html",
            {
                "user": user.reviewer,
                "csrf": user.csrf_token,
                "undo_s": self.ctx.settings.web_undo_window_s,
                "task_id": request.query_params.get("task", "")[:200],
            },
        )

    # ----------------------------------------------------------------- api

    async def _shown(self, user: WebUser, leased: Leased | None) -> dict[str, Any] | None:
        if leased is None:
            return None
        view = self.ctx.ops.view(leased)
        policy = self.ctx.policy(view.task, leased.task)
        body, detail = render.lease_json(view, policy, self.ctx.blur_px(user.reviewer))
        await self.ctx.store.audit(
            user.reviewer.id, "shown", leased.request_id, leased.lease_id, detail
        )
        return body

    async def _next(
        self, user: WebUser, task_id: str, wait_s: float, *, resume: bool = True
    ) -> dict[str, Any] | None:
        # The page holds one lease at a time; a second one of this reviewer exists
        # only after a lost answer (a retried call), a reload or a second tab, so
        # a fresh submission skips the look-up.
        leased = await self.ctx.store.own_active_lease(user.reviewer.id) if resume else None
        if leased is None:
            view = await self.ctx.ops.lease(user.reviewer, task_id, wait_seconds=wait_s)
            leased = None if view is None else view.leased
        return await self._shown(user, leased)

    async def api(self, request: Request) -> Response:
        """Dispatch ``/api/<action>`` (POST, JSON, CSRF-checked)."""
        action = request.path_params["action"]
        handler = self._actions.get(action)
        if handler is None:
            return error_response(NotFound(f"no action {action}"))
        try:
            user = await self.ctx.acting_user(request)
            body = await body_json(request)
            return json_ok(await handler(self, user, body))
        except Exception as exc:
            if not isinstance(exc, GatewayError):
                log.error("web_api_failed", action=action, error_type=type(exc).__name__)
            return error_response(exc)

    async def _api_next(self, user: WebUser, body: dict[str, Any]) -> dict[str, Any]:
        wait = body.get("wait_s", 0)
        if not isinstance(wait, int | float) or wait < 0:
            raise InvalidArgument("wait_s must be a number >= 0")
        task_id = _str(body, "task_id", required=False)
        return {"next": await self._next(user, task_id, min(float(wait), MAX_WAIT_S))}

    async def _api_submit(self, user: WebUser, body: dict[str, Any]) -> dict[str, Any]:
        lease_id = _str(body, "lease_id")
        key = _str(body, "key")
        hold = float(self.ctx.settings.web_undo_window_s)
        result = await self.ctx.ops.submit(
            user.reviewer, lease_id, _int(body, "label"), key, hold_s=hold
        )
        task_id = _str(body, "task_id", required=False)
        return {
            "review_id": result.review_id,
            "duplicate": result.duplicate,
            "undo_until_ms": result.submitted_at_us // 1000 + int(hold * 1000),
            "next": await self._next(user, task_id, 0.0, resume=result.duplicate),
        }

    async def _api_skip(self, user: WebUser, body: dict[str, Any]) -> dict[str, Any]:
        reason = _str(body, "reason")
        code = SKIP_CODES.get(reason)
        if code is None:
            raise InvalidArgument(f"reason must be one of {', '.join(SKIP_CODES)}")
        lease_id = _str(body, "lease_id")
        # A retried skip, or a lease that ran out: either way the item is back.
        with contextlib.suppress(FailedPrecondition):
            await self.ctx.ops.skip(user.reviewer, lease_id, code, reason)
        task_id = _str(body, "task_id", required=False)
        return {"next": await self._next(user, task_id, 0.0)}

    async def _api_release(self, user: WebUser, body: dict[str, Any]) -> dict[str, Any]:
        released = 0
        for lease_id in body.get("lease_ids", []):
            if not isinstance(lease_id, str):
                raise InvalidArgument("lease_ids must be strings")
            check_id("lease_id", lease_id)
            await self.ctx.ops.release(user.reviewer, lease_id)
            released += 1
        # Whatever else this reviewer holds goes back too: Esc means "stop".
        while (held := await self.ctx.store.own_active_lease(user.reviewer.id)) is not None:
            await self.ctx.ops.release(user.reviewer, held.lease_id)
            released += 1
        return {"released": released}

    async def _api_undo(self, user: WebUser, body: dict[str, Any]) -> dict[str, Any]:
        review_id = _str(body, "review_id")
        seconds = self.ctx.ops.lease_seconds(0)
        shown = body.get("showing", "")
        if not isinstance(shown, str):
            raise InvalidArgument("showing must be a lease id")
        window = float(self.ctx.settings.web_undo_window_s)
        leased = await self.ctx.store.undo(user.reviewer.id, review_id, seconds, window)
        if shown:
            # The item the page showed after the undone one goes back to the queue:
            # the page holds one lease at a time.
            check_id("showing", shown)
            with contextlib.suppress(FailedPrecondition, NotFound):
                await self.ctx.ops.release(user.reviewer, shown)
        return {"item": await self._shown(user, leased)}

    async def _api_exposure(self, user: WebUser, body: dict[str, Any]) -> dict[str, Any]:
        lease_id = _str(body, "lease_id")
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 3600:
            raise InvalidArgument("seconds must be a number in [0, 3600]")
        lease = await self.ctx.store.lease_context(lease_id)
        if lease is None:
            raise NotFound(f"lease {lease_id} not found")
        if lease.reviewer_id != user.reviewer.id:
            raise PermissionDenied(f"lease {lease_id} belongs to another reviewer")
        task = task_pb2.Task.FromString(lease.task)
        policy = self.ctx.policy(task, lease.task)
        request = review_pb2.ReviewRequest.FromString(lease.request)
        category = machine_label(request)
        if category is None or not policy.is_sensitive(category):
            return {"counted": False, "break_due": False, "capped": False}
        row = await self.ctx.store.record_exposure(
            user.reviewer.id, lease.task_id, category, float(seconds), policy.daily_cap_s
        )
        crossed = int((row.seconds_today - seconds) // policy.break_after_s) < int(
            row.seconds_today // policy.break_after_s
        )
        return {
            "counted": True,
            "seconds_today": round(row.seconds_today, 1),
            "capped": row.capped,
            "break_due": crossed,
        }

    _actions = {
        "next": _api_next,
        "submit": _api_submit,
        "skip": _api_skip,
        "release": _api_release,
        "undo": _api_undo,
        "exposure": _api_exposure,
    }

    async def media(self, request: Request) -> Response:
        """The image of the caller's live lease (never cached, never anyone else's)."""
        try:
            user = await self.ctx.user(request)
            lease_id = request.path_params["lease_id"]
            check_id("lease_id", lease_id)
            lease = await self.ctx.store.lease_context(lease_id)
            if lease is None or lease.reviewer_id != user.reviewer.id:
                raise NotFound(f"lease {lease_id} not found")
            if lease.state != "active":
                raise FailedPrecondition(f"lease {lease_id} is {lease.state}")
            image, mime = render.inline_image(review_pb2.ReviewRequest.FromString(lease.request))
            return Response(image, media_type=mime, headers={"content-disposition": "inline"})
        except Exception as exc:
            return error_response(exc)
