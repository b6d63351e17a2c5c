"""The topic specification."""

from pathlib import Path

import pytest

from services.runtime.topics import TopicSpecError, default_catalog, load_catalog

REPO = Path(__file__).resolve().parents[2]


def test_default_catalog_is_the_file_in_protos():
    catalog = default_catalog()
    from_file = load_catalog(REPO / "protos" / "act" / "v1" / "topics.yaml")
    assert catalog == from_file
    ids = {t.id for t in catalog}
    assert {"items", "annotations", "critiques", "review_requests", "labels", "dlq"} <= ids


def test_names_are_versioned_and_prefixed():
    catalog = default_catalog()
    assert catalog.name("items") == "act.items.v1"
    assert catalog.name("items", "t123.") == "t123.act.items.v1"
    with pytest.raises(TopicSpecError):
        catalog.get("nope")


def test_malformed_spec_is_rejected(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text(
        "topics:\n  - id: a\n    name: x\n    version: 1\n    partitions: 0\n"
        "    message: act.v1.Item\n    key: item_id\n"
    )
    with pytest.raises(TopicSpecError):
        load_catalog(bad)
    dup = tmp_path / "d.yaml"
    entry = "  - {id: a, name: x, version: 1, partitions: 1, message: m, key: k}\n"
    dup.write_text("topics:\n" + entry + entry)
    with pytest.raises(TopicSpecError):
        load_catalog(dup)
