"""Benchmark: the reviewer workspace over HTTP, 32 reviewers against PostgreSQL.

The gateway runs in a child process (as in production, the reviewers' load
is not in its interpreter); 32 simulated reviewers in this process log in
through the form like a browser (login CSRF cookie, session cookie, the
page's CSRF token) and then loop: submit a label through ``/api/submit``,
whose answer carries the next item. The time from sending the submission to
having the next item's JSON is the "submit to next item" latency; the
browser's own rendering of that JSON (a few DOM nodes) is not included.

Two phases on the same gateway:

* **paced**: each reviewer looks at an item for 0.5 to 1.5 s (uniform,
  seeded) before submitting: 32 people working faster than any person
  reviews, about 32 reviews per second together. Its p95 is
  ``review_web_next_item_p95_ms``.
* **saturated**: no pause at all, every reviewer submits the moment the next
  item arrives: the capacity of the process (``review_web_reviews_per_s``)
  and the latency under that overload (``review_web_saturated_p95_ms``). On
  the 2-core machine the 32 clients share the cores with the gateway.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import re
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
from act.v1 import api_pb2, api_pb2_grpc, task_pb2

from services.review_gateway.auth import bearer_metadata
from services.review_gateway.bench import drop_schema, seed_queue

_CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
_CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')


def _serve(values: dict[str, Any], ports: Any, stop: Any) -> None:
    """Child process: the gateway (gRPC and web, no Kafka) until ``stop`` is set."""
    from services.review_gateway.app import Gateway
    from services.review_gateway.settings import GatewaySettings
    from services.runtime.logging import configure_logging

    # A spawned child starts with structlog's defaults (console, stdout): its
    # logs would land between the benchmark's JSON lines.
    configure_logging("review-gateway", "WARNING")

    async def main() -> None:
        gateway = Gateway(GatewaySettings(**values), kafka=None, host="127.0.0.1")
        await gateway.start(consume=False, relay=False)
        ports.put((gateway.port, gateway.http_port))
        try:
            await asyncio.to_thread(stop.wait)
        finally:
            await gateway.stop()

    asyncio.run(main())


async def _login(session: aiohttp.ClientSession, base: str, token: str) -> str:
    async with session.get(f"{base}/login") as page:
        match = _CSRF_INPUT.search(await page.text())
    assert match is not None, "login form without a CSRF field"
    form = {"token": token, "csrf": match.group(1)}
    async with session.post(f"{base}/login", data=form, allow_redirects=True) as answer:
        body = await answer.text()
        if answer.status != 200:
            raise RuntimeError(f"login failed: HTTP {answer.status}")
    found = _CSRF_META.search(body)
    assert found is not None, "review page without a CSRF token"
    return found.group(1)


@dataclass
class _Phase:
    """One phase: until when, the pause range per item, the latencies seen."""

    until: float
    think_s: tuple[float, float]
    latencies: list[float] = field(default_factory=list)
    done: int = 0


async def _reviewer(base: str, token: str, phases: list[_Phase], n_labels: int, seed: int) -> None:
    rng = random.Random(seed)
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        csrf = await _login(session, base, token)
        headers = {"x-csrf-token": csrf}
        async with session.post(f"{base}/api/next", json={}, headers=headers) as r:
            item = (await r.json())["next"]
        for phase in phases:
            item = await _work(session, base, headers, item, phase, n_labels, rng)


async def _work(
    session: aiohttp.ClientSession,
    base: str,
    headers: dict[str, str],
    item: dict[str, Any] | None,
    phase: _Phase,
    n_labels: int,
    rng: random.Random,
) -> dict[str, Any] | None:
    done = 0
    while item is not None and time.perf_counter() < phase.until:
        low, high = phase.think_s
        if high > 0:
            await asyncio.sleep(rng.uniform(low, high))
        body = {"lease_id": item["lease_id"], "label": done % n_labels, "key": uuid.uuid4().hex}
        started = time.perf_counter()
        async with session.post(f"{base}/api/submit", json=body, headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"submit failed: HTTP {r.status} {await r.text()}")
            item = (await r.json())["next"]
        phase.latencies.append(time.perf_counter() - started)
        done += 1
    phase.done += done
    return item


def _p95_ms(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=20)[-1] * 1000 if len(latencies) > 20 else 0.0


@dataclass(frozen=True)
class WebBench:
    """Results of :func:`bench_review_web`."""

    next_item_p95_ms: float
    paced_reviews_per_s: float
    saturated_p95_ms: float
    reviews_per_s: float


async def bench_review_web(
    dsn: str, *, reviewers: int = 32, seconds: float = 10.0, items: int = 10_000
) -> WebBench:
    """Both phases (``seconds`` each) with ``reviewers`` over HTTP."""
    schema = f"webbench_{uuid.uuid4().hex[:12]}"
    admin_token = uuid.uuid4().hex
    values: dict[str, Any] = {
        "database_url": dsn,
        "database_schema": schema,
        "admin_token": admin_token,
        "grpc_port": 0,
        "metrics_port": 0,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "environment": "test",
        "database_pool_size": reviewers + 4,
        "web_cookie_secure": False,  # plain HTTP on loopback
        "web_login_attempts_per_minute": reviewers * 2,
    }
    task = task_pb2.Task(
        task_id="bench-task",
        labels=[task_pb2.Label(index=0, name="ok"), task_pb2.Label(index=1, name="harmful")],
    )
    ctx = multiprocessing.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_serve, args=(values, ports, stop), daemon=True)
    child.start()
    try:
        grpc_port, http_port = await asyncio.to_thread(ports.get, True, 120)
        await seed_queue(dsn, schema, task, items)
        tokens = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = api_pb2_grpc.ReviewServiceStub(channel)
            for i in range(reviewers):
                created = await stub.CreateReviewer(
                    api_pb2.CreateReviewerRequest(name=f"web-bench-{i}"),
                    metadata=bearer_metadata(admin_token),
                    timeout=10,
                )
                tokens.append(created.token)
        base = f"http://127.0.0.1:{http_port}"
        started = time.perf_counter() + 2.0  # logins first
        paced = _Phase(started + seconds, (0.5, 1.5))
        saturated = _Phase(started + 2 * seconds, (0.0, 0.0))
        await asyncio.gather(
            *(
                _reviewer(base, t, [paced, saturated], len(task.labels), seed=i)
                for i, t in enumerate(tokens)
            )
        )
        return WebBench(
            next_item_p95_ms=_p95_ms(paced.latencies),
            paced_reviews_per_s=paced.done / seconds,
            saturated_p95_ms=_p95_ms(saturated.latencies),
            reviews_per_s=saturated.done / seconds,
        )
    finally:
        stop.set()
        await asyncio.to_thread(child.join, 30)
        if child.is_alive():
            child.kill()
        await drop_schema(dsn, schema)
