"""The admin page: queue, budget, reviewers, critic calibration, exposure, leases.

Server-rendered (no script needed to read it; ``admin.js`` only refreshes it);
every action is a CSRF-checked form post that needs the admin role, the same
rule the gRPC admin RPCs follow (:mod:`..ops`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.core.agreement import Agreement, fleiss_kappa_pairs, per_reviewer_agreement
from services.core.calibration import (
    CalibrationBin,
)
from services.core.recalibration import DEFAULT_MIN_REVIEWS, EpsCalibration
from services.review_gateway.auth import require_admin
from services.review_gateway.errors import GatewayError, InvalidArgument
from services.review_gateway.ops import check_id
from services.review_gateway.store import ROLE_ADMIN, ROLE_REVIEWER, Reviewer
from services.review_gateway.web.context import WebContext, WebUser, http_status

log = structlog.get_logger(__name__)

CHART_W, CHART_H, PAD = 240, 240, 28


@dataclass(frozen=True, slots=True)
class TaskPanel:
    """One task's row and chart on the admin page."""

    task_id: str
    name: str
    pending: int
    leased: int
    expired: int
    completed: int
    skipped: int
    budget: int
    disagreement: float | None
    ece: float | None
    points: list[dict[str, float]]
    label_names: dict[int, str]
    #: Items whose two reviews disagree, waiting for an admin.
    disputed: int
    #: Agreement of the double-reviewed items (the task's overlap share).
    agreement: Agreement
    #: Per reviewer: (name, agreed, double-reviewed items), by name.
    reviewer_agreement: list[tuple[str, int, int]]
    #: The critic's eps recalibrated on the reviews (isotonic, 1/pi-weighted);
    #: None before any review. Method "identity" until there are enough.
    calibration: EpsCalibration | None = None
    #: SVG polyline of the calibration map ("" for the identity).
    calibration_line: str = ""
    #: (eps, calibrated eps) at a few eps values, for the caption.
    calibration_at: tuple[tuple[float, float], ...] = ()


def chart_points(bins: list[CalibrationBin]) -> list[dict[str, float]]:
    """SVG coordinates of the calibration points (x = mean eps, y = error rate)."""
    span_w, span_h = CHART_W - 2 * PAD, CHART_H - 2 * PAD
    return [
        {
            "x": round(PAD + b.mean_eps * span_w, 1),
            "y": round(CHART_H - PAD - b.error_rate * span_h, 1),
            "r": round(min(9.0, 2.5 + b.count**0.5 / 3), 1),
            "eps": round(b.mean_eps, 3),
            "rate": round(b.error_rate, 3),
            "n": b.count,
        }
        for b in bins
    ]


def calibration_view(cal: EpsCalibration) -> tuple[str, tuple[tuple[float, float], ...]]:
    """The map as an SVG polyline (same axes as the points) and at eps 0.1, 0.3, 0.5, 0.7, 0.9."""
    span_w, span_h = CHART_W - 2 * PAD, CHART_H - 2 * PAD
    if cal.method == "identity":
        return "", ()
    grid = [i / 50 for i in range(51)]
    values = cal(grid)
    line = " ".join(
        f"{PAD + e * span_w:.1f},{CHART_H - PAD - float(v) * span_h:.1f}"
        for e, v in zip(grid, values, strict=True)
    )
    at = tuple((e, round(float(cal([e])[0]), 3)) for e in (0.1, 0.3, 0.5, 0.7, 0.9))
    return line, at


class AdminRoutes:
    """Handlers of the admin page and its actions."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    async def admin_user(self, request: Request, form_csrf: str | None = None) -> WebUser:
        if form_csrf is None:
            user = await self.ctx.user(request)
        else:
            user = await self.ctx.acting_user(request, form_csrf)
        require_admin(user.reviewer)
        return user

    async def page(self, request: Request) -> Response:
        """The admin page (a reviewer without the admin role is sent to its own page)."""
        try:
            user = await self.admin_user(request)
        except GatewayError as exc:
            if exc.code.name == "PERMISSION_DENIED":
                return RedirectResponse("/review", status_code=303)
            return RedirectResponse("/login", status_code=303)
        return await self._render(request, user, notice={})

    async def _render(
        self, request: Request, user: WebUser, notice: dict[str, Any], status: int = 200
    ) -> Response:
        store = self.ctx.store
        accounts = await store.list_reviewers()
        who = {r.id: r.name for r in accounts}
        task_ids = await store.list_task_ids()
        panels = [await self._panel(user.reviewer, task_id, who) for task_id in task_ids]
        reviewers = []
        for reviewer in accounts:
            stats = await store.reviewer_stats(reviewer.id)
            reviewers.append(stats)
        disputes = await store.disputes()
        day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        exposure = await store.exposure_report(day)
        leases = await store.active_leases("")
        return self.ctx.templates.TemplateResponse(
            request,
            "admin.html",
            {
                "user": user.reviewer,
                "csrf": user.csrf_token,
                "panels": panels,
                "reviewers": reviewers,
                "exposure": exposure,
                "names": {p.task_id: p.label_names for p in panels},
                "leases": leases,
                "disputes": disputes,
                "day": day,
                "notice": notice,
                "chart": {"w": CHART_W, "h": CHART_H, "pad": PAD},
                "roles": (ROLE_REVIEWER, ROLE_ADMIN),
                "default_blur_px": self.ctx.settings.web_blur_px,
                "min_reviews": DEFAULT_MIN_REVIEWS,
            },
            status_code=status,
        )

    async def _panel(self, caller: Reviewer, task_id: str, who: dict[str, str]) -> TaskPanel:
        store = self.ctx.store
        stats = await store.task_stats(task_id)
        task = await store.get_task(task_id)
        pairs = await store.review_pairs(task_id)
        by_reviewer = per_reviewer_agreement(
            (p.first_reviewer, p.first_label, p.second_reviewer, p.second_label) for p in pairs
        )
        summary = await self.ctx.ops.task_calibration(caller, task_id)
        disagreement = ece = calibration = None
        points: list[dict[str, float]] = []
        if summary is not None:
            disagreement = summary.disagreement
            ece = summary.expected_calibration_error
            points = chart_points(summary.bins)
            calibration = summary.recalibration
        line, at = calibration_view(calibration) if calibration is not None else ("", ())
        return TaskPanel(
            task_id=task_id,
            name=(task.name if task is not None and task.name else task_id),
            pending=stats.pending,
            leased=stats.leased,
            expired=stats.expired,
            completed=stats.completed,
            skipped=stats.skipped,
            budget=int(task.budget.hard_cap) if task is not None else 0,
            disagreement=disagreement,
            ece=ece,
            points=points,
            label_names={lb.index: lb.name for lb in task.labels} if task is not None else {},
            disputed=stats.disputed,
            agreement=fleiss_kappa_pairs([(p.first_label, p.second_label) for p in pairs]),
            reviewer_agreement=sorted(
                (who.get(rid, rid), agreed, items) for rid, (agreed, items) in by_reviewer.items()
            ),
            calibration=calibration,
            calibration_line=line,
            calibration_at=at,
        )

    async def create_reviewer(self, request: Request) -> Response:
        """Create a reviewer; its token is shown once, in this response only."""
        form = await request.form()
        try:
            user = await self.admin_user(request, str(form.get("csrf", "")))
            role = str(form.get("role", ROLE_REVIEWER))
            reviewer, token = await self.ctx.ops.create_reviewer(
                user.reviewer, str(form.get("name", "")), role
            )
        except GatewayError as exc:
            return await self.refused(request, exc)
        notice = {"token": token, "name": reviewer.name, "id": reviewer.id}
        return await self._render(request, user, notice, status=201)

    async def disable_reviewer(self, request: Request) -> Response:
        """Disable a reviewer: its token and web sessions stop working, leases go back."""
        form = await request.form()
        try:
            user = await self.admin_user(request, str(form.get("csrf", "")))
            reviewer_id = request.path_params["reviewer_id"]
            await self.ctx.ops.disable_reviewer(
                user.reviewer, reviewer_id, str(form.get("reason", ""))
            )
            self.ctx.forget_reviewer(reviewer_id)
        except GatewayError as exc:
            return await self.refused(request, exc)
        return RedirectResponse("/admin", status_code=303)

    async def set_blur(self, request: Request) -> Response:
        """Set a reviewer's image blur in pixels; an empty field: the server default."""
        form = await request.form()
        try:
            user = await self.admin_user(request, str(form.get("csrf", "")))
            reviewer_id = request.path_params["reviewer_id"]
            raw = str(form.get("blur_px", "")).strip()
            try:
                blur_px = int(raw) if raw else None
            except ValueError:
                raise InvalidArgument("blur_px must be a whole number of pixels") from None
            await self.ctx.ops.set_reviewer_blur(user.reviewer, reviewer_id, blur_px)
            # The reviewer's cached sessions hold the old value.
            self.ctx.forget_reviewer(reviewer_id)
        except GatewayError as exc:
            return await self.refused(request, exc)
        return RedirectResponse("/admin", status_code=303)

    async def release_lease(self, request: Request) -> Response:
        """Force-release a lease: the item is pending again at once."""
        form = await request.form()
        try:
            user = await self.admin_user(request, str(form.get("csrf", "")))
            lease_id = request.path_params["lease_id"]
            check_id("lease_id", lease_id)
            await self.ctx.ops.release(user.reviewer, lease_id)
        except GatewayError as exc:
            return await self.refused(request, exc)
        log.info("web_force_release", lease_id=lease_id, actor=user.reviewer.id)
        return RedirectResponse("/admin", status_code=303)

    async def refused(self, request: Request, exc: GatewayError) -> Response:
        status = http_status(exc)
        try:
            user = await self.admin_user(request)
        except GatewayError:
            return Response(str(exc), status_code=status, media_type="text/plain")
        return await self._render(request, user, {"error": str(exc)}, status=status)
