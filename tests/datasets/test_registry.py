"""The data sets as built-in sources of `act ingest --dataset`."""

from __future__ import annotations

import itertools

import pytest
from act.v1 import common_pb2

from services.cli import datasets, ingest
from services.datasets import FASHION_LABELS
from tests.cli.helpers import invoke


def _items(name: str, n: int, labels: tuple[str, ...], modality: int):
    source = datasets.get_source(name)
    options = ingest.IngestOptions(task_id="t", source=name, labels=list(labels), modality=modality)
    return list(itertools.islice(ingest.parse_records(source.iter_records(), options), n))


def test_registry_lists_all_sources():
    assert {"demo-text", "spam-assassin", "fashion-mnist", "fashion-mnist-test"} <= set(
        datasets.REGISTRY
    )
    for name in ("spam-assassin", "fashion-mnist", "fashion-mnist-test"):
        source = datasets.get_source(name)
        assert isinstance(source, datasets.DatasetSource)
        datasets.ensure_available(source)  # installed here


def test_spam_records_become_text_items_with_reference_labels():
    parsed = _items("spam-assassin", 3, ("ham", "spam"), common_pb2.MODALITY_TEXT)
    assert all(p.error is None for p in parsed)
    item = parsed[0].item
    assert item is not None
    assert item.item_id.startswith("spam-assassin/easy-ham-1/")
    assert item.text.startswith("Subject:")
    assert item.HasField("reference_label") and item.reference_label == 0
    assert item.metadata["group"] == "easy-ham-1"


def test_fashion_records_become_png_items_with_reference_labels():
    source = datasets.get_source("fashion-mnist-test")
    assert source.labels == FASHION_LABELS
    parsed = _items("fashion-mnist-test", 4, FASHION_LABELS, common_pb2.MODALITY_IMAGE)
    assert all(p.error is None for p in parsed)
    item = parsed[0].item
    assert item is not None
    assert item.item_id == "fashion-mnist/test/00000"
    assert item.image_mime_type == "image/png" and len(item.image_bytes) < 2000
    assert item.reference_label == 9  # the first test image is an ankle boot
    assert len(item.image_sha256) == 64
    assert datasets.get_source("fashion-mnist").description.startswith("60,000")


def test_missing_data_is_a_clear_cli_error(monkeypatch: pytest.MonkeyPatch, tmp_path):
    import services.datasets.fashion as fashion

    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path)
    monkeypatch.delenv("ACT_FASHION_MNIST_DIR", raising=False)
    result = invoke(["ingest", "--task", "t", "--no-check-task", "--dataset", "fashion-mnist"])
    assert result.exit_code == 1
    assert "fashion-mnist" in result.output and "deploy/datasets.sh" in result.output
