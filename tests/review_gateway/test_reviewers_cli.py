"""``act reviewers create`` against a real gateway (gRPC), token never on the command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from services.devkit.stack import REPO_ROOT
from tests.review_gateway.conftest import Running
from tests.review_gateway.support import ADMIN_TOKEN


async def _act(*args: str, token: str | None) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.pop("ACT_GATEWAY_ADMIN_TOKEN", None)
    if token is not None:
        env["ACT_GATEWAY_ADMIN_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_create_prints_a_token_that_works_and_refuses_without_admin(running: Running):
    address = f"127.0.0.1:{running.gateway.port}"
    code, out, _ = await _act(
        "reviewers", "create", "zoe", "--role", "admin", "--gateway", address, token=ADMIN_TOKEN
    )
    assert code == 0
    created = json.loads(out)
    assert created["token"].startswith("act_")
    reviewer = await running.gateway.ops.auth.authenticate(  # type: ignore[union-attr]
        (("authorization", f"Bearer {created['token']}"),)
    )
    assert reviewer.id == created["reviewer_id"] and reviewer.is_admin
    code, _, err = await _act("reviewers", "create", "x", "--gateway", address, token=None)
    assert code == 2 and "ACT_GATEWAY_ADMIN_TOKEN" in err
    code, _, err = await _act("reviewers", "create", "x", "--gateway", address, token="wrong")
    assert code == 1 and "UNAUTHENTICATED" in err
    code, _, err = await _act(
        "reviewers", "create", "x", "--role", "boss", "--gateway", address, token=ADMIN_TOKEN
    )
    assert code == 2 and "--role" in err
