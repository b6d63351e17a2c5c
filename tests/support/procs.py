"""Run a service as its own process in tests, so it can be SIGKILLed and restarted.

``spawn_service`` starts ``python -m <module>`` from the repository root with
extra environment variables, appending stdout and stderr to a log file (a
restarted process appends to the same log). The other helpers wait for it to
serve gRPC health, kill it without warning, stop it with SIGTERM, and reap it
in a ``finally`` block.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.stack import REPO_ROOT


def spawn_service(module: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m MODULE`` with ``env`` added to os.environ.

    Runs from the repository root; stdout and stderr are appended to ``log``.
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_serving(
    port: int, proc: subprocess.Popen[bytes], *, what: str, timeout: float = 60
) -> None:
    """Wait until the gRPC health service on ``port`` answers SERVING.

    Fails when ``proc`` exits first or after ``timeout`` seconds; ``what``
    names the service in the failure message.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            assert proc.poll() is None, f"{what} exited during start"
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not become healthy")


async def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``predicate`` every ``interval`` seconds until it holds; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def sigkill(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Kill the process without warning (crash simulation) and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=timeout)


def sigterm(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """Ask the process to stop (SIGTERM) and return its exit status.

    Raises ``subprocess.TimeoutExpired`` when it does not exit within ``timeout``.
    """
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process if it still runs and wait for it (for ``finally`` blocks)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def read_log(log: Path) -> str:
    """A service's log as text (undecodable bytes replaced)."""
    return log.read_text(errors="replace")
