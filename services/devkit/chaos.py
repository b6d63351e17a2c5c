"""The whole pipeline under chaos: ``python -m services.devkit.chaos`` (``make chaos``).

One run (:func:`run_chaos`, configured by :class:`ChaosConfig`):

1. starts its own Kafka broker and PostgreSQL (:mod:`services.devkit.stack`),
   creates every topic under a fresh prefix and migrates the gateway's schema;
2. starts the six processes (:mod:`services.devkit.chaos_fleet`): annotator
   and criticizer with the CPU few-shot backend, sampler, review gateway,
   trainer and the ingest service;
3. creates the task through ``IngestService.CreateTask`` and streams the
   items through ``IngestService.Ingest`` at a steady rate, while the replay
   reviewer answers the review requests with the data set's labels
   (:mod:`services.devkit.chaos_clients`);
4. meanwhile follows a plan drawn from the seed (:func:`plan_events`):
   SIGKILL a service and start it again (waiting for SERVING), restart the
   broker, restart the database; a monitor restarts any service that exits
   on its own;
5. waits until every accepted item has a label or a dead letter and the
   trainer has stored every labelled item, stops everything, reads the topics
   ``read_committed`` and counts (:mod:`services.devkit.chaos_check`).

The result is a :class:`ChaosResult`; the command prints it as one JSON line
and exits 1 unless nothing was lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from act.v1 import item_pb2

from services.cli.kafkaio import read_snapshot
from services.devkit.chaos_check import (
    Follower,
    LabelSeen,
    Tally,
    budget_bound,
    parse_outcome,
    tally,
    trainer_item_ids,
)
from services.devkit.chaos_clients import (
    IngestFeed,
    IngestTally,
    create_reviewer,
    review_until_stopped,
)
from services.devkit.chaos_fleet import Fleet, log_tail, make_fleet
from services.devkit.chaos_plan import ChaosConfig, Event, make_task, plan_events
from services.devkit.stack import LocalBroker, LocalPostgres, free_port
from services.fewshot.pools import builtin_pool
from services.review_gateway.db import normalize_url, open_database
from services.review_gateway.replay import ReplayConfig, ReplayReviewer
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.topics import default_catalog

Say = Callable[[str], None]

__all__ = ["ChaosConfig", "ChaosResult", "Event", "plan_events", "run_chaos"]


@dataclass
class ChaosResult:
    """What a run did and what the check found."""

    tally: Tally
    kills: dict[str, int]
    crashes: dict[str, int]  # exits nobody asked for (restarted by the monitor)
    broker_restarts: int
    db_restarts: int
    seed: int
    wall_s: float
    ingest_duplicates: int  # IngestSummary.duplicates over retried calls
    refused: int
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The run lost and duplicated nothing (see :attr:`Tally.ok`)."""
        return self.tally.ok and not self.refused

    def line(self) -> str:
        """The one JSON line the command prints."""
        return json.dumps(
            {
                **asdict(self.tally),
                "kills": self.kills,
                "kills_total": sum(self.kills.values()),
                "crashes": self.crashes,
                "broker_restarts": self.broker_restarts,
                "db_restarts": self.db_restarts,
                "ingest_duplicates": self.ingest_duplicates,
                "refused": self.refused,
                "seed": self.seed,
                "wall_s": round(self.wall_s, 1),
                "ok": self.ok,
            },
            sort_keys=True,
        )


async def run_chaos(config: ChaosConfig, say: Say | None = None) -> ChaosResult:
    """One chaos run (see the module docstring); ``say(str)`` hears progress."""
    tell: Say = say or (lambda _message: None)
    started = time.monotonic()
    # Not under a private temp dir: a root-run PostgreSQL runs as the postgres user.
    root = config.out or Path(tempfile.mkdtemp(prefix="act-chaos-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    broker = LocalBroker(root / "kafka", port=free_port(), controller_port=free_port())
    pg_dir = root / "pg"
    pg_dir.mkdir(mode=0o755, exist_ok=True)
    postgres = LocalPostgres(pg_dir, port=free_port())
    # While the broker restarts, this process's own clients (the follower) log every
    # failed reconnect; that is the point of the run, not news.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        await asyncio.gather(asyncio.to_thread(broker.start), asyncio.to_thread(postgres.start))
        tell(f"broker {broker.bootstrap}, PostgreSQL :{postgres.port}, run folder {root}")
        return await _run(config, root, broker, postgres, tell, started)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(broker.stop)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(postgres.stop)
        if config.out is None and not config.keep:
            shutil.rmtree(root, ignore_errors=True)
        kafka_log.setLevel(level)


async def _run(
    config: ChaosConfig,
    root: Path,
    broker: LocalBroker,
    postgres: LocalPostgres,
    say: Say,
    started: float,
) -> ChaosResult:
    prefix = f"chaos{uuid.uuid4().hex[:8]}."
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
    await ensure_topics(kafka, replication=1, partitions=config.partitions)
    schema = prefix.rstrip(".")
    engine = await open_database(postgres.dsn, schema=schema, pool_size=1)
    await engine.dispose()
    pool = await asyncio.to_thread(builtin_pool, config.dataset)
    picked = random.Random(config.seed).sample(range(len(pool)), config.items)
    task = make_task(config, pool)
    items = pool.items(picked, task.task_id)
    held = {pool.ids[i]: pool.label_of(i) for i in picked}
    admin = secrets.token_urlsafe(24)
    fleet = Fleet(
        make_fleet(
            bootstrap=broker.bootstrap,
            prefix=prefix,
            database_url=normalize_url(postgres.dsn),
            schema=schema,
            admin_token=admin,
            run_dir=root,
            dataset=config.dataset,
        )
    )
    catalog = default_catalog()
    follower = Follower(
        kafka, [catalog.name("labels", prefix), catalog.name("dlq", prefix)], parse_outcome
    )
    stopping = asyncio.Event()
    reviewer: ReplayReviewer | None = None
    background: list[asyncio.Task[object]] = []
    streaming: asyncio.Task[IngestTally] | None = None
    events_done: list[str] = []
    broker_restarts = db_restarts = 0
    try:
        await fleet.start_all()
        fleet.start_monitor()
        say(f"six services SERVING after {time.monotonic() - started:.0f} s")
        gateway = f"127.0.0.1:{fleet.services['review-gateway'].grpc_port}"
        feed = IngestFeed(
            f"127.0.0.1:{fleet.services['ingest'].grpc_port}",
            admin,
            rate=config.items_per_s,
            batch=config.batch_items,
        )
        await feed.create_task(task)
        reviewer = ReplayReviewer(
            ReplayConfig(
                target=gateway,
                token=await create_reviewer(gateway, admin),
                task_id=task.task_id,
                held_labels=held,
                concurrency=4,
                idle_seconds=1e9,  # stopped once every item has its outcome
                call_timeout_s=5,
                record=True,
            )
        )
        follower.start()
        background.append(asyncio.create_task(review_until_stopped(reviewer, stopping)))
        streaming = asyncio.create_task(feed.stream(items))
        stream_start = time.monotonic()
        for event in plan_events(config):
            await _sleep_until(stream_start + event.at_s, fleet, [streaming, *background])
            t0 = time.monotonic()
            if event.kind == "kill":
                await fleet.kill_and_restart(event.service, event.downtime_s)
                what = f"kill {event.service}"
            elif event.kind == "broker":
                await asyncio.to_thread(broker.restart)
                broker_restarts += 1
                what = "restart broker"
            else:
                await asyncio.to_thread(postgres.stop)
                await asyncio.sleep(config.db_downtime_s)
                await asyncio.to_thread(postgres.start)
                db_restarts += 1
                what = "restart database"
            events_done.append(f"{t0 - stream_start:.0f}s {what} ({time.monotonic() - t0:.1f}s)")
            say(f"  {events_done[-1]}")
        tally_in = await streaming
        say(f"stream done: {len(tally_in.accepted_ids)} accepted ids after "
            f"{time.monotonic() - stream_start:.0f} s")  # fmt: skip
        store = root / "trainer" / "store.sqlite"
        await _wait_quiet(
            config, fleet, background, follower, tally_in.accepted_ids, store, task.task_id
        )
        stopping.set()
        reviewer.stop()
        await asyncio.wait_for(asyncio.gather(*background), 60)
        await fleet.stop_all()
        await follower.stop()
        labels_topic, dlq_topic = catalog.name("labels", prefix), catalog.name("dlq", prefix)
        labels = [parse_outcome(labels_topic, v) for _, v in await _read(kafka, labels_topic)]
        dead = [parse_outcome(dlq_topic, v) for _, v in await _read(kafka, dlq_topic)]
        item_records: Counter[str] = Counter(
            item_pb2.Item.FromString(v).item_id
            for _, v in await _read(kafka, catalog.name("items", prefix))
        )
        critiques = Counter(p for p, _ in await _read(kafka, catalog.name("critiques", prefix)))
        requests = len(await _read(kafka, catalog.name("review_requests", prefix)))
        counts = tally(
            accepted=tally_in.accepted_ids,
            item_records=item_records,
            labels=labels,
            dead_letters=dead,
            review_requests=requests,
            bound=budget_bound(critiques, config.budget, config.window_items),
            reviews=dict(reviewer.accepted),
            trainer_ids=trainer_item_ids(store, task.task_id),
        )
        return ChaosResult(
            tally=counts,
            kills=dict(fleet.kills),
            crashes=dict(fleet.crashes),
            broker_restarts=broker_restarts,
            db_restarts=db_restarts,
            seed=config.seed,
            wall_s=time.monotonic() - started,
            ingest_duplicates=tally_in.duplicates,
            refused=len(tally_in.refused),
            events=events_done,
        )
    finally:
        stopping.set()
        if reviewer is not None:
            reviewer.stop()
        for task_ in [*background, *([streaming] if streaming is not None else [])]:
            task_.cancel()
        await follower.stop()
        await fleet.stop_all(timeout_s=10)


async def _read(kafka: KafkaSettings, topic: str) -> list[tuple[int, bytes]]:
    """(partition, value) of every committed record of ``topic`` (tombstones left out)."""
    records = await read_snapshot(kafka, topic, timeout_s=120)
    return [(r.partition, r.value) for r in records if r.value]


def _check(fleet: Fleet, tasks: list[asyncio.Task[object]]) -> None:
    """Raise the first failure of the monitor or of a client task (the stream, the
    reviewer), instead of waiting for a stall that it would cause."""
    fleet.check()
    for task in tasks:
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            raise exc


async def _sleep_until(at: float, fleet: Fleet, tasks: list[asyncio.Task[object]]) -> None:
    """Until the monotonic time ``at``; fail early when a client or a restart failed."""
    while time.monotonic() < at:
        _check(fleet, tasks)
        await asyncio.sleep(min(0.5, max(0.0, at - time.monotonic())))


async def _wait_quiet(
    config: ChaosConfig,
    fleet: Fleet,
    tasks: list[asyncio.Task[object]],
    follower: Follower,
    accepted: set[str],
    store: Path,
    task_id: str,
) -> None:
    """Until every accepted item has an outcome and the trainer stored every label,
    then ``settle_s`` more; fails after ``stall_s`` without progress."""
    last: tuple[int, int] = (-1, -1)
    moved = time.monotonic()
    while True:
        _check(fleet, tasks)
        done = {x.item_id for x in follower.records.values()}
        stored = await asyncio.to_thread(trainer_item_ids, store, task_id)
        labelled = {x.item_id for x in follower.records.values() if isinstance(x, LabelSeen)}
        state = (len(done & accepted), len(set(stored) & labelled))
        if state[0] >= len(accepted) and state[1] >= len(labelled):
            await asyncio.sleep(config.settle_s)
            return
        if state != last:
            last, moved = state, time.monotonic()
        elif time.monotonic() - moved > config.stall_s:
            tails = "\n".join(f"--- {s.name} ---\n{log_tail(s, 1500)}" for s in fleet.services)
            raise TimeoutError(
                f"no progress for {config.stall_s:.0f} s: {state[0]}/{len(accepted)} items "
                f"with an outcome, {state[1]}/{len(labelled)} labels stored\n{tails}"
            )
        await asyncio.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    """``python -m services.devkit.chaos``: one run, its counts as one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m services.devkit.chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=15)
    parser.add_argument("--broker-restarts", type=int, default=2)
    parser.add_argument("--db-restarts", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items-per-s", type=float, default=40.0)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder, kept (default: a temporary one, removed afterwards); run as root, "
        "its parents must be traversable by the postgres user",
    )
    parser.add_argument("--quiet", action="store_true", help="only the JSON line")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        items=args.items,
        kills=args.kills,
        broker_restarts=args.broker_restarts,
        db_restarts=args.db_restarts,
        seed=args.seed,
        items_per_s=args.items_per_s,
        out=args.out,
    )

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    result = asyncio.run(run_chaos(config, say))
    print(result.line(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
