"""Serving a uvicorn server inside the running event loop (one way, for every HTTP edge).

The reviewer workspace, the OpenAI fault server and the batch stand-in all
run uvicorn as a task of their own process's loop: :func:`serve_in_loop`
starts it and returns once it listens (or raises what stopped it), and
:func:`stop_serving` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import uvicorn


async def serve_in_loop(
    server: uvicorn.Server, what: str, *, timeout_s: float = 10.0
) -> asyncio.Task[None]:
    """Start ``server`` as a task and wait until it listens; returns the task.

    Raises the server's own error (a port in use) when it stops during
    start-up, TimeoutError when it does not listen within ``timeout_s``.
    """
    task = asyncio.create_task(server.serve(), name=what)
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"{what} stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start")
        await asyncio.sleep(0.01)
    return task


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on."""
    sockets = [s for srv in server.servers for s in srv.sockets]
    return int(sockets[0].getsockname()[1])


async def stop_serving(
    server: uvicorn.Server | None,
    task: asyncio.Task[None] | None,
    *,
    force: bool = False,
    timeout_s: float = 5.0,
) -> None:
    """Ask ``server`` to exit (``force``: drop open requests) and wait for its task."""
    if server is not None:
        server.should_exit = True
        server.force_exit = force
    if task is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=timeout_s)
