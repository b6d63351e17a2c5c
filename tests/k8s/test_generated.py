"""The KafkaTopic and KafkaUser manifests equal the topic specification."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.k8sgen import kafka, pipeline, render
from services.runtime.topics import default_catalog, load_catalog
from tests.k8s.conftest import find

SPEC_FILE = Path(kafka.REPO) / "protos" / "act" / "v1" / "topics.yaml"


def test_committed_files_are_what_the_generator_writes():
    """CI fails when k8s/base/kafka/{topics,users}.yaml drift from the specification."""
    stale = kafka.stale_files()
    assert not stale, f"run `python -m services.k8sgen generate`: stale {stale}"


def test_generator_follows_the_specification(tmp_path):
    """Change the specification and the generated resources change with it."""
    raw = yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))
    raw["topics"][1]["partitions"] = 24
    raw["topics"].append(
        {"id": "extra", "name": "act.extra", "version": 2, "partitions": 5,
         "message": "act.v1.Item", "key": "item_id", "config": {"retention.ms": "1000"}}
    )  # fmt: skip
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    topics = {t["metadata"]["name"]: t["spec"] for t in kafka.kafka_topics(load_catalog(path))}
    assert topics["act.items.v1"]["partitions"] == 24
    assert topics["act.extra.v2"] == {
        "topicName": "act.extra.v2",
        "partitions": 5,
        "replicas": 3,
        "config": {"min.insync.replicas": "2", "retention.ms": "1000"},
    }
    assert kafka.stale_files(load_catalog(path)) == [kafka.TOPICS_FILE]


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_rendered_topics_equal_the_specification(overlays, overlay):
    single_node = overlay == "dev"
    rendered = {t["metadata"]["name"]: t for t in find(overlays[overlay], "KafkaTopic")}
    catalog = default_catalog()
    assert set(rendered) == {spec.full_name() for spec in catalog}
    for spec in catalog:
        topic = rendered[spec.full_name()]
        assert topic["apiVersion"] == "kafka.strimzi.io/v1"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == pipeline.KAFKA_CLUSTER
        assert topic["spec"]["topicName"] == spec.full_name()
        assert topic["spec"]["partitions"] == spec.partitions
        replicas = 1 if single_node else spec.replication
        min_isr = 1 if single_node else spec.min_insync_replicas
        assert topic["spec"]["replicas"] == replicas
        assert topic["spec"]["config"] == {**spec.config, "min.insync.replicas": str(min_isr)}
        assert topic["metadata"]["annotations"]["act-stream.io/message"] == spec.message


def _allowed(user, resource_type, name, operation):
    for acl in user["spec"]["authorization"]["acls"]:
        res = acl["resource"]
        if res["type"] != resource_type or operation not in acl["operations"]:
            continue
        if resource_type == "cluster":
            return True
        pattern = res.get("patternType", "literal")
        if (pattern == "literal" and res["name"] == name) or (
            pattern == "prefix" and name.startswith(res["name"])
        ):
            return True
    return False


def test_kafka_users_allow_exactly_the_data_flow(overlays):
    users = {u["metadata"]["name"]: u for u in find(overlays["production"], "KafkaUser")}
    catalog = default_catalog()
    for stage in pipeline.STAGES:
        user = users[stage.group]
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        inp = catalog.name(stage.input)
        assert _allowed(user, "topic", inp, "Read")
        assert _allowed(user, "group", stage.group, "Read")
        assert _allowed(user, "transactionalId", f"{stage.group}.{inp}.0", "Write")
        for out in (*stage.outputs, "dlq", "stage_heartbeats"):
            assert _allowed(user, "topic", catalog.name(out), "Write")
        assert _allowed(user, "topic", catalog.name("tasks"), "Read")
        # ...and nothing else: no stage writes its own input or reads what it does not use.
        assert not _allowed(user, "topic", inp, "Write")
        for spec in catalog:
            if spec.id not in (stage.input, *stage.reads):
                assert not _allowed(user, "topic", spec.full_name(), "Read"), (stage.name, spec.id)
            if spec.id not in (*stage.outputs, "dlq", "stage_heartbeats"):
                assert not _allowed(user, "topic", spec.full_name(), "Write"), (stage.name, spec.id)
        other = next(s for s in pipeline.STAGES if s is not stage)
        assert not _allowed(user, "group", other.group, "Read")
        assert not _allowed(user, "transactionalId", f"{other.group}.x", "Write")
    keda = users["act-keda"]
    assert _allowed(keda, "group", "act-criticizer", "Describe")
    assert _allowed(keda, "topic", "act.annotations.v1", "Describe")
    assert not any(
        _allowed(keda, "topic", spec.full_name(), op)
        for spec in catalog
        for op in ("Read", "Write")
    )
