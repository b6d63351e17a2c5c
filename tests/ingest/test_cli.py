"""``act ingest --via grpc``: JSONL lines streamed to the ingest service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from act.v1 import api_pb2
from typer.testing import CliRunner

from services.cli.main import app
from tests.ingest.conftest import PRODUCER_TOKEN, Env, Running, producer_auth, valid_task

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_act_ingest_via_grpc(env: Env, running: Running, tmp_path: Path) -> None:
    await running.stub().CreateTask(
        api_pb2.CreateTaskRequest(task=valid_task("cli-task")), metadata=producer_auth(), timeout=10
    )
    lines = [
        {"id": "c-1", "text": "hello", "label": "spam"},
        {"id": "c-2", "text": "world"},
        {"id": "c-3", "text": ""},  # bad line: no content
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    args = ["ingest", "--task", "cli-task", str(path), "--via", "grpc"]
    args += ["--target", f"127.0.0.1:{running.service.port}", "--quiet"]
    env_vars = {"ACT_INGEST_TOKEN": PRODUCER_TOKEN}
    # The CLI runs its own event loop: in a thread, while this loop serves.
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env_vars)
    assert result.exit_code == 1, result.output  # a bad line and a refused item
    assert "ingested 1 items" in result.output
    assert "item c-1: refused (FAILED_PRECONDITION)" in result.output  # reference label
    assert "line 3" in result.output
    published = [i.item_id for i in await env.items() if i.task_id == "cli-task"]
    assert published == ["c-2"]
