"""The reviewer workspace: a Starlette app served by the gateway process.

Why inside the gateway and not a service of its own: the page is a second
edge over the same operations (:mod:`..ops`) and the same database, and it
needs the gateway's change signal to hand out the next item the moment one is
queued. A separate web service would add a network hop to every submission
(the p95 budget is 150 ms with 32 reviewers) and a second copy of the
authorization rules. It listens on its own port (``ACT_GATEWAY_HTTP_PORT``),
so the Ingress exposes it without exposing gRPC.
"""

from __future__ import annotations

import asyncio

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.review_gateway.ops import ReviewOps
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import ReviewStore
from services.review_gateway.web import render
from services.review_gateway.web.adjudicate import AdjudicationRoutes
from services.review_gateway.web.admin import AdminRoutes
from services.review_gateway.web.context import HERE, WebContext
from services.review_gateway.web.reviewer import ReviewerRoutes
from services.review_gateway.web.security import SecurityHeaders
from services.runtime.http_server import bound_port, serve_in_loop, stop_serving

log = structlog.get_logger(__name__)


def build_web_app(ops: ReviewOps, store: ReviewStore, settings: GatewaySettings) -> Starlette:
    """The workspace's ASGI app over one set of operations."""
    ctx = WebContext(ops, store, settings)
    reviewer = ReviewerRoutes(ctx)
    admin = AdminRoutes(ctx)
    adjudication = AdjudicationRoutes(admin)

    async def home(request: Request) -> Response:
        return RedirectResponse("/review", status_code=303)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/login", reviewer.login_page, methods=["GET"]),
        Route("/login", reviewer.login, methods=["POST"]),
        Route("/logout", reviewer.logout, methods=["POST"]),
        Route("/review", reviewer.page, methods=["GET"]),
        Route("/api/{action}", reviewer.api, methods=["POST"]),
        Route("/media/{lease_id}", reviewer.media, methods=["GET"]),
        Route("/admin", admin.page, methods=["GET"]),
        Route("/admin/reviewers", admin.create_reviewer, methods=["POST"]),
        Route("/admin/reviewers/{reviewer_id}/disable", admin.disable_reviewer, methods=["POST"]),
        Route("/admin/reviewers/{reviewer_id}/blur", admin.set_blur, methods=["POST"]),
        Route("/admin/leases/{lease_id}/release", admin.release_lease, methods=["POST"]),
        Route("/admin/disputes/{request_id}", adjudication.page, methods=["GET"]),
        Route("/admin/disputes/{request_id}", adjudication.decide, methods=["POST"]),
        Route("/admin/disputes/{request_id}/media", adjudication.media, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(SecurityHeaders)
    return app


class WebServer:
    """uvicorn serving the workspace inside the gateway's event loop."""

    def __init__(self, app: Starlette, host: str, port: int, forwarded_allow_ips: str = "") -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,  # paths carry lease ids only, but keep logs to our own events
            lifespan="off",
            http="httptools",  # the C parser: a third of the CPU of h11 per request
            server_header=False,
            # The client address (login throttling) comes from X-Forwarded-For only
            # when the peer is a trusted proxy (the Ingress controller).
            proxy_headers=bool(forwarded_allow_ips),
            forwarded_allow_ips=forwarded_allow_ips or None,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return bound_port(self._server)

    async def start(self) -> None:
        """Load the masking model, bind, and serve in the background."""
        await asyncio.to_thread(render.warm_up)
        # No start-up deadline: the gateway's own start bounds it.
        self._task = await serve_in_loop(self._server, "gateway-http", timeout_s=float("inf"))
        log.info("web_started", port=self.port)

    @property
    def task(self) -> asyncio.Task[None]:
        """The serving task (the gateway watches it: a dead web server stops the process)."""
        assert self._task is not None
        return self._task

    async def stop(self) -> None:
        """Finish open requests (a few seconds at most) and close."""
        if self._task is None:
            return
        await stop_serving(self._server, self._task, timeout_s=10)
        self._task = None
