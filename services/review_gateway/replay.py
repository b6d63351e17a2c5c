"""Replay reviewer: a gRPC client that plays human reviewers from held labels.

It leases items from the review gateway and answers each with the held human
label of the item (a JSONL file of ``{"item_id": ..., "label": ...}``), or with
``Item.reference_label`` when the gateway exposes it (demo/benchmark mode),
right with probability ``accuracy`` and otherwise a different label drawn
uniformly. Draws are seeded per item, so a rerun gives the same answers
whatever the concurrency. It stops after ``max_items`` submissions or when
the queue has stayed empty for ``idle_seconds``.

With ``leave_for_people = N`` it Skips the first N distinct items it leases
(reason "left for a person in the browser"): the gateway never offers an
item again to a reviewer who skipped it, so those N stay pending for the
people in the web workspace while the replay reviewer answers the rest.

Every call carries a deadline. Transient errors (UNAVAILABLE,
DEADLINE_EXCEEDED, ...: the gateway restarting) are retried with backoff; a
Submit is retried with the *same* idempotency key, so a retry of a submission
that was accepted before a crash answers ``duplicate = True`` instead of
labelling twice.

Usage::

    python -m services.review_gateway.replay --target host:port --token TOKEN \\
        --labels held.jsonl --accuracy 0.95 --seconds-per-item 0 --concurrency 8 --task TASK

The channel is plaintext unless ``--tls-ca`` (or ``ACT_CLIENT_TLS_CA_FILE``)
names the CA of the gateway's certificate; ``--tls-cert``/``--tls-key``
(``ACT_CLIENT_TLS_CERT_FILE``/``_KEY_FILE``) add a client certificate for a
gateway that requires one (mutual TLS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import grpc
from act.v1 import api_pb2, api_pb2_grpc

from services.review_gateway.auth import bearer_metadata
from services.runtime.grpc_client import (
    ClientTLS,
    GrpcTlsError,
    add_tls_arguments,
    channel,
    tls_from_arguments,
)

T = TypeVar("T")

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

Missing = Literal["machine", "skip", "release"]

#: The Skip reason of an item the replay reviewer leaves for a person.
LEFT_FOR_PEOPLE_REASON = "left for a person in the browser"


def load_held_labels(path: Path) -> dict[str, int]:
    """Read ``{"item_id": str, "label": int}`` lines (blank lines ignored)."""
    labels: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                labels[str(entry["item_id"])] = int(entry["label"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: expected {{item_id, label}}: {exc}") from None
    return labels


@dataclass
class ReplayConfig:
    """How the replay reviewer behaves."""

    target: str
    token: str
    task_id: str = ""
    held_labels: dict[str, int] = field(default_factory=dict)
    accuracy: float = 1.0
    seconds_per_item: float = 0.0
    concurrency: int = 1
    max_items: int = 0  # 0 = no limit
    idle_seconds: float = 10.0
    seed: int = 0
    lease_seconds: int = 0  # 0 = the gateway's default
    call_timeout_s: float = 10.0
    missing: Missing = "machine"
    leave_for_people: int = 0  # skip the first N distinct items leased, for people
    record: bool = False  # keep a per-event history (tests)
    tls: ClientTLS | None = None  # None = plaintext channel


@dataclass
class ReplaySummary:
    """What a replay run did."""

    leased: int = 0
    submitted: int = 0
    duplicates: int = 0
    wrong: int = 0
    lost_leases: int = 0  # lease expired or revoked before the submission
    skipped: int = 0
    left_for_people: int = 0  # distinct items skipped for people (``leave_for_people``)
    released: int = 0
    retries: int = 0
    missing_labels: int = 0
    seconds: float = 0.0


class ReplayReviewer:
    """Leases and answers items concurrently until done (see the module doc)."""

    def __init__(self, config: ReplayConfig) -> None:
        if not 0.0 <= config.accuracy <= 1.0:
            raise ValueError("accuracy must be in [0, 1]")
        if config.leave_for_people < 0:
            raise ValueError("leave_for_people must be >= 0")
        self.config = config
        self.summary = ReplaySummary()
        #: (event, item_id, lease_id, monotonic seconds) when ``record`` is on:
        #: events "leased", "accepted" (first acceptance), "duplicate", "lost",
        #: "left" (skipped for people).
        self.history: list[tuple[str, str, str, float]] = []
        #: item_id -> review_id of every accepted submission (``record`` on).
        self.accepted: dict[str, str] = {}
        #: item_id of every item skipped for people (at most ``leave_for_people``).
        self.left_for_people: set[str] = set()
        self._metadata = bearer_metadata(config.token)
        self._idle_since: float | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Finish the items in hand and return."""
        self._stop.set()

    def _note(self, event: str, item_id: str, lease_id: str) -> None:
        if self.config.record:
            self.history.append((event, item_id, lease_id, time.monotonic()))

    def answer(self, item_id: str, true_label: int, num_labels: int) -> int:
        """The replayed answer: right with probability ``accuracy`` (seeded per item)."""
        rng = random.Random(f"{self.config.seed}:{item_id}")
        if num_labels < 2 or rng.random() < self.config.accuracy:
            return true_label
        wrong = rng.randrange(num_labels - 1)
        return wrong if wrong < true_label else wrong + 1

    async def _rpc(self, call: Callable[..., Any], request: Any) -> Any:
        delay = 0.1
        while True:
            try:
                return await call(
                    request, metadata=self._metadata, timeout=self.config.call_timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                self.summary.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _done(self) -> bool:
        if self._stop.is_set():
            return True
        limit = self.config.max_items
        return bool(limit) and self.summary.submitted >= limit

    async def run(self) -> ReplaySummary:
        """Review until done; returns the summary."""
        started = time.monotonic()
        async with channel(self.config.target, self.config.tls, CHANNEL_OPTIONS) as ch:
            stub = api_pb2_grpc.ReviewServiceStub(ch)
            await asyncio.gather(*(self._worker(stub) for _ in range(self.config.concurrency)))
        self.summary.seconds = time.monotonic() - started
        return self.summary

    async def _worker(self, stub: api_pb2_grpc.ReviewServiceStub) -> None:
        cfg = self.config
        wait = int(max(0, min(cfg.idle_seconds, cfg.call_timeout_s / 2, 5)))
        while not self._done():
            leased = await self._rpc(
                stub.Lease,
                api_pb2.LeaseRequest(
                    task_id=cfg.task_id, lease_seconds=cfg.lease_seconds, wait_seconds=wait
                ),
            )
            if not leased.lease_id:
                now = time.monotonic()
                if self._idle_since is None:
                    self._idle_since = now
                if now - self._idle_since >= cfg.idle_seconds:
                    return
                if wait == 0:
                    await asyncio.sleep(0.2)
                continue
            self._idle_since = None
            self.summary.leased += 1
            await self._review(stub, leased)

    def _leave_for_people(self, item_id: str) -> bool:
        """Whether to leave this item for people (the first N distinct items leased).

        No await between the check and the add: concurrent workers never leave
        more than N items.
        """
        if item_id in self.left_for_people:
            return True  # leased again (e.g. its Skip's lease had run out)
        if len(self.left_for_people) >= self.config.leave_for_people:
            return False
        self.left_for_people.add(item_id)
        self.summary.left_for_people = len(self.left_for_people)
        return True

    async def _skip_for_people(
        self, stub: api_pb2_grpc.ReviewServiceStub, item_id: str, lease_id: str
    ) -> None:
        request = api_pb2.SkipRequest(
            lease_id=lease_id,
            reason=LEFT_FOR_PEOPLE_REASON,
            reason_code=api_pb2.SKIP_REASON_OTHER,
        )
        try:
            await self._rpc(stub.Skip, request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                # The lease ran out first: the item is back in the queue and,
                # leased again, is skipped again.
                self.summary.lost_leases += 1
                self._note("lost", item_id, lease_id)
                return
            raise
        self.summary.skipped += 1
        self._note("left", item_id, lease_id)

    async def _review(self, stub: api_pb2_grpc.ReviewServiceStub, leased: Any) -> None:
        cfg = self.config
        item = leased.request.decision.critique.annotation.item
        item_id = item.item_id
        self._note("leased", item_id, leased.lease_id)
        if self._leave_for_people(item_id):
            await self._skip_for_people(stub, item_id, leased.lease_id)
            return
        true_label: int | None = cfg.held_labels.get(item_id)
        if true_label is None and item.HasField("reference_label"):
            true_label = item.reference_label
        if true_label is None:
            self.summary.missing_labels += 1
            if cfg.missing == "skip":
                await self._rpc(
                    stub.Skip,
                    api_pb2.SkipRequest(
                        lease_id=leased.lease_id,
                        reason="no held label",
                        reason_code=api_pb2.SKIP_REASON_OTHER,
                    ),
                )
                self.summary.skipped += 1
                return
            if cfg.missing == "release":
                await self._rpc(
                    stub.ReleaseLease, api_pb2.ReleaseLeaseRequest(lease_id=leased.lease_id)
                )
                self.summary.released += 1
                return
            true_label = int(leased.request.decision.critique.annotation.label_index)
        label = self.answer(item_id, true_label, len(leased.labels))
        if cfg.seconds_per_item > 0:
            await asyncio.sleep(cfg.seconds_per_item)
        request = api_pb2.SubmitRequest(
            lease_id=leased.lease_id, label_index=label, idempotency_key=uuid.uuid4().hex
        )
        try:
            response = await self._rpc(stub.Submit, request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                # The lease ran out (slow reviewer, or the gateway was down
                # longer than the lease): the item is back in the queue.
                self.summary.lost_leases += 1
                self._note("lost", item_id, leased.lease_id)
                return
            raise
        if cfg.record:
            self.accepted.setdefault(item_id, response.review_id)
        if response.duplicate:
            self.summary.duplicates += 1
            self._note("duplicate", item_id, leased.lease_id)
        else:
            self._note("accepted", item_id, leased.lease_id)
        self.summary.submitted += 1
        if label != true_label:
            self.summary.wrong += 1


def _parse(argv: list[str] | None) -> ReplayConfig:
    parser = argparse.ArgumentParser(
        prog="python -m services.review_gateway.replay", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--target", required=True, help="gateway host:port")
    parser.add_argument(
        "--token",
        default=os.environ.get("ACT_REPLAY_TOKEN", ""),
        help="bearer token (or ACT_REPLAY_TOKEN)",
    )
    parser.add_argument("--labels", type=Path, help="JSONL of {item_id, label}")
    parser.add_argument("--accuracy", type=float, default=1.0)
    parser.add_argument("--seconds-per-item", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--task", default="", help="task id; empty = any task")
    parser.add_argument(
        "--max-items", type=int, default=0, help="stop after N submissions (0 = no limit)"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="stop after an empty queue for this long"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lease-seconds", type=int, default=0)
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="deadline of each call, seconds"
    )
    parser.add_argument(
        "--missing",
        choices=["machine", "skip", "release"],
        default="machine",
        help="no held label: answer the machine label, skip, or release",
    )
    parser.add_argument(
        "--leave-for-people",
        type=int,
        default=0,
        metavar="N",
        help="skip the first N distinct items leased, leaving them for people (default 0)",
    )
    add_tls_arguments(parser, "the gateway")
    args = parser.parse_args(argv)
    try:
        tls = tls_from_arguments(args)
    except GrpcTlsError as exc:
        parser.error(str(exc))
    if not args.token:
        parser.error("--token or ACT_REPLAY_TOKEN is required")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    if args.leave_for_people < 0:
        parser.error("--leave-for-people must be >= 0")
    return ReplayConfig(
        target=args.target,
        token=args.token,
        task_id=args.task,
        held_labels=load_held_labels(args.labels) if args.labels else {},
        accuracy=args.accuracy,
        seconds_per_item=args.seconds_per_item,
        concurrency=args.concurrency,
        max_items=args.max_items,
        idle_seconds=args.idle_seconds,
        seed=args.seed,
        lease_seconds=args.lease_seconds,
        call_timeout_s=args.timeout,
        missing=args.missing,
        leave_for_people=args.leave_for_people,
        tls=tls,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints the run's summary as JSON."""
    config = _parse(argv)
    reviewer = ReplayReviewer(config)

    async def run() -> ReplaySummary:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            import signal

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, reviewer.stop)
        return await reviewer.run()

    try:
        summary = asyncio.run(run())
    except GrpcTlsError as exc:
        print(json.dumps({"error": "TLS", "details": str(exc)}), file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(json.dumps({"error": exc.code().name, "details": exc.details()}), file=sys.stderr)
        return 1
    print(json.dumps(asdict(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
