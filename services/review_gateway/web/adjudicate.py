"""The adjudication page: an admin decides the label of an item whose two reviews disagree.

Shown like a reviewer's item (the image blurred and grayscale at the admin's
own blur, sensitive words masked, revealed only while held), with the two
reviews and the machine label beside it, since the admin's job here is to
weigh them. The decision is a CSRF-checked form post through
:meth:`~..ops.ReviewOps.adjudicate`; the item's one FinalLabel leaves with it.
The image comes from an admin-only route that serves disputed items only.
"""

from __future__ import annotations

import structlog
from act.v1 import review_pb2, task_pb2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.review_gateway.errors import GatewayError, InvalidArgument, NotFound
from services.review_gateway.labels import label_name, machine_label
from services.review_gateway.ops import check_id
from services.review_gateway.web import render
from services.review_gateway.web.admin import AdminRoutes
from services.review_gateway.web.context import error_response

log = structlog.get_logger(__name__)


class AdjudicationRoutes:
    """Handlers of the adjudication page, its decision and its image."""

    def __init__(self, admin: AdminRoutes) -> None:
        self.admin = admin
        self.ctx = admin.ctx

    async def page(self, request: Request) -> Response:
        """The disputed item, its two reviews and the decision form."""
        try:
            user = await self.admin.admin_user(request)
            request_id = request.path_params["request_id"]
            check_id("request_id", request_id)
            disputed = await self.ctx.store.disputed_item(request_id)
            if disputed is None:
                raise NotFound(f"request {request_id} is not waiting for adjudication")
        except GatewayError as exc:
            return await self.admin.refused(request, exc)
        review_request = review_pb2.ReviewRequest.FromString(disputed.request)
        task = task_pb2.Task.FromString(disputed.task)
        policy = self.ctx.policy(task, disputed.task)
        content = render.content_view(review_request, policy, f"/admin/disputes/{request_id}/media")
        machine = machine_label(review_request)
        await self.ctx.store.audit(
            user.reviewer.id, "shown", request_id, None, "shown=content,reviews,machine_label"
        )
        return self.ctx.templates.TemplateResponse(
            request,
            "adjudicate.html",
            {
                "user": user.reviewer,
                "csrf": user.csrf_token,
                "dispute": disputed.dispute,
                "task": task,
                "content": content,
                "blur_px": self.ctx.blur_px(user.reviewer),
                "machine": label_name(task, machine) if machine is not None else "",
                "eps": round(float(review_request.decision.eps), 3),
                "names": {lb.index: lb.name for lb in task.labels},
            },
        )

    async def decide(self, request: Request) -> Response:
        """Record the admin's label; back to the admin page."""
        form = await request.form()
        try:
            user = await self.admin.admin_user(request, str(form.get("csrf", "")))
            request_id = request.path_params["request_id"]
            check_id("request_id", request_id)
            raw = str(form.get("label", ""))
            if not raw.isdigit():
                raise InvalidArgument("choose a label")
            result = await self.ctx.ops.adjudicate(user.reviewer, request_id, int(raw))
        except GatewayError as exc:
            return await self.admin.refused(request, exc)
        log.info("web_adjudicated", adjudication_id=result.adjudication_id, actor=user.reviewer.id)
        return RedirectResponse("/admin#disputes-h", status_code=303)

    async def media(self, request: Request) -> Response:
        """The image of a disputed item (admins only, never cached)."""
        try:
            await self.admin.admin_user(request)
            request_id = request.path_params["request_id"]
            check_id("request_id", request_id)
            disputed = await self.ctx.store.disputed_item(request_id)
            if disputed is None:
                raise NotFound(f"request {request_id} is not waiting for adjudication")
            image, mime = render.inline_image(review_pb2.ReviewRequest.FromString(disputed.request))
            return Response(image, media_type=mime, headers={"content-disposition": "inline"})
        except Exception as exc:
            return error_response(exc)
