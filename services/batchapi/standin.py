"""BatchStandIn: a STAND-IN for the OpenAI Batch API and Anthropic Message Batches.

Not a model and not the providers' service: a local HTTP server that speaks
both batch protocols closely enough for the official SDKs (``openai``,
``anthropic``) to drive it, for tests and benchmarks of the batch path
(:mod:`services.batchapi`). No real API is reachable from the test machines.

OpenAI: ``POST /v1/files`` (multipart, ``purpose=batch``, JSONL lines
``{custom_id, method, url, body}``), ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches``
(``after``/``limit``, newest first). A batch goes validating -> in_progress
-> completed, or expired; successes go to ``output_file_id``, failed and
expired requests to ``error_file_id``.

Anthropic: ``POST /v1/messages/batches`` (``requests=[{custom_id, params}]``),
``GET /v1/messages/batches/{id}`` (``processing_status`` in_progress/ended,
``request_counts``, ``results_url``), ``GET /v1/messages/batches``
(``after_id``/``before_id``/``limit``) and ``GET .../{id}/results`` (JSONL,
``result.type`` succeeded/errored/expired).

Injected faults (:class:`StandInConfig`): a seeded share of requests fails
(per custom_id, so a retry under a new custom_id gets a new draw; a request
whose text holds ``FAULT:always`` always fails, one with ``FAULT:garbage`` always
gets an unparseable refusal), a seeded share of batches
expires with some requests unprocessed, and a batch ends only
``completion_s`` after creation (slow completion). Answers come from
:func:`services.devkit.fault_server.answer_for` (the format the prompt asks
for, stable per item), with token usage.

``submissions`` counts how often each custom_id was submitted in a created
batch (what would be billed); ``GET /standin/stats`` serves it to other
processes.
"""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.batchapi import standin_routes
from services.batchapi.standin_core import (
    ALWAYS_FAIL,
    ALWAYS_GARBAGE,
    BatchStore,
    Outcome,
    StandInBatch,
    StandInConfig,
)
from services.runtime.http_server import bound_port, serve_in_loop, stop_serving

__all__ = [
    "ALWAYS_FAIL",
    "ALWAYS_GARBAGE",
    "BatchStandIn",
    "BatchStore",
    "Outcome",
    "StandInBatch",
    "StandInConfig",
]


class BatchStandIn(BatchStore):
    """The stand-in server (see the module docstring)."""

    def __init__(
        self, config: StandInConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(config, host, port)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[*standin_routes.routes(self), Route("/standin/stats", self._stats)]
        )

    async def start(self) -> None:
        """Serve in the running event loop until :meth:`stop`."""
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning",
            access_log=False, lifespan="off", timeout_graceful_shutdown=1,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._task = await serve_in_loop(self._server, "batch stand-in")
        self.port = bound_port(self._server)

    async def stop(self) -> None:
        """Stop serving."""
        await stop_serving(self._server, self._task)

    async def _stats(self, request: Request) -> Response:
        return JSONResponse({"submissions": dict(self.submissions), "batches": len(self.batches)})
