"""The trainer's local state in SQLite: the training set and the fits.

* ``labels``: one row per ``(task_id, item_id)``, upserted from ``act.labels``.
  A FinalLabel seen twice (a replay after a crash, a re-delivered record)
  updates its row and counts once. Each row keeps ``seq``, the order in
  which its item was *first* seen, so a fit can pin its training set to "every
  item with ``seq <= snapshot``" and a resumed fit trains on exactly the same
  rows. A human label (``delta = 1``) is never replaced by a machine one.
* ``fits``: the FitStatus of every fit (serialised protobuf) with its state
  and idempotency key, so fits survive restarts and resume.
* ``tasks``: per task, how many labels existed when the last fit started
  (the automatic-fit trigger counts new labels from there).

SQLite in WAL mode with ``synchronous=NORMAL``: a committed upsert survives a
process crash (SIGKILL) and the stage's offset commit happens after it, so
nothing acknowledged is lost; one connection guarded by a lock serves the
event loop and the fit thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from act.v1 import review_pb2, training_pb2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    task_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    machine_label INTEGER NOT NULL,
    human_label INTEGER,
    delta INTEGER NOT NULL,
    pi REAL NOT NULL,
    eps REAL NOT NULL,
    item BLOB NOT NULL,
    updates INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (task_id, item_id)
);
CREATE INDEX IF NOT EXISTS labels_task_seq ON labels (task_id, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    labels_at_last_fit INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fits (
    fit_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    idempotency_key TEXT,
    state INTEGER NOT NULL,
    snapshot_seq INTEGER NOT NULL,
    status BLOB NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS fits_idem ON fits (task_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS fits_created ON fits (created_at, fit_id);
"""


@dataclass(frozen=True, slots=True)
class LabelRow:
    """One training item as stored."""

    item_id: str
    seq: int
    machine_label: int
    human_label: int | None
    delta: bool
    pi: float
    eps: float
    item: bytes  # serialised act.v1.Item


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What an upsert did."""

    inserted: bool  # first sighting of the item
    seq: int


class TrainerStore:
    """SQLite-backed labels and fits (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # ---------------------------------------------------------------- labels

    def _next_seq(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        seq = (int(row[0]) if row else 0) + 1
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('seq', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (seq,),
        )
        return seq

    def upsert_label(self, label: review_pb2.FinalLabel) -> UpsertResult:
        """Insert or update the item's row; ``inserted`` is True only on first sight."""
        item = label.item if label.HasField("item") else label.decision.critique.annotation.item
        human = label.human_label if label.HasField("human_label") else None
        delta = bool(label.delta) and human is not None
        eps = label.eps if label.eps else label.decision.eps
        pi = label.pi if label.pi else label.decision.pi
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT seq, delta FROM labels WHERE task_id = ? AND item_id = ?",
                    (label.task_id, label.item_id),
                ).fetchone()
                if row is None:
                    seq = self._next_seq()
                    self._conn.execute(
                        "INSERT INTO labels (task_id, item_id, seq, machine_label, human_label,"
                        " delta, pi, eps, item, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (
                            label.task_id,
                            label.item_id,
                            seq,
                            label.machine_label,
                            human,
                            int(delta),
                            pi,
                            eps,
                            item.SerializeToString(),
                            now,
                        ),
                    )
                    result = UpsertResult(inserted=True, seq=seq)
                else:
                    seq = int(row[0])
                    if bool(row[1]) and not delta:
                        # Never downgrade a human label to a machine one.
                        self._conn.execute(
                            "UPDATE labels SET updates = updates + 1, updated_at = ?"
                            " WHERE task_id = ? AND item_id = ?",
                            (now, label.task_id, label.item_id),
                        )
                    else:
                        self._conn.execute(
                            "UPDATE labels SET machine_label = ?, human_label = ?, delta = ?,"
                            " pi = ?, eps = ?, item = ?, updates = updates + 1, updated_at = ?"
                            " WHERE task_id = ? AND item_id = ?",
                            (
                                label.machine_label,
                                human,
                                int(delta),
                                pi,
                                eps,
                                item.SerializeToString(),
                                now,
                                label.task_id,
                                label.item_id,
                            ),
                        )
                    result = UpsertResult(inserted=False, seq=seq)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return result

    def count_labels(self, task_id: str | None = None) -> int:
        """Distinct items stored (of one task, or all)."""
        with self._lock:
            if task_id is None:
                row = self._conn.execute("SELECT COUNT(*) FROM labels").fetchone()
            else:
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM labels WHERE task_id = ?", (task_id,)
                ).fetchone()
        return int(row[0])

    def count_human(self, task_id: str, snapshot_seq: int | None = None) -> int:
        """Stored items of a task with a human label (up to a snapshot)."""
        limit = snapshot_seq if snapshot_seq is not None else 2**62
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM labels WHERE task_id = ? AND delta = 1 AND seq <= ?",
                (task_id, limit),
            ).fetchone()
        return int(row[0])

    def max_seq(self) -> int:
        """The latest ``seq`` handed out (0 when empty)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        return int(row[0]) if row else 0

    def total_updates(self) -> int:
        """How many times a stored item was seen again (duplicates absorbed)."""
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(SUM(updates), 0) FROM labels").fetchone()
        return int(row[0])

    def iter_labels(self, task_id: str, snapshot_seq: int) -> Iterator[LabelRow]:
        """The task's rows with ``seq <= snapshot_seq``, in ``seq`` order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT item_id, seq, machine_label, human_label, delta, pi, eps, item"
                " FROM labels WHERE task_id = ? AND seq <= ? ORDER BY seq",
                (task_id, snapshot_seq),
            ).fetchall()
        for r in rows:
            yield LabelRow(
                item_id=str(r[0]),
                seq=int(r[1]),
                machine_label=int(r[2]),
                human_label=None if r[3] is None else int(r[3]),
                delta=bool(r[4]),
                pi=float(r[5]),
                eps=float(r[6]),
                item=bytes(r[7]),
            )

    # ------------------------------------------------------------ auto fits

    def labels_since_last_fit(self, task_id: str) -> int:
        """Labels of a task stored after its last fit started."""
        with self._lock:
            row = self._conn.execute(
                "SELECT labels_at_last_fit FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        return self.count_labels(task_id) - (int(row[0]) if row else 0)

    # ------------------------------------------------------------------ fits

    def create_fit(
        self, status: training_pb2.FitStatus, idempotency_key: str | None
    ) -> tuple[training_pb2.FitStatus, bool]:
        """Store a new fit pinned to the current snapshot; an existing key returns its fit.

        Returns ``(status, created)``. The snapshot is ``max_seq()`` now, and the
        task's automatic-fit counter restarts from its current label count.
        """
        key = idempotency_key or None
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if key is not None:
                    row = self._conn.execute(
                        "SELECT status FROM fits WHERE task_id = ? AND idempotency_key = ?",
                        (status.task_id, key),
                    ).fetchone()
                    if row is not None:
                        self._conn.execute("COMMIT")
                        return training_pb2.FitStatus.FromString(bytes(row[0])), False
                snapshot = self.max_seq()
                count = self._conn.execute(
                    "SELECT COUNT(*) FROM labels WHERE task_id = ?", (status.task_id,)
                ).fetchone()[0]
                now = time.time()
                self._conn.execute(
                    "INSERT INTO fits (fit_id, task_id, idempotency_key, state, snapshot_seq,"
                    " status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        status.fit_id,
                        status.task_id,
                        key,
                        status.state,
                        snapshot,
                        status.SerializeToString(),
                        now,
                        now,
                    ),
                )
                self._conn.execute(
                    "INSERT INTO tasks (task_id, labels_at_last_fit) VALUES (?, ?)"
                    " ON CONFLICT(task_id) DO UPDATE"
                    " SET labels_at_last_fit = excluded.labels_at_last_fit",
                    (status.task_id, int(count)),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return status, True

    def save_fit(self, status: training_pb2.FitStatus) -> None:
        """Persist a fit's latest status."""
        with self._lock:
            self._conn.execute(
                "UPDATE fits SET state = ?, status = ?, updated_at = ? WHERE fit_id = ?",
                (status.state, status.SerializeToString(), time.time(), status.fit_id),
            )

    def get_fit(self, fit_id: str) -> training_pb2.FitStatus | None:
        """A fit's status, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT status FROM fits WHERE fit_id = ?", (fit_id,)
            ).fetchone()
        return None if row is None else training_pb2.FitStatus.FromString(bytes(row[0]))

    def fit_snapshot(self, fit_id: str) -> int:
        """The label snapshot (``seq`` bound) a fit trains on."""
        with self._lock:
            row = self._conn.execute(
                "SELECT snapshot_seq FROM fits WHERE fit_id = ?", (fit_id,)
            ).fetchone()
        if row is None:
            raise KeyError(fit_id)
        return int(row[0])

    def list_fits(
        self,
        task_id: str | None = None,
        *,
        states: tuple[int, ...] | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[training_pb2.FitStatus]:
        """Fits in creation order, optionally of one task and in some states."""
        sql = "SELECT status FROM fits WHERE 1 = 1"
        args: list[object] = []
        if task_id:
            sql += " AND task_id = ?"
            args.append(task_id)
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        sql += " ORDER BY created_at, fit_id LIMIT ? OFFSET ?"
        args += [limit, offset]
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [training_pb2.FitStatus.FromString(bytes(r[0])) for r in rows]
