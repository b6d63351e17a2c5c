"""OpenAIFaultServer: a stand-in for an OpenAI-compatible chat-completions server.

Not a model. It answers ``POST /v1/chat/completions`` after a fixed latency
and, for a configurable share of requests (default 30%), misbehaves in one of
five ways:

* ``rate_limit``: 429 with ``Retry-After``;
* ``server_error``: 500;
* ``hang``: no answer for ``hang_s`` (past the client's timeout);
* ``truncated_json``: 200 with the body cut in half;
* ``unparseable``: 200 with a refusal instead of the required format.

Otherwise it answers in the format the prompt asks for (``[k]``,
``[reasoning][k]``, ``[0.370]``, ``[reasoning][4]``, ``Yes``,
``[reasoning][No]``), recognised from the format strings of the system
prompt; values derive from a hash of the user message, so they are stable per
item. With ``logprobs`` it returns plausible per-token logprobs (yes/no
alternatives at the answer). A user message containing ``FAULT:garbage`` or
``FAULT:500`` always gets that fault (to force dead letters).

Run in-process (``await server.start()``) or as a process for benchmarks:
``python -m services.devkit.fault_server --port 0 --latency 1 --fault-rate 0``
prints ``READY <port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import selectors
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.runtime.http_server import bound_port, serve_in_loop, stop_serving

FAULTS = ("rate_limit", "server_error", "hang", "truncated_json", "unparseable")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class FaultConfig:
    """Behaviour of the fault server."""

    latency_s: float = 0.05
    fault_rate: float = 0.3
    faults: tuple[str, ...] = FAULTS
    retry_after_s: int = 1
    hang_s: float = 30.0
    seed: int = 7


@dataclass
class FaultStats:
    """What the server did (for assertions)."""

    requests: int = 0
    answered: int = 0
    faults: Counter[str] = field(default_factory=Counter)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


_TOKEN = re.compile(r"\[|\]|[A-Za-z]+|\d|\.|\s+|.", re.DOTALL)


def answer_for(system: str, user: str) -> str:
    """The well-formed answer the prompt asks for (deterministic per user message)."""
    h = int.from_bytes(hashlib.sha256(user.encode()).digest()[:8], "big")
    n_labels = max(1, len(re.findall(r"(?m)^\d+: ", system)))
    reason = "The item shows typical features of this class, so I decide accordingly"
    yes_no = "Yes" if h % 3 == 0 else "No"
    if "[reasoning][label_index]" in system:
        return f"[{reason}][{h % n_labels}]"
    if "[label_index]" in system:
        return f"[{h % n_labels}]"
    if "[reasoning][error_probability]" in system:
        return f"[{reason}][{(h % 1000) / 1000:.3f}]"
    if "[error_probability]" in system:
        return f"[{(h % 1000) / 1000:.3f}]"
    if "[reasoning][error_level]" in system:
        return f"[{reason}][{h % 5 + 1}]"
    if "[reasoning][answer]" in system:
        return f"[{reason}][{yes_no}]"
    if "Yes if" in system:
        return yes_no
    return "[0]"


def logprobs_for(text: str, top_n: int) -> dict[str, Any]:
    """Per-token logprobs of ``text`` in the chat-completions shape."""
    content = []
    for tok in _TOKEN.findall(text):
        if tok in ("Yes", "No"):
            other = "No" if tok == "Yes" else "Yes"
            chosen, alts = math.log(0.7), [(other, math.log(0.25)), (" yes", math.log(0.03))]
        else:
            chosen, alts = -0.05, [("the", -4.0), ("a", -5.0)]
        top = [{"token": tok, "logprob": chosen, "bytes": list(tok.encode())}]
        top += [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alts]
        content.append(
            {
                "token": tok,
                "logprob": chosen,
                "bytes": list(tok.encode()),
                "top_logprobs": top[: max(1, top_n)],
            }
        )
    return {"content": content}


class OpenAIFaultServer:
    """The fault server (see the module docstring)."""

    def __init__(
        self, config: FaultConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or FaultConfig()
        self.host = host
        self.port = port
        self.stats = FaultStats()
        self._rng = random.Random(self.config.seed)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/stats", self._stats, methods=["GET"]),
            ]
        )

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL clients use."""
        return f"http://{self.host}:{self.port}/v1"

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fault-model", "object": "model"}]})

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "requests": self.stats.requests,
                "answered": self.stats.answered,
                "faults": dict(self.stats.faults),
            }
        )

    def _pick_fault(self, users: str) -> str | None:
        if "FAULT:garbage" in users:
            return "unparseable"
        if "FAULT:500" in users:
            return "server_error"
        if self.config.faults and self._rng.random() < self.config.fault_rate:
            return self._rng.choice(self.config.faults)
        return None

    async def _chat(self, request: Request) -> Response:
        self.stats.requests += 1
        body = await request.json()
        messages = body.get("messages", [])
        system = "".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
        users = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "user")
        first_user = next(
            (_text(m.get("content")) for m in messages if m.get("role") == "user"), ""
        )
        fault = self._pick_fault(users)
        await asyncio.sleep(self.config.latency_s)
        if fault is not None:
            self.stats.faults[fault] += 1
        if fault == "rate_limit":
            return JSONResponse(
                {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                status_code=429,
                headers={"Retry-After": str(self.config.retry_after_s)},
            )
        if fault == "server_error":
            return JSONResponse(
                {"error": {"message": "internal error", "type": "server_error"}}, status_code=500
            )
        if fault == "hang":
            # Past the client's timeout; stop as soon as the client gives up.
            deadline = time.monotonic() + self.config.hang_s
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    return Response(b"", status_code=499)
                await asyncio.sleep(0.1)
        text = (
            "I'm sorry, but I can't help with that request."
            if fault == "unparseable"
            else answer_for(system, first_user)
        )
        tokens = _TOKEN.findall(text)
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{self.stats.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fault-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": logprobs_for(text, int(body.get("top_logprobs") or 1))
                    if body.get("logprobs")
                    else None,
                }
            ],
            "usage": {
                "prompt_tokens": (len(system) + len(users)) // 4,
                "completion_tokens": len(tokens),
                "total_tokens": (len(system) + len(users)) // 4 + len(tokens),
            },
        }
        raw = json.dumps(payload).encode()
        if fault == "truncated_json":
            return Response(raw[: len(raw) // 2], media_type="application/json")
        self.stats.answered += 1
        return Response(raw, media_type="application/json")

    async def start(self) -> None:
        """Serve in the running event loop until :meth:`stop`."""
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=60,
            timeout_graceful_shutdown=1,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._task = await serve_in_loop(self._server, "fault server")
        self.port = bound_port(self._server)

    async def stop(self) -> None:
        """Stop serving (hung requests are dropped)."""
        await stop_serving(self._server, self._task, force=True)


def spawn(
    *, latency_s: float, fault_rate: float = 0.0, timeout_s: float = 20.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server as its own process; returns it and its ``/v1`` base URL.

    The one place that spawns it: the LLM stage benchmarks call this through
    ``services.devkit.benchkit.spawn_openai_stub``.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.devkit.fault_server",
            "--port",
            "0",
            "--latency",
            str(latency_s),
            "--fault-rate",
            str(fault_rate),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        # Wait for output with the deadline: a child that hangs silently must not
        # block a bare readline() forever.
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=left):
                break
            line = proc.stdout.readline().decode().strip()
            if line.startswith("READY "):
                return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"
            if not line and proc.poll() is not None:
                break  # exited (EOF)
    proc.kill()
    proc.wait(timeout=10)  # reaped: no zombie left behind
    raise RuntimeError(f"fault server process did not start within {timeout_s:g} s")


async def _main(args: argparse.Namespace) -> None:
    server = OpenAIFaultServer(
        FaultConfig(latency_s=args.latency, fault_rate=args.fault_rate, hang_s=args.hang),
        port=args.port,
    )
    await server.start()
    print(f"READY {server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--hang", type=float, default=30.0)
    asyncio.run(_main(parser.parse_args()))
