"""Every overlay renders, and every rendered object is valid against its schema offline."""

from __future__ import annotations

import copy

import pytest

from services.k8sgen import render, schemas
from services.k8sgen.render import K8S
from services.review_gateway.settings import GatewaySettings
from tests.k8s.conftest import find, one

EXPECTED_KINDS = {
    "Namespace", "ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service",
    "PodDisruptionBudget", "NetworkPolicy", "PersistentVolumeClaim", "Ingress",
    "ScaledObject", "TriggerAuthentication", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser",
}  # fmt: skip


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_overlay_is_valid(overlays, overlay):
    objects = overlays[overlay]
    problems = schemas.validate(objects)
    assert not problems, "\n".join(map(str, problems))
    kinds = {o["kind"] for o in objects}
    assert kinds >= EXPECTED_KINDS, EXPECTED_KINDS - kinds


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_everything_in_the_namespace_and_labelled(overlays, overlay):
    for obj in overlays[overlay]:
        meta = obj["metadata"]
        if obj["kind"] == "Namespace":
            assert meta["name"] == "act"
            continue
        assert meta.get("namespace") == "act", f"{obj['kind']}/{meta['name']}"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "act-stream"


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_names_are_unique(overlays, overlay):
    keys = [(o["kind"], o["metadata"]["name"]) for o in overlays[overlay]]
    assert len(keys) == len(set(keys))


def test_vllm_queue_scaling_component_renders_and_validates(render_dir):
    objects = render_dir(
        """
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {k8s}/overlays/production
components:
  - {k8s}/components/criticizer-vllm-queue-scaling
"""
    )
    assert not schemas.validate(objects)
    trigger = one(objects, "ScaledObject", "criticizer")["spec"]["triggers"]
    assert [t["type"] for t in trigger] == ["prometheus"]
    assert "vllm:num_requests_waiting" in trigger[0]["metadata"]["query"]
    # The annotator still scales on lag.
    assert one(objects, "ScaledObject", "annotator")["spec"]["triggers"][0]["type"] == "kafka"


def test_review_gateway_grpc_tls_component_renders_and_validates(render_dir):
    objects = render_dir(
        """
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {k8s}/overlays/production
components:
  - {k8s}/components/review-gateway-grpc-tls
"""
    )
    assert not schemas.validate(objects)
    config = one(objects, "ConfigMap", "review-gateway-config")["data"]
    fields = set(GatewaySettings.model_fields)
    for key in config:
        if key.startswith("ACT_GATEWAY_"):
            assert key.removeprefix("ACT_GATEWAY_").lower() in fields, key
    pod = one(objects, "Deployment", "review-gateway")["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "grpc-tls"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "grpc-tls"]
    assert volume["secret"]["secretName"] == "review-gateway-grpc-tls" and mount["readOnly"]
    for key in ("ACT_GATEWAY_GRPC_TLS_CERT_FILE", "ACT_GATEWAY_GRPC_TLS_KEY_FILE"):
        assert config[key].startswith(mount["mountPath"] + "/"), key
    assert config["ACT_CLIENT_TLS_CA_FILE"].startswith(mount["mountPath"] + "/")
    # Kubelet's gRPC probes speak plaintext only: the TLS probes are the project's client.
    container = pod["containers"][0]
    for probe in ("startupProbe", "readinessProbe"):
        assert "grpc" not in container[probe], probe
        assert container[probe]["exec"]["command"] == ["act-service", "healthcheck", "50051"]
    ingress = one(objects, "Ingress", "review-gateway")["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    ports = {p["name"]: p for p in one(objects, "Service", "review-gateway")["spec"]["ports"]}
    assert "appProtocol" not in ports["grpc"]


def test_the_validator_rejects_what_the_api_server_would(overlays):
    """The offline validation is strict: typos, wrong types and unknown kinds fail."""
    objects = overlays["production"]
    deployment = copy.deepcopy(one(objects, "Deployment", "criticizer"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grcp"] = {}
    kafka = copy.deepcopy(one(objects, "Kafka", "act"))
    kafka["spec"]["kafka"]["listeners"][0]["port"] = "9093"
    topic = copy.deepcopy(find(objects, "KafkaTopic")[0])
    topic["spec"]["partitionz"] = 3
    scaled = copy.deepcopy(one(objects, "ScaledObject", "criticizer"))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 200  # must be a string
    user = copy.deepcopy(one(objects, "KafkaUser", "act-annotator"))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    pool = copy.deepcopy(one(objects, "KafkaNodePool", "brokers"))
    del pool["spec"]["storage"]
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    bad = [deployment, kafka, topic, scaled, user, pool, unknown]
    problems = schemas.validate(bad, versions=[schemas.KUBERNETES_VERSIONS[0]])
    flagged = {(p.kind, p.name) for p in problems}
    assert flagged == {(o["kind"], o["metadata"]["name"]) for o in bad}, problems


def test_crd_translation_follows_structural_schema_rules():
    crd = {
        "spec": {
            "group": "example.com",
            "names": {"kind": "Thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "port": {"x-kubernetes-int-or-string": True},
                                        "note": {"type": "string", "nullable": True},
                                        "free": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                        "map": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                }
                            },
                        }
                    },
                },
                {"name": "v0", "served": False, "schema": {"openAPIV3Schema": {}}},
            ],
        }
    }
    translated = schemas.crd_schemas(crd)
    assert list(translated) == [("example.com/v1", "Thing")]
    validator = schemas.SchemaSet(schemas.KUBERNETES_VERSIONS[0])
    validator._crds = translated  # test double: only this CRD

    def errors(spec):
        obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
        return validator.problems({**obj, "spec": spec})

    assert not errors({"port": 80, "note": None, "free": {"x": 1}, "map": {"a": "b"}})
    assert not errors({"port": "http"})
    assert errors({"port": 1.5})
    assert errors({"unknown": 1})
    assert errors({"map": {"a": 1}})


def test_vendored_crds_cover_every_custom_kind(overlays):
    crds = schemas.vendored_crd_schemas()
    custom = {
        (o["apiVersion"], o["kind"])
        for objs in overlays.values()
        for o in objs
        if "." in o["apiVersion"].split("/")[0] and not o["apiVersion"].endswith("k8s.io/v1")
    }
    assert custom <= set(crds), custom - set(crds)
    strimzi_version = (K8S / "schemas" / "strimzi" / "VERSION").read_text().strip()
    assert strimzi_version
