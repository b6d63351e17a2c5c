"""Invariants of the rendered manifests: what every workload must have."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter

from services.k8sgen import pipeline, render
from services.runtime.topics import default_catalog
from tests.k8s.conftest import all_containers, find, one, pod_spec

WORKLOAD_KINDS = ("Deployment", "StatefulSet")
GPU = "nvidia.com/gpu"
H100_SELECTOR = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
SETTINGS_PREFIX = {
    "annotator": "ACT_ANNOTATOR_",
    "criticizer": "ACT_CRITICIZER_",
    "sampler": "ACT_SAMPLER_",
    "review-gateway": "ACT_GATEWAY_",
    "trainer": "ACT_TRAINER_",
}
# Secrets the manifests reference but do not contain: Strimzi creates the
# cluster CA and one Secret per KafkaUser; production takes the services'
# credentials from the operator's secret manager (docs/kubernetes.md).
STRIMZI_SECRETS = {"act-cluster-ca-cert"}
EXTERNAL_SECRETS = {
    "dev": set(),
    "production": {"review-gateway-secrets"},
    "production-hosted-annotator": {"review-gateway-secrets", "annotator-secrets"},
}


def workloads(objects):
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_every_container_has_probes_requests_and_limits(overlays, overlay):
    for workload in workloads(overlays[overlay]):
        for c in all_containers(pod_spec(workload)):
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert "readinessProbe" in c, where
            assert "livenessProbe" in c, where
            resources = c.get("resources") or {}
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part) or {}), f"{where} {part}"


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_every_pod_is_hardened(overlays, overlay):
    for workload in workloads(overlays[overlay]):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        pod_sc = spec.get("securityContext") or {}
        assert pod_sc.get("runAsNonRoot") is True, name
        assert pod_sc.get("runAsUser", 0) != 0, name
        assert pod_sc.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
            sc = c.get("securityContext") or {}
            where = f"{name}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("runAsNonRoot") is True, where
            assert "ALL" in (sc.get("capabilities") or {}).get("drop", []), where
            assert not (sc.get("capabilities") or {}).get("add"), where
            assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            assert not sc.get("privileged"), where
        account = one(overlays[overlay], "ServiceAccount", spec["serviceAccountName"])
        assert account.get("automountServiceAccountToken") is False, name


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_namespace_enforces_restricted_pod_security(overlays, overlay):
    labels = one(overlays[overlay], "Namespace", "act")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_act_services_use_native_grpc_probes(overlays, overlay):
    for stage in pipeline.STAGES:
        deployment = one(overlays[overlay], "Deployment", stage.name)
        worker = next(c for c in pod_spec(deployment)["containers"] if c["name"] == stage.name)
        assert worker["args"] == [stage.name]
        grpc_port = next(p["containerPort"] for p in worker["ports"] if p["name"] == "grpc")
        # The gateway's liveness asks its web workspace instead (test below).
        grpc_probes = ("startupProbe", "readinessProbe")
        if stage.name != "review-gateway":
            grpc_probes += ("livenessProbe",)
        for probe in grpc_probes:
            assert worker[probe]["grpc"]["port"] == grpc_port, f"{stage.name} {probe}"
        assert {p["name"] for p in worker["ports"]} >= {"grpc", "metrics"}


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_images_are_pinned(overlays, overlay):
    for workload in workloads(overlays[overlay]):
        for c in [
            *(pod_spec(workload).get("initContainers") or []),
            *pod_spec(workload)["containers"],
        ]:
            image = c["image"]
            assert re.fullmatch(r"[\w./-]+(:[\w.-]+)(@sha256:[0-9a-f]{64})?", image), image
            assert not image.endswith(":latest"), image


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_every_deployment_has_a_disruption_budget(overlays, overlay):
    objects = overlays[overlay]
    budgets = find(objects, "PodDisruptionBudget")
    for deployment in find(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            b
            for b in budgets
            if all(labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items())
        ]
        assert len(matching) == 1, deployment["metadata"]["name"]
        spec = matching[0]["spec"]
        replicas = deployment["spec"].get("replicas")
        if spec.get("minAvailable") is not None and replicas is not None:
            assert spec["minAvailable"] < replicas, "the budget would block every drain"


def _gpu_containers(spec):
    return [c for c in all_containers(spec) if GPU in (c.get("resources") or {}).get("limits", {})]


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_gpu_requests_equal_limits_and_pods_tolerate_the_taint(overlays, overlay):
    for workload in workloads(overlays[overlay]):
        spec = pod_spec(workload)
        for c in all_containers(spec):
            res = c.get("resources") or {}
            if GPU in res.get("requests", {}) or GPU in res.get("limits", {}):
                assert res["requests"].get(GPU) == res["limits"].get(GPU), c["name"]
        if _gpu_containers(spec):
            tolerations = spec.get("tolerations") or []
            assert any(t["key"] == GPU and t["effect"] == "NoSchedule" for t in tolerations)
            assert spec.get("nodeSelector"), workload["metadata"]["name"]


def _assert_vllm_pod(objects, name, worker_prefix):
    deployment = one(objects, "Deployment", name)
    spec = pod_spec(deployment)
    assert spec["nodeSelector"] == H100_SELECTOR
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    (vllm,) = _gpu_containers(spec)
    assert vllm["restartPolicy"] == "Always", "vLLM must be a native sidecar"
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", vllm["image"])
    assert vllm["resources"]["requests"][GPU] == vllm["resources"]["limits"][GPU] == "1"
    assert "--enable-prefix-caching" in vllm["args"]
    startup = vllm["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "model load takes minutes"
    assert startup["httpGet"]["path"] == vllm["readinessProbe"]["httpGet"]["path"] == "/health"
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in vllm["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    weights = volumes[mounts["/models"]["name"]]
    assert weights["persistentVolumeClaim"]["readOnly"] is True
    assert mounts["/models"]["readOnly"] is True
    one(objects, "PersistentVolumeClaim", weights["persistentVolumeClaim"]["claimName"])
    # The worker calls its own vLLM on localhost, on the port vLLM listens on.
    config = one(objects, "ConfigMap", f"{name}-config")["data"]
    port = next(p["containerPort"] for p in vllm["ports"] if p["name"] == "vllm")
    assert config[f"{worker_prefix}BASE_URL"] == f"http://127.0.0.1:{port}/v1"
    assert config[f"{worker_prefix}MODEL"] == config["ACT_VLLM_SERVED_MODEL_NAME"]
    assert f"--port={port}" in vllm["args"]
    worker = next(c for c in spec["containers"] if c["name"] == name)
    assert GPU not in worker["resources"]["limits"]


@pytest.mark.parametrize("overlay", ["production", "production-hosted-annotator"])
def test_criticizer_runs_vllm_on_an_h100(overlays, overlay):
    _assert_vllm_pod(overlays[overlay], "criticizer", "ACT_CRITICIZER_")


def test_annotator_runs_vllm_on_an_h100_in_production(overlays):
    _assert_vllm_pod(overlays["production"], "annotator", "ACT_ANNOTATOR_")


def test_hosted_api_annotator_needs_no_gpu(overlays):
    objects = overlays["production-hosted-annotator"]
    spec = pod_spec(one(objects, "Deployment", "annotator"))
    assert not _gpu_containers(spec)
    assert not spec.get("nodeSelector") and not spec.get("tolerations")
    assert not spec.get("initContainers")
    assert {v["name"] for v in spec["volumes"]} == {"tmp", "kafka-ca"}
    config = one(objects, "ConfigMap", "annotator-config")["data"]
    assert config["ACT_ANNOTATOR_PROVIDER"] in ("openai", "anthropic")
    assert not any(k.startswith("ACT_VLLM_") for k in config)
    (worker,) = spec["containers"]
    secret_refs = [e["secretRef"] for e in worker["envFrom"] if "secretRef" in e]
    assert secret_refs == [{"name": "annotator-secrets"}], "the API key is required"


def test_dev_needs_no_gpu_and_uses_the_cpu_model_server(overlays):
    objects = overlays["dev"]
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert not _gpu_containers(spec), workload["metadata"]["name"]
        assert not spec.get("tolerations"), workload["metadata"]["name"]
    assert not find(objects, "PersistentVolumeClaim", "model-weights")
    server = one(objects, "Deployment", "model-server")
    port = pod_spec(server)["containers"][0]["ports"][0]["containerPort"]
    for name, prefix in (("annotator", "ACT_ANNOTATOR_"), ("criticizer", "ACT_CRITICIZER_")):
        config = one(objects, "ConfigMap", f"{name}-config")["data"]
        assert config[f"{prefix}BASE_URL"] == f"http://model-server:{port}/v1"
        assert config[f"{prefix}ENVIRONMENT"] == "dev"


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_trainer_has_a_checkpoint_volume(overlays, overlay):
    objects = overlays[overlay]
    deployment = one(objects, "Deployment", "trainer")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["spec"]["replicas"] == 1
    spec = pod_spec(deployment)
    config = one(objects, "ConfigMap", "trainer-config")["data"]
    (trainer,) = spec["containers"]
    mount = next(
        m for m in trainer["volumeMounts"] if m["mountPath"] == config["ACT_TRAINER_CHECKPOINT_DIR"]
    )
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    claim = one(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    if overlay != "dev":
        assert trainer["resources"]["limits"][GPU] == "1"
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_scaled_objects_never_exceed_the_partitions(overlays, overlay):
    objects = overlays[overlay]
    catalog = default_catalog()
    scaled = find(objects, "ScaledObject")
    assert {s["metadata"]["name"] for s in scaled} == {
        s.name for s in pipeline.STAGES if s.autoscaled
    }
    auths = {a["metadata"]["name"] for a in find(objects, "TriggerAuthentication")}
    for so in scaled:
        stage = pipeline.stage(so["spec"]["scaleTargetRef"]["name"])
        topic = catalog.get(stage.input)
        spec = so["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= topic.partitions, (
            f"{stage.name}: max {spec['maxReplicaCount']} > {topic.partitions} partitions"
        )
        deployment = one(objects, "Deployment", stage.name)
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
        for trigger in spec["triggers"]:
            if trigger["type"] == "kafka":
                meta = trigger["metadata"]
                assert meta["topic"] == topic.full_name()
                assert meta["consumerGroup"] == stage.group
                assert meta["allowIdleConsumers"] == "false"
                assert int(meta["lagThreshold"]) > 0
                assert trigger["authenticationRef"]["name"] in auths


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_stage_settings_match_the_pipeline(overlays, overlay):
    """Consumer groups, Kafka users and their Secrets line up per stage."""
    objects = overlays[overlay]
    users = {u["metadata"]["name"] for u in find(objects, "KafkaUser")}
    for stage in pipeline.STAGES:
        config = one(objects, "ConfigMap", f"{stage.name}-config")["data"]
        prefix = SETTINGS_PREFIX[stage.name]
        assert config[f"{prefix}GROUP_ID"] == stage.group
        assert config["ACT_KAFKA_SASL_USERNAME"] == stage.group
        assert stage.group in users
        spec = pod_spec(one(objects, "Deployment", stage.name))
        worker = next(c for c in spec["containers"] if c["name"] == stage.name)
        password = next(e for e in worker["env"] if e["name"] == "ACT_KAFKA_SASL_PASSWORD")
        assert password["valueFrom"]["secretKeyRef"] == {"name": stage.group, "key": "password"}
        labels = one(objects, "Deployment", stage.name)["spec"]["template"]["metadata"]["labels"]
        assert labels["act-stream.io/kafka-client"] == "true"
        ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
        assert int(config[f"{prefix}GRPC_PORT"]) == ports["grpc"]
        assert int(config[f"{prefix}METRICS_PORT"]) == ports["metrics"]


def _references(spec: dict[str, Any]):
    """(kind, name, optional) of every ConfigMap/Secret/PVC a pod spec uses."""
    for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
        for source in c.get("envFrom") or []:
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if key in source:
                    yield kind, source[key]["name"], source[key].get("optional", False)
        for env in c.get("env") or []:
            ref = env.get("valueFrom") or {}
            for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if key in ref:
                    yield kind, ref[key]["name"], ref[key].get("optional", False)
    for v in spec.get("volumes") or []:
        if "configMap" in v:
            yield "ConfigMap", v["configMap"]["name"], v["configMap"].get("optional", False)
        if "secret" in v:
            yield "Secret", v["secret"]["secretName"], v["secret"].get("optional", False)
        if "persistentVolumeClaim" in v:
            yield "PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"], False


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_references_resolve(overlays, overlay):
    objects = overlays[overlay]
    present = {(o["kind"], o["metadata"]["name"]) for o in objects}
    external = {("Secret", n) for n in STRIMZI_SECRETS | EXTERNAL_SECRETS[overlay]}
    external |= {("Secret", u["metadata"]["name"]) for u in find(objects, "KafkaUser")}
    for workload in workloads(objects):
        for kind, name, optional in _references(pod_spec(workload)):
            if optional:
                continue
            assert (kind, name) in present | external, (
                f"{workload['metadata']['name']}: {kind}/{name}"
            )
    for auth in find(objects, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ("Secret", ref["name"]) in present | external, ref
    for service in find(objects, "Service"):
        if service["spec"].get("type") == "ExternalName":
            continue
        selected = [
            w
            for w in workloads(objects)
            if all(
                w["spec"]["template"]["metadata"]["labels"].get(k) == v
                for k, v in service["spec"]["selector"].items()
            )
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        names = {
            p["name"] for c in all_containers(pod_spec(selected[0])) for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert isinstance(target, int) or target in names, (service["metadata"]["name"], target)
    for ingress in find(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                one(objects, "Service", backend["name"])
        assert ingress["spec"]["tls"], "the review gateway is served over TLS only"


def test_production_kafka_is_replicated(overlays):
    for overlay in ("production", "production-hosted-annotator"):
        objects = overlays[overlay]
        pools = {p["metadata"]["name"]: p["spec"] for p in find(objects, "KafkaNodePool")}
        brokers = sum(p["replicas"] for p in pools.values() if "broker" in p["roles"])
        controllers = sum(p["replicas"] for p in pools.values() if "controller" in p["roles"])
        assert brokers == 3 and controllers == 3
        config = one(objects, "Kafka", "act")["spec"]["kafka"]["config"]
        assert config["default.replication.factor"] == 3
        assert config["min.insync.replicas"] == 2
        assert config["transaction.state.log.replication.factor"] == 3
        assert config["transaction.state.log.min.isr"] == 2
        assert config["auto.create.topics.enable"] is False


def test_dev_kafka_is_a_single_node(overlays):
    objects = overlays["dev"]
    (pool,) = find(objects, "KafkaNodePool")
    assert pool["spec"]["replicas"] == 1
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    config = one(objects, "Kafka", "act")["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 1
    assert config["offsets.topic.replication.factor"] == 1
    assert config["transaction.state.log.min.isr"] == 1


def test_review_gateway_database(overlays):
    dev = overlays["dev"]
    one(dev, "StatefulSet", "postgres")
    production = overlays["production"]
    assert not find(production, "StatefulSet")
    assert one(production, "Service", "postgres")["spec"]["type"] == "ExternalName"
    assert one(production, "Ingress", "review-gateway")["metadata"]["annotations"].get(
        "cert-manager.io/cluster-issuer"
    )


# ------------------------------------------------------------ the review gateway's web workspace


def _ingress_backend(ingresses, host: str, path: str):
    """(Ingress name, service, port name) that serves host+path, as the Ingress API
    defines matching: Exact, or Prefix by whole path elements; the longest path
    wins and Exact beats Prefix of the same length. None: no rule matches."""
    best = None
    for ingress in ingresses:
        for rule in ingress["spec"]["rules"]:
            if rule.get("host") != host:
                continue
            for p in rule["http"]["paths"]:
                rule_path, kind = p["path"], p["pathType"]
                if kind == "Exact":
                    matched = path == rule_path
                else:
                    prefix = rule_path.rstrip("/")
                    matched = path == prefix or path.startswith(prefix + "/") or rule_path == "/"
                if not matched:
                    continue
                rank = (len(rule_path), kind == "Exact")
                if best is None or rank > best[0]:
                    svc = p["backend"]["service"]
                    best = (rank, (ingress["metadata"]["name"], svc["name"], svc["port"]["name"]))
    return None if best is None else best[1]


def _web_routes() -> list[str]:
    """The paths the workspace serves (placeholders filled in), from the application."""
    from services.review_gateway.settings import GatewaySettings
    from services.review_gateway.web.app import build_web_app

    app = build_web_app(None, None, GatewaySettings())  # type: ignore[arg-type]
    return sorted({re.sub(r"\{[^}]+\}", "x", r.path) for r in app.routes})


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_review_gateway_serves_the_web_workspace(overlays, overlay):
    objects = overlays[overlay]
    config = one(objects, "ConfigMap", "review-gateway-config")["data"]
    spec = pod_spec(one(objects, "Deployment", "review-gateway"))
    (gateway,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert TypeAdapter(bool).validate_python(config.get("ACT_GATEWAY_HTTP_ENABLED", True))
    assert int(config["ACT_GATEWAY_HTTP_PORT"]) == ports["http"] == 8090
    # Liveness on the web listener; startup and readiness stay on gRPC health.
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["grpc"]["port"] == ports["grpc"]
    service = one(objects, "Service", "review-gateway")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert by_name["http"]["port"] == 8090 and by_name["http"]["targetPort"] == "http"
    assert by_name["grpc"]["targetPort"] == "grpc"

    ingresses = find(objects, "Ingress")
    grpc = one(objects, "Ingress", "review-gateway")
    web = one(objects, "Ingress", "review-gateway-web")
    annotations = "nginx.ingress.kubernetes.io/backend-protocol"
    assert grpc["metadata"]["annotations"][annotations] == "GRPC"
    assert web["metadata"]["annotations"][annotations] == "HTTP"
    (host,) = {r["host"] for r in grpc["spec"]["rules"]}
    assert {r["host"] for r in web["spec"]["rules"]} == {host}
    # TLS for the host in both: the session cookies are Secure.
    for ingress in (grpc, web):
        tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
        assert host in tls_hosts and all(t["secretName"] for t in ingress["spec"]["tls"])
    assert _ingress_backend(ingresses, host, "/act.v1.ReviewService/Lease") == (
        "review-gateway",
        "review-gateway",
        "grpc",
    )
    routes = _web_routes()
    assert {"/", "/login", "/review", "/admin", "/healthz"} <= set(routes)
    for path in routes:
        backend = _ingress_backend(ingresses, host, path)
        if path == "/healthz":
            assert backend is None, "probes reach /healthz in the cluster; it is not public"
        else:
            assert backend == ("review-gateway-web", "review-gateway", "http"), path
    # Nothing else of the host reaches the web port.
    assert _ingress_backend(ingresses, host, "/grpc.health.v1.Health/Check") is None
    assert _ingress_backend(ingresses, host, "/metrics") is None


@pytest.mark.parametrize("overlay", ["production", "production-hosted-annotator"])
def test_production_keeps_secure_cookies(overlays, overlay):
    """The workspace's cookies stay Secure in production: set, or left at the default."""
    from services.review_gateway.settings import GatewaySettings

    objects = overlays[overlay]
    config = one(objects, "ConfigMap", "review-gateway-config")["data"]
    assert config["ACT_GATEWAY_ENVIRONMENT"] == "production"
    assert GatewaySettings.model_fields["web_cookie_secure"].default is True
    value = config.get("ACT_GATEWAY_WEB_COOKIE_SECURE", True)
    assert TypeAdapter(bool).validate_python(value) is True
    (gateway,) = pod_spec(one(objects, "Deployment", "review-gateway"))["containers"]
    overrides = [
        e for e in gateway.get("env") or [] if e["name"] == "ACT_GATEWAY_WEB_COOKIE_SECURE"
    ]
    assert all(TypeAdapter(bool).validate_python(e.get("value")) for e in overrides)
    # The cookie must reach the browser: only over TLS, with the certificate that
    # cert-manager issues for the gRPC Ingress (one Certificate per Secret).
    web = one(objects, "Ingress", "review-gateway-web")
    grpc = one(objects, "Ingress", "review-gateway")
    assert grpc["metadata"]["annotations"].get("cert-manager.io/cluster-issuer")
    secrets = {t["secretName"] for t in grpc["spec"]["tls"]}
    assert web["spec"]["tls"] and {t["secretName"] for t in web["spec"]["tls"]} <= secrets
    assert web["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/ssl-redirect") == "true"
