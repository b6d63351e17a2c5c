"""The HTTP routes of the batch stand-in (:mod:`services.batchapi.standin`).

Shapes follow the providers' API references as their SDKs read them: the
OpenAI ``FileObject``/``Batch`` objects and batch output/error lines, the
Anthropic ``MessageBatch`` object and its results lines.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.batchapi.standin_core import BatchStore, StandInBatch


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _page(
    items: list[Any], ids: list[str], after: str | None, limit: int
) -> tuple[list[Any], bool]:
    """Items after the one with id ``after`` (newest first), at most ``limit``."""
    start = ids.index(after) + 1 if after in ids else 0
    chosen = items[start : start + limit]
    return chosen, start + limit < len(items)


def routes(s: BatchStore) -> list[Route]:
    """Every route of both protocols, bound to the stand-in ``s``."""

    # ------------------------------------------------------------ OpenAI

    def openai_batch(b: StandInBatch) -> dict[str, Any]:
        status = s.status(b)
        finish_openai(b)
        counts = s.counts(b)
        return {
            "id": b.id, "object": "batch", "endpoint": b.endpoint,
            "input_file_id": b.input_file_id, "completion_window": "24h",
            "status": status, "created_at": int(b.created),
            "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
            "request_counts": {
                "total": len(b.requests), "completed": counts["succeeded"],
                "failed": counts["errored"] + counts["expired"],
            },
            "metadata": b.metadata or None,
            "errors": {"object": "list", "data": [{"code": "invalid", "message": b.failed_reason}]}
            if b.failed_reason else None,
        }  # fmt: skip

    def finish_openai(b: StandInBatch) -> None:
        """Write the output and error files once the batch has ended."""
        if b.outcomes is None or b.output_file_id is not None or b.error_file_id is not None:
            return
        model = str((b.requests[0].get("body") or {}).get("model", "")) if b.requests else ""
        out, err = [], []
        for o in b.outcomes:
            line: dict[str, Any] = {"id": s.new_id("batch_req_"), "custom_id": o.custom_id}
            if o.kind == "succeeded":
                body = {
                    "id": s.new_id("chatcmpl-"), "object": "chat.completion",
                    "created": int(b.created), "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant", "content": o.text}}],
                    "usage": {"prompt_tokens": o.prompt_tokens,
                              "completion_tokens": o.completion_tokens,
                              "total_tokens": o.prompt_tokens + o.completion_tokens},
                }  # fmt: skip
                out.append({**line, "response": {"status_code": 200, "body": body}, "error": None})
            elif o.kind == "errored":
                body = {"error": {"message": "stand-in injected failure", "type": "server_error"}}
                err.append({**line, "response": {"status_code": 500, "body": body}, "error": None})
            else:
                error = {"code": "batch_expired", "message": "not executed before the window"}
                err.append({**line, "response": None, "error": error})
        if out:
            b.output_file_id = s.new_id("file-")
            s.files[b.output_file_id] = ("batch_output", s.jsonl(out))
        if err:
            b.error_file_id = s.new_id("file-")
            s.files[b.error_file_id] = ("batch_output", s.jsonl(err))

    def file_object(file_id: str) -> dict[str, Any]:
        purpose, content = s.files[file_id]
        return {
            "id": file_id, "object": "file", "bytes": len(content), "created_at": 0,
            "filename": f"{file_id}.jsonl", "purpose": purpose, "status": "processed",
        }  # fmt: skip

    async def upload(request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        if form.get("purpose") != "batch" or upload is None or isinstance(upload, str):
            return _error(400, "a file with purpose=batch is required")
        content = await upload.read()
        for number, raw in enumerate(content.splitlines(), 1):
            try:
                line = json.loads(raw)
                assert {"custom_id", "method", "url", "body"} <= set(line)
            except (ValueError, AssertionError):
                return _error(400, f"line {number} is not a batch request")
        file_id = s.new_id("file-")
        s.files[file_id] = ("batch", content)
        return JSONResponse(file_object(file_id))

    async def file_content(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if file_id not in s.files:
            return _error(404, "no such file")
        return Response(s.files[file_id][1], media_type="application/octet-stream")

    async def create_batch(request: Request) -> Response:
        body = await request.json()
        file_id = body.get("input_file_id")
        if file_id not in s.files or s.files[file_id][0] != "batch":
            return _error(400, "input_file_id is not a batch file")
        endpoint = body.get("endpoint")
        lines = [json.loads(raw) for raw in s.files[file_id][1].splitlines()]
        if any(line["url"] != endpoint for line in lines):
            return _error(400, "every line's url must be the batch endpoint")
        batch = s.create(
            "openai", lines, metadata=dict(body.get("metadata") or {}),
            endpoint=endpoint, input_file_id=file_id,
        )  # fmt: skip
        return JSONResponse(openai_batch(batch))

    async def get_batch(request: Request) -> Response:
        b = s.batches.get(request.path_params["batch_id"])
        if b is None or b.protocol != "openai":
            return _error(404, "no such batch")
        return JSONResponse(openai_batch(b))

    async def list_batches(request: Request) -> Response:
        mine = [b for b in reversed(s.batches.values()) if b.protocol == "openai"]
        limit = int(request.query_params.get("limit", "20"))
        chosen, more = _page(mine, [b.id for b in mine], request.query_params.get("after"), limit)
        data = [openai_batch(b) for b in chosen]
        return JSONResponse(
            {"object": "list", "data": data, "has_more": more,
             "first_id": data[0]["id"] if data else None,
             "last_id": data[-1]["id"] if data else None}
        )  # fmt: skip

    # --------------------------------------------------------- Anthropic

    def message_batch(b: StandInBatch, request: Request) -> dict[str, Any]:
        s.settle(b)
        counts = s.counts(b)
        ended = b.outcomes is not None
        return {
            "id": b.id, "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0 if ended else len(b.requests), "succeeded": counts["succeeded"],
                "errored": counts["errored"], "canceled": 0, "expired": counts["expired"],
            },
            "created_at": _iso(b.created), "expires_at": _iso(b.created + 86400),
            "ended_at": _iso(b.ended), "archived_at": None, "cancel_initiated_at": None,
            "results_url": f"{s.base_url}/v1/messages/batches/{b.id}/results" if ended else None,
        }  # fmt: skip

    async def create_message_batch(request: Request) -> Response:
        body = await request.json()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "requests must be a non-empty list")
        return JSONResponse(message_batch(s.create("anthropic", requests), request))

    def anthropic_batch(request: Request) -> StandInBatch | None:
        b = s.batches.get(request.path_params["batch_id"])
        return b if b is not None and b.protocol == "anthropic" else None

    async def get_message_batch(request: Request) -> Response:
        b = anthropic_batch(request)
        if b is None:
            return _error(404, "no such batch", "not_found_error")
        return JSONResponse(message_batch(b, request))

    async def list_message_batches(request: Request) -> Response:
        mine = [b for b in reversed(s.batches.values()) if b.protocol == "anthropic"]
        ids = [b.id for b in mine]
        limit = int(request.query_params.get("limit", "20"))
        chosen, more = _page(mine, ids, request.query_params.get("after_id"), limit)
        data = [message_batch(b, request) for b in chosen]
        return JSONResponse(
            {"data": data, "has_more": more,
             "first_id": data[0]["id"] if data else None,
             "last_id": data[-1]["id"] if data else None}
        )  # fmt: skip

    async def message_batch_results(request: Request) -> Response:
        b = anthropic_batch(request)
        if b is None:
            return _error(404, "no such batch", "not_found_error")
        s.settle(b)
        if b.outcomes is None:
            return _error(400, "the batch has not ended")
        model = str((b.requests[0].get("params") or {}).get("model", ""))
        lines: list[dict[str, Any]] = []
        for o in b.outcomes:
            result: dict[str, Any]
            if o.kind == "succeeded":
                message = {
                    "id": s.new_id("msg_"), "type": "message", "role": "assistant",
                    "model": model, "content": [{"type": "text", "text": o.text}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": o.prompt_tokens,
                              "output_tokens": o.completion_tokens},
                }  # fmt: skip
                result = {"type": "succeeded", "message": message}
            elif o.kind == "errored":
                error = {"type": "api_error", "message": "stand-in injected failure"}
                result = {"type": "errored", "error": {"type": "error", "error": error}}
            else:
                result = {"type": "expired"}
            lines.append({"custom_id": o.custom_id, "result": result})
        return Response(s.jsonl(lines), media_type="application/binary")

    return [
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
        Route("/v1/messages/batches", create_message_batch, methods=["POST"]),
        Route("/v1/messages/batches", list_message_batches, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", get_message_batch, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}/results", message_batch_results, methods=["GET"]),
    ]
