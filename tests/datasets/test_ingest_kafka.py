"""`act ingest --dataset` of the real data sets through a real Kafka broker."""

from __future__ import annotations

from collections import Counter

import pytest
from act.v1 import item_pb2

from services.datasets import FASHION_LABELS
from services.devkit.kafkaio import unique_prefix
from tests.cli.helpers import ainvoke, kafka_args, make_topics, read_all


@pytest.mark.kafka
@pytest.mark.slow
async def test_ingest_spam_and_fashion_test_split(kafka_bootstrap: str):
    kafka = await make_topics(kafka_bootstrap, unique_prefix())
    args = kafka_args(kafka)
    for task_id, labels, modality in (
        ("spam", "ham,spam", "text"),
        ("fashion", ",".join(FASHION_LABELS), "image"),
    ):
        created = await ainvoke(
            [
                "task",
                "create",
                "--task-id",
                task_id,
                "--labels",
                labels,
                "--modality",
                modality,
                "--budget",
                "0.3",
                "--name",
                task_id,
                "--rule",
                "threshold",
                *args,
            ]
        )
        assert created.exit_code == 0, created.output
    spam = await ainvoke(
        ["ingest", "--task", "spam", "--dataset", "spam-assassin", "--batch-id", "b1", "-q", *args]
    )
    assert spam.exit_code == 0, spam.output
    assert "ingested 6046 items" in spam.stdout
    fashion = await ainvoke(
        ["ingest", "--task", "fashion", "--dataset", "fashion-mnist-test", "-q", *args]
    )
    assert fashion.exit_code == 0, fashion.output
    assert "ingested 10000 items" in fashion.stdout

    items = [item_pb2.Item.FromString(v) for _, v, _ in await read_all(kafka, "items")]
    by_task = Counter(item.task_id for item in items)
    assert by_task == {"spam": 6046, "fashion": 10000}
    spam_items = [i for i in items if i.task_id == "spam"]
    assert Counter(i.reference_label for i in spam_items) == {0: 4150, 1: 1896}
    assert all(i.batch.batch_size == 6046 for i in spam_items)
    fashion_items = [i for i in items if i.task_id == "fashion"]
    assert Counter(i.reference_label for i in fashion_items) == {c: 1000 for c in range(10)}
    assert all(i.image_mime_type == "image/png" for i in fashion_items)
