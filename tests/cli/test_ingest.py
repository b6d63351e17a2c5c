"""Ingest: JSONL parsing (pure) and the real CLI against a real broker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from act.v1 import common_pb2, item_pb2

from services.cli import datasets, ingest
from services.devkit.kafkaio import topic, unique_prefix
from services.runtime.topics import default_catalog
from tests.cli.helpers import ainvoke, invoke, kafka_args, make_topics, read_all, run_module

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SECRET = "zebra-confidential-phrase"


def opts(**kwargs: Any) -> ingest.IngestOptions:
    base: dict[str, Any] = {
        "task_id": "task-1",
        "labels": ["ham", "spam"],
        "modality": common_pb2.MODALITY_TEXT,
    }
    base.update(kwargs)
    return ingest.IngestOptions(**base)


def parse(lines: list[str], **kwargs: Any) -> list[ingest.Parsed]:
    return list(ingest.parse_lines(lines, opts(**kwargs)))


def one_item(record: dict[str, Any], **kwargs: Any) -> item_pb2.Item:
    [outcome] = parse([json.dumps(record)], **kwargs)
    assert outcome.error is None, outcome.error
    assert outcome.item is not None
    return outcome.item


def one_error(record: dict[str, Any] | str, **kwargs: Any) -> str:
    line = record if isinstance(record, str) else json.dumps(record)
    [outcome] = parse([line], **kwargs)
    assert outcome.item is None
    assert outcome.error
    return outcome.error


# ---------------------------------------------------------------- pure parsing


def test_a_full_text_record():
    item = one_item(
        {
            "text": "hello",
            "label": "spam",
            "metadata": {"lang": "en", "n": 3, "ok": True},
            "id": "i-1",
        },
        source="f.jsonl",
        batch_id="b1",
        batch_size=7,
    )
    assert item.item_id == "i-1"
    assert item.task_id == "task-1"
    assert item.text == "hello"
    assert item.HasField("reference_label") and item.reference_label == 1
    assert dict(item.metadata) == {"lang": "en", "n": "3", "ok": "true"}
    assert (item.batch.batch_id, item.batch.batch_size) == ("b1", 7)
    assert item.source == "f.jsonl"
    assert item.HasField("created_at")


def test_no_label_means_no_reference_label_and_no_batch():
    item = one_item({"text": "hello"})
    assert not item.HasField("reference_label")
    assert not item.HasField("batch")


@pytest.mark.parametrize(
    ("label", "expected"), [("ham", 0), ("SPAM", 1), (" spam ", 1), (0, 0), (1, 1), ("1", 1)]
)
def test_labels_by_name_or_index(label, expected):
    assert one_item({"text": "x", "label": label}).reference_label == expected


@pytest.mark.parametrize(
    ("label", "fragment"),
    [
        ("eggs", "unknown label 'eggs'; task labels: ham, spam"),
        (2, "out of range"),
        (-1, "out of range"),
        (True, "label"),
        ([0], "label"),
    ],
)
def test_bad_labels(label, fragment):
    assert fragment in one_error({"text": "x", "label": label})


def test_without_the_task_only_integer_labels_work():
    assert one_item({"text": "x", "label": 5}, labels=None, modality=None).reference_label == 5
    assert "integer labels only" in one_error(
        {"text": "x", "label": "spam"}, labels=None, modality=None
    )


def test_line_numbers_blank_lines_and_bad_lines():
    lines = [
        '{"text": "one"}\n',
        "\n",
        "   \n",
        "{not json\n",
        '["a", "list"]\n',
        '{"metadata": {"a": "b"}}\n',
        '{"text": "five", "colour": "red"}\n',
        '{"text": 5}\n',
        '{"text": "ok", "metadata": {"nested": {"x": 1}}}\n',
        '{"text": "last"}',
    ]
    outcomes = parse(lines)
    assert [(o.lineno, o.item is not None) for o in outcomes] == [
        (1, True),
        (4, False),
        (5, False),
        (6, False),
        (7, False),
        (8, False),
        (9, False),
        (10, True),
    ]
    errors = {o.lineno: o.error for o in outcomes if o.error}
    assert errors[4].startswith("invalid JSON")
    assert "expected a JSON object, got list" in errors[5]
    assert "no content" in errors[6]
    assert "unknown field(s): 'colour'" in errors[7]
    assert "'text' must be a string" in errors[8]
    assert "metadata value of 'nested'" in errors[9]


def test_errors_never_quote_the_content():
    records: list[dict[str, Any] | str] = [
        {"text": SECRET, "label": "nope"},
        {"text": SECRET, "metadata": {"k": [SECRET]}},
        {"text": SECRET, "image_b64": SECRET + "!"},
        {"text": SECRET, "id": ["not", "a", "string"]},
        '{"text": "' + SECRET + '", broken',
    ]
    for record in records:
        assert SECRET not in one_error(record)


def test_stable_ids_depend_on_task_and_line_only():
    line = '{"text": "same text", "label": "ham"}'
    first = one_item(json.loads(line))  # re-serialized: same JSON text
    again = parse([line + "\n"])[0].item
    assert again is not None
    assert again.item_id == ingest.stable_item_id("task-1", line)
    assert again.item_id == hashlib.sha256(f"task-1\n{line}".encode()).hexdigest()[:32]
    assert parse(["  " + line + "  \r\n"])[0].item.item_id == again.item_id  # type: ignore[union-attr]
    other_task = parse([line], task_id="task-2")[0].item
    assert other_task is not None and other_task.item_id != again.item_id
    assert first.item_id == ingest.stable_item_id("task-1", json.dumps(json.loads(line)))
    assert len(again.item_id) == 32 and int(again.item_id, 16) >= 0


def test_duplicate_ids_are_bad_lines():
    outcomes = parse(
        ['{"text": "a"}', '{"text": "b", "id": "x"}', '{"text": "a"}', '{"text": "c", "id": "x"}']
    )
    assert [o.item is not None for o in outcomes] == [True, True, False, False]
    assert "first on line 1" in (outcomes[2].error or "")
    assert "'x' (first on line 2)" in (outcomes[3].error or "")


def test_invalid_utf8_and_bom():
    outcomes = list(
        ingest.parse_lines([b"\xef\xbb\xbf" + b'{"text": "bom"}\n', b'{"text": "\xff"}\n'], opts())
    )
    assert outcomes[0].item is not None and outcomes[0].item.text == "bom"
    assert outcomes[1].error == "line is not valid UTF-8"


def test_inline_images_from_base64_and_path(tmp_path: Path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(PNG)
    image_opts = {"modality": common_pb2.MODALITY_IMAGE, "base_dir": tmp_path}
    from_b64 = one_item({"image_b64": base64.b64encode(PNG).decode()}, **image_opts)
    from_path = one_item({"image_path": "imgs/a.png", "text": "caption"}, **image_opts)
    for item in (from_b64, from_path):
        assert item.WhichOneof("image") == "image_bytes"
        assert item.image_bytes == PNG
        assert item.image_mime_type == "image/png"
        assert item.image_sha256 == hashlib.sha256(PNG).hexdigest()
    assert from_path.text == "caption"
    by_uri = one_item({"image_uri": "s3://bucket/x.jpg"}, **image_opts)
    assert by_uri.image_uri == "s3://bucket/x.jpg" and by_uri.image_mime_type == "image/jpeg"


def test_image_problems(tmp_path: Path):
    image_opts: dict[str, Any] = {"modality": common_pb2.MODALITY_IMAGE, "base_dir": tmp_path}
    assert "cannot read image_path" in one_error({"image_path": "missing.png"}, **image_opts)
    assert "not valid base64" in one_error({"image_b64": "***"}, **image_opts)
    assert "give one image field" in one_error(
        {"image_b64": "AA==", "image_uri": "s3://x"}, **image_opts
    )
    big = base64.b64encode(PNG * 10).decode()
    assert "exceeds the inline limit of 100 bytes" in one_error(
        {"image_b64": big}, max_inline_bytes=100, **image_opts
    )
    assert "needs an image" in one_error({"text": "only text"}, **image_opts)


def test_modality_checks():
    assert "modality is text" in one_error({"image_uri": "s3://x"})
    vqa = {"modality": common_pb2.MODALITY_VQA, "labels": ["no", "yes"]}
    assert "no 'question'" in one_error({"image_uri": "s3://x"}, **vqa)
    item = one_item({"image_uri": "s3://x", "question": "Is it red?", "label": "yes"}, **vqa)
    assert item.question == "Is it red?" and item.reference_label == 1


async def test_publish_items_counts_sent_bad_and_failed():
    loop = asyncio.get_running_loop()
    sent: list[tuple[bytes, bytes]] = []

    async def send(key: bytes, value: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        item = item_pb2.Item.FromString(value)
        if item.text == "reject":
            future.set_exception(RuntimeError("broker said no"))
        else:
            sent.append((key, value))
            future.set_result(None)
        return future

    bad: list[int] = []
    progress: list[int] = []
    parsed = ingest.parse_lines(
        ['{"text": "a"}', "oops", '{"text": "reject", "id": "r"}', '{"text": "b"}'], opts()
    )
    summary = await ingest.publish_items(
        parsed,
        send,
        summary=ingest.IngestSummary(topic="t"),
        on_bad=lambda n, _e: bad.append(n),
        on_sent=progress.append,
        max_pending=2,
    )
    assert summary.sent == 2 and sum(progress) == 2
    assert [n for n, _ in summary.bad] == [2] and bad == [2]
    assert summary.failed == [("r", "RuntimeError: broker said no")]
    assert not summary.ok
    assert [item_pb2.Item.FromString(v).item_id.encode() for _, v in sent] == [k for k, _ in sent]
    assert "skipped 1 bad lines" in summary.describe() and "1 items failed" in summary.describe()


# ---------------------------------------------------------------- data sets


def test_demo_dataset_is_registered_and_valid():
    source = datasets.get_source("demo-text")
    assert isinstance(source, datasets.DatasetSource)
    records = list(source.iter_records())
    assert len(records) == 10
    assert records == list(source.iter_records())  # re-iterable, same order
    outcomes = list(ingest.parse_records(records, opts(labels=list(source.labels))))
    assert all(o.item is not None for o in outcomes), [o.error for o in outcomes]
    labels = Counter(o.item.reference_label for o in outcomes if o.item)
    assert labels == {0: 5, 1: 5}
    assert len({o.item.item_id for o in outcomes if o.item}) == 10


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(datasets.UnknownDatasetError) as info:
        datasets.get_source("mnist-typo")
    assert "unknown dataset 'mnist-typo'" in str(info.value) and "demo-text" in str(info.value)


def test_records_without_ids_get_stable_ids():
    records = [
        {"text": "a", "metadata": {"x": "1", "y": "2"}},
        {"metadata": {"y": "2", "x": "1"}, "text": "a"},
    ]
    outcomes = list(ingest.parse_records(records, opts()))
    # key order does not matter: the second record is a duplicate of the first
    assert outcomes[0].item is not None and outcomes[1].error and "duplicate" in outcomes[1].error


# ---------------------------------------------------------------- CLI usage errors (no broker)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["ingest", "--task", "t"], "exactly one of FILE"),
        (["ingest", "--task", "t", "x.jsonl", "--dataset", "demo-text"], "exactly one of FILE"),
        (["ingest", "--task", "t", "--dataset", "nope"], "known datasets: demo-text"),
        (["ingest", "--task", "t", "-", "--batch-id", "b"], "--batch-size is required"),
        (["ingest", "--task", "t", "/definitely/missing.jsonl"], "no such file"),
    ],
)
def test_cli_usage_errors_exit_2(args, fragment):
    result = invoke([*args, "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr


# ---------------------------------------------------------------- real broker


def _write_jsonl(path: Path) -> list[str]:
    lines = [
        json.dumps({"text": f"{SECRET} number one", "label": "spam", "metadata": {"src": "unit"}}),
        json.dumps({"text": "second message", "label": "ham", "id": "custom-2"}),
        "{this is not json",
        json.dumps({"text": "third", "label": 1}),
        "",
        json.dumps({"metadata": {"no": "content"}}),
        json.dumps({"text": "fourth", "label": "HAM"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.mark.kafka
async def test_create_task_and_ingest_a_file_with_the_real_cli(
    kafka_bootstrap: str, tmp_path: Path
):
    kafka = await make_topics(kafka_bootstrap, unique_prefix())
    args = kafka_args(kafka)

    created = await ainvoke(
        [
            "task",
            "create",
            "--name",
            "spam demo",
            "--labels",
            "ham,spam",
            "--modality",
            "text",
            "--budget",
            "0.2",
            "--rule",
            "threshold",
            *args,
        ]
    )
    assert created.exit_code == 0, created.output
    task_id = created.stdout.strip()
    assert len(task_id) == 32

    got = await ainvoke(["task", "get", task_id, *args])
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["labels"][1]["name"] == "spam"

    path = tmp_path / "items.jsonl"
    lines = _write_jsonl(path)
    result = await ainvoke(
        [
            "--log-level",
            "INFO",
            "ingest",
            "--task",
            task_id,
            str(path),
            "--batch-id",
            "batch-1",
            *args,
        ]
    )
    assert result.exit_code == 1, result.output  # bad lines make it fail at the end
    assert "line 3: invalid JSON" in result.stderr
    assert "line 6: no content" in result.stderr
    assert f"ingested 4 items into {topic(kafka, 'items')}; skipped 2 bad lines" in result.stdout
    assert SECRET not in result.output  # neither logs nor messages carry item text
    assert '"event": "ingest_finished"' in result.stderr  # the structured log was written

    records = await read_all(kafka, "items")
    items = {
        item_pb2.Item.FromString(v).item_id: (k, item_pb2.Item.FromString(v), p)
        for k, v, p in records
    }
    assert len(records) == 4 and len(items) == 4
    for item_id, (key, item, _) in items.items():
        assert key == item_id.encode()
        assert item.task_id == task_id
        assert item.batch.batch_id == "batch-1" and item.batch.batch_size == 4  # valid records
        assert item.source == "items.jsonl"
    first_id = ingest.stable_item_id(task_id, lines[0])
    assert items[first_id][1].text.startswith(SECRET)
    assert items[first_id][1].reference_label == 1
    assert dict(items[first_id][1].metadata) == {"src": "unit"}
    assert items["custom-2"][1].reference_label == 0
    by_text = {item.text: item for _, item, _ in items.values()}
    assert by_text["third"].reference_label == 1 and by_text["fourth"].reference_label == 0
    assert {p for _, _, p in records} <= {0, 1}

    # Re-ingesting the same file yields the same ids.
    again = await ainvoke(["ingest", "--task", task_id, str(path), "--quiet", *args])
    assert again.exit_code == 1
    records = await read_all(kafka, "items")
    ids = Counter(item_pb2.Item.FromString(v).item_id for _, v, _ in records)
    assert len(records) == 8 and set(ids) == set(items) and set(ids.values()) == {2}


@pytest.mark.kafka
async def test_ingest_dataset_stdin_and_unknown_task(kafka_bootstrap: str):
    kafka = await make_topics(kafka_bootstrap, unique_prefix())
    args = kafka_args(kafka)
    created = await ainvoke(
        [
            "task",
            "create",
            "--task-id",
            "demo-task",
            "--name",
            "demo",
            "--labels",
            "ham,spam",
            "--modality",
            "text",
            "--budget",
            "0.3",
            "--rule",
            "exponential",
            *args,
        ]
    )
    assert created.exit_code == 0, created.output
    # Creating the identical task again is idempotent; a different one is refused.
    same = await ainvoke(
        [
            "task",
            "create",
            "--task-id",
            "demo-task",
            "--name",
            "demo",
            "--labels",
            "ham,spam",
            "--modality",
            "text",
            "--budget",
            "0.3",
            "--rule",
            "exponential",
            *args,
        ]
    )
    assert same.exit_code == 0 and same.stdout.strip() == "demo-task"
    clash = await ainvoke(
        [
            "task",
            "create",
            "--task-id",
            "demo-task",
            "--name",
            "demo",
            "--labels",
            "ham,spam",
            "--modality",
            "text",
            "--budget",
            "0.5",
            "--rule",
            "exponential",
            *args,
        ]
    )
    assert clash.exit_code == 2 and "already exists" in clash.stderr

    unknown = await ainvoke(["ingest", "--task", "no-such-task", "--dataset", "demo-text", *args])
    assert unknown.exit_code == 2 and "unknown task 'no-such-task'" in unknown.stderr

    result = await ainvoke(
        ["ingest", "--task", "demo-task", "--dataset", "demo-text", "--batch-id", "demo", *args]
    )
    assert result.exit_code == 0, result.output
    assert "ingested 10 items" in result.stdout

    # stdin through a real process (`-`), the way a pipeline would feed it.
    proc = await asyncio.to_thread(
        run_module,
        ["services.cli", "ingest", "--task", "demo-task", "-", "--source", "pipe", *args],
        b'{"text": "from stdin", "label": "spam", "id": "s1"}\n{"text": "another", "id": "s2"}\n',
    )
    assert proc.returncode == 0, proc.stderr.decode()

    items = [item_pb2.Item.FromString(v) for _, v, _ in await read_all(kafka, "items")]
    assert len(items) == 12
    demo = [i for i in items if i.source == "demo-text"]
    assert len(demo) == 10 and all(
        i.batch.batch_size == 10 and i.batch.batch_id == "demo" for i in demo
    )
    assert sorted(i.item_id for i in demo) == [f"demo-{n:02d}" for n in range(1, 11)]
    piped = {i.item_id: i for i in items if i.source == "pipe"}
    assert piped["s1"].reference_label == 1 and not piped["s2"].HasField("reference_label")
    assert not piped["s1"].HasField("batch")

    listed = await ainvoke(["task", "list", *args])
    assert [json.loads(line)["task_id"] for line in listed.stdout.splitlines()] == ["demo-task"]


@pytest.mark.kafka
async def test_topics_ensure_as_the_local_stack_calls_it(kafka_bootstrap: str):
    prefix = unique_prefix()
    cmd = [
        "services.cli.main",
        "topics",
        "ensure",
        "--bootstrap",
        kafka_bootstrap,
        "--replication",
        "1",
        "--topic-prefix",
        prefix,
    ]
    first = await asyncio.to_thread(run_module, cmd)
    assert first.returncode == 0, first.stderr.decode()
    out = first.stdout.decode()
    assert f"created   {prefix}act.items.v1" in out
    # Every topic of the specification, once.
    expected = len(list(default_catalog()))
    assert out.count("created") == expected
    second = await asyncio.to_thread(run_module, cmd)
    assert second.returncode == 0
    assert second.stdout.decode().count("existing") == expected


def test_topics_list_needs_no_broker():
    proc = run_module(["services.cli", "topics", "list", "--topic-prefix", "x.", "--json"])
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert by_id["items"]["name"] == "x.act.items.v1"
    assert by_id["tasks"]["message"] == "act.v1.Task" and by_id["tasks"]["partitions"] == 1
