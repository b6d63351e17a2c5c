"""``act status`` output: tables of the offset report and of a ``GetStatus`` answer.

The report itself (records, committed offsets and lag per stage) is computed
by :mod:`services.pipeline_status.stages`, shared with the
PipelineStatusService; its names are re-exported here for the command and its
tests. Record counts are estimates: ``end offset - beginning offset`` summed
over partitions, which also counts transaction markers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from act.v1 import api_pb2, training_pb2

from services.pipeline_status.stages import (
    STAGE_INPUTS,
    PartitionReport,
    StageReport,
    StatusReport,
    TopicReport,
    build_stage_report,
    collect_status,
    describe_groups,
    partition_lag,
    stage_group,
)

__all__ = [
    "STAGE_INPUTS",
    "PartitionReport",
    "StageReport",
    "StatusReport",
    "TopicReport",
    "build_stage_report",
    "collect_status",
    "describe_groups",
    "format_table",
    "partition_lag",
    "render_proto",
    "render_table",
    "stage_group",
]


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned plain-text columns."""
    return "\n".join(_table(headers, rows))


def render_table(report: StatusReport, *, partitions: bool = False) -> str:
    """A plain-text view of the report."""
    lines = [f"observed at {report.observed_at.isoformat()}"]
    lines.append("")
    lines += _table(
        ["TOPIC", "PARTITIONS", "RECORDS~"],
        [
            (t.topic, t.partitions if t.exists else "-", t.records if t.exists else "missing")
            for t in report.topics
        ],
    )
    lines.append("")
    lines += _table(
        ["STAGE", "GROUP", "TOPIC", "RECORDS~", "LAG", "MEMBERS", "STATE"],
        [
            (
                s.stage,
                s.consumer_group,
                s.topic,
                s.records if s.exists else "missing",
                s.lag if s.exists else "-",
                "?" if s.members is None else s.members,
                s.state or "?",
            )
            for s in report.stages
        ],
    )
    if partitions:
        for s in report.stages:
            if not s.partitions:
                continue
            lines.append("")
            lines.append(f"{s.stage} ({s.consumer_group} on {s.topic})")
            lines += _table(
                ["PARTITION", "BEGIN", "END", "COMMITTED", "LAG"],
                [
                    (
                        p.partition,
                        p.begin_offset,
                        p.end_offset,
                        p.committed_offset if p.committed_offset >= 0 else "-",
                        p.lag,
                    )
                    for p in s.partitions
                ],
            )
    lines.append("")
    lines.append("RECORDS~ = end - beginning offsets (transaction markers count).")
    return "\n".join(lines)


def _reasons(counts: Mapping[str, int]) -> str:
    return ",".join(f"{reason}={n}" for reason, n in sorted(counts.items())) or "-"


def _fit(task: api_pb2.TaskProgress) -> str:
    if not task.HasField("latest_fit"):
        return "-"
    fit = task.latest_fit
    state = training_pb2.FitState.Name(fit.state).removeprefix("FIT_STATE_").lower()
    return f"{fit.fit_id} {state}"


def render_proto(status: api_pb2.PipelineStatus, *, partitions: bool = False) -> str:
    """A plain-text view of a ``GetStatus`` answer: the stage table (as
    :func:`render_table`, with dead letters by reason) and the per-task table."""
    lines = [f"observed at {status.observed_at.ToDatetime().isoformat()}Z", ""]
    lines += _table(
        [
            "STAGE",
            "GROUP",
            "TOPIC",
            "RECORDS~",
            "LAG",
            "MEMBERS",
            "COMMITTED~",
            "REPLICAS",
            "IN FLIGHT",
            "RETRIES",
            "DEAD LETTERS",
        ],
        [
            (
                s.stage,
                s.consumer_group,
                s.topic,
                s.records,
                s.lag,
                s.members,
                s.committed_records,
                s.live_replicas,
                s.in_flight,
                s.retries,
                _reasons(s.dead_letters),
            )
            for s in status.stages
        ],
    )
    if partitions:
        for s in status.stages:
            if not s.partitions:
                continue
            lines += ["", f"{s.stage} ({s.consumer_group} on {s.topic})"]
            lines += _table(
                ["PARTITION", "END", "COMMITTED", "LAG"],
                [
                    (
                        p.partition,
                        p.end_offset,
                        p.committed_offset if p.committed_offset >= 0 else "-",
                        p.lag,
                    )
                    for p in s.partitions
                ],
            )
    lines.append("")
    lines += _table(
        [
            "TASK",
            "INGESTED",
            "ANNOTATED",
            "CRITIQUED",
            "TO REVIEW",
            "MACHINE",
            "REVIEWED",
            "FINAL",
            "BUDGET",
            "QUEUE",
            "DLQ",
            "LATEST FIT",
        ],
        [
            (
                t.task_id,
                t.ingested,
                t.annotated,
                t.critiqued,
                t.sampled_for_review,
                t.machine_final,
                t.reviewed,
                t.finalized,
                f"{t.budget_spent}/{t.budget}" if t.task_known else f"{t.budget_spent}/?",
                t.review_queue_depth if t.HasField("review_queue_depth") else "?",
                t.dead_letters,
                _fit(t),
            )
            for t in status.tasks
        ],
    )
    lines.append("")
    lines.append("RECORDS~, COMMITTED~ = offset differences (transaction markers count).")
    lines.append("BUDGET = reviews spent / floor(budget fraction * ingested), capped.")
    if not status.review_queue_known:
        lines.append("QUEUE ? = the server reads no review database.")
    if not status.tasks_caught_up:
        lines.append("note: the task counters had not caught up with the topics in time.")
    return "\n".join(lines)
