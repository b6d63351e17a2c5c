"""The ingest service's manifests: probes, autoscaling on CPU, producers in, Kafka out."""

from __future__ import annotations

import pytest

from services.k8sgen import netpol, pipeline, render
from services.k8sgen.netpol import Endpoint, Network
from services.pipeline_status import progress
from tests.k8s.conftest import find, one, pod_spec
from tests.k8s.test_network_policies import BROKERS, OUTSIDE

PRODUCER = Endpoint("ingest-tool", "10.244.9.10", "act", {"act-stream.io/ingest-client": "true"})


def network(objects) -> Network:
    policies = [
        *(o for o in objects if o["kind"] == "NetworkPolicy"),
        *netpol.strimzi_policies(objects),
    ]
    pods = [*netpol.pod_endpoints(objects), *netpol.strimzi_pods(objects)]
    return Network(policies, [*pods, *OUTSIDE, PRODUCER])


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_ingest_deployment(overlays, overlay):
    objects = overlays[overlay]
    spec = pod_spec(one(objects, "Deployment", "ingest"))
    (worker,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["grpc"]["port"] == ports["grpc"], probe
    config = one(objects, "ConfigMap", "ingest-config")["data"]
    assert int(config["ACT_INGEST_GRPC_PORT"]) == ports["grpc"]
    assert int(config["ACT_INGEST_METRICS_PORT"]) == ports["metrics"]
    # The service's own Kafka user (pipeline.EXTRA_PRINCIPALS): the writes of
    # producers of work, and the reads of GetStatus's read model.
    user = next(p for p in pipeline.principals() if p.user == "act-ingest-service")
    assert config["ACT_KAFKA_SASL_USERNAME"] == user.user
    assert {"items", "tasks"} <= set(user.produces) and "tasks" in user.reads
    assert set(progress.MESSAGES) <= set(user.reads) and user.describe_prefixes
    assert one(objects, "KafkaUser", "act-ingest-service")
    service = one(objects, "Service", "ingest")
    assert service["spec"]["ports"][0]["port"] == ports["grpc"]


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_ingest_scales_on_cpu(overlays, overlay):
    (hpa,) = find(overlays[overlay], "HorizontalPodAutoscaler", "ingest")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ingest"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "replicas" not in one(overlays[overlay], "Deployment", "ingest")["spec"]


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_ingest_network_paths(overlays, overlay):
    net = network(overlays[overlay])
    database = "postgres" if overlay == "dev" else "managed-postgres"
    allowed = [
        ("ingest-tool", "ingest", "grpc"),
        ("ingest", BROKERS, 9093),
        ("ingest", database, 5432),
        ("ingest", "kube-dns", 53, "UDP"),
        ("prometheus", "ingest", "metrics"),
    ]
    assert [p for p in allowed if not net.allows(*p)] == []
    forbidden = [
        ("debug", "ingest", "grpc"),
        ("stranger", "ingest", "grpc"),
        ("review-tool", "ingest", "grpc"),
        ("ingress-controller", "ingest", "grpc"),
        ("annotator", "ingest", "grpc"),
        ("ingest", "hosted-llm-api", 443),
        ("ingest", "review-gateway", "grpc"),
        ("ingest-tool", BROKERS, 9093),
    ]
    assert [p for p in forbidden if net.allows(*p)] == []
