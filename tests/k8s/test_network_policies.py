"""NetworkPolicies allow the paths of the data flow and deny everything else.

The rendered policies (plus the ingress policy Strimzi generates for the
brokers) are evaluated by :mod:`services.k8sgen.netpol` over the pods of the
overlay and a few endpoints outside it.
"""

from __future__ import annotations

import pytest

from services.k8sgen import netpol, pipeline, render
from services.k8sgen.netpol import Endpoint, Network

STAGES = [s.name for s in pipeline.STAGES]
OUTSIDE = [
    Endpoint(
        "kube-dns",
        "10.244.9.2",
        "kube-system",
        {"k8s-app": "kube-dns"},
        {"dns": (53, "UDP"), "dns-tcp": (53, "TCP")},
    ),
    Endpoint(
        "ingress-controller",
        "10.244.9.3",
        "ingress-nginx",
        {"app.kubernetes.io/name": "ingress-nginx"},
    ),
    Endpoint("prometheus", "10.244.9.4", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
    Endpoint("keda-operator", "10.244.9.5", "keda", {"app.kubernetes.io/name": "keda-operator"}),
    Endpoint("stranger", "10.244.9.6", "default", {"app.kubernetes.io/name": "annotator"}),
    # A pod of the namespace without any of the pipeline's labels (kubectl run).
    Endpoint("debug", "10.244.9.7", "act", {"run": "debug"}),
    Endpoint("review-tool", "10.244.9.8", "act", {"act-stream.io/review-client": "true"}),
    Endpoint("training-tool", "10.244.9.9", "act", {"act-stream.io/trainer-client": "true"}),
    Endpoint("hosted-llm-api", "162.159.140.245"),
    Endpoint("managed-postgres", "10.20.0.5"),
    Endpoint("kube-apiserver", "172.20.0.1"),
]
BROKERS = "act-brokers"
# Everyone but the Ingress controller, in and outside the namespace: no path
# to the gateway's web port (8090), labelled review tools included.
WEB_DENIED = (
    "annotator",
    "criticizer",
    "sampler",
    "trainer",
    "review-tool",
    "training-tool",
    "debug",
    "stranger",
    "prometheus",
    "keda-operator",
    BROKERS,
)


def network(objects) -> Network:
    policies = [
        *(o for o in objects if o["kind"] == "NetworkPolicy"),
        *netpol.strimzi_policies(objects),
    ]
    pods = [*netpol.pod_endpoints(objects), *netpol.strimzi_pods(objects)]
    return Network(policies, [*pods, *OUTSIDE])


@pytest.fixture(scope="module")
def nets(overlays):
    return {name: network(objs) for name, objs in overlays.items()}


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_data_flow_paths_are_allowed(nets, overlay):
    net = nets[overlay]
    allowed = [
        *((s, BROKERS, 9093) for s in STAGES),
        ("keda-operator", BROKERS, 9093),
        *((s, "kube-dns", 53, "UDP") for s in STAGES),
        *((s, "kube-dns", 53, "TCP") for s in STAGES),
        ("ingress-controller", "review-gateway", "grpc"),
        ("ingress-controller", "review-gateway", "http"),  # the web workspace
        ("ingress-controller", "review-gateway", 8090),
        ("review-tool", "review-gateway", "grpc"),
        ("training-tool", "trainer", "grpc"),
        *(("prometheus", s, "metrics") for s in STAGES),
        # Strimzi's own traffic.
        (BROKERS, BROKERS, 9091),
        ("act-entity-operator", BROKERS, 9091),
        ("act-entity-operator", "kube-apiserver", 443),
    ]
    if overlay == "dev":
        allowed += [
            ("review-gateway", "postgres", 5432),
            ("annotator", "model-server", 8080),
            ("criticizer", "model-server", 8080),
        ]
    else:
        allowed += [
            ("review-gateway", "managed-postgres", 5432),
            ("prometheus", "criticizer", 8000),  # vLLM metrics (queue depth)
            ("act-controllers", BROKERS, 9090),
        ]
    if overlay == "production-hosted-annotator":
        allowed.append(("annotator", "hosted-llm-api", 443))
    denied = [p for p in allowed if not net.allows(*p)]
    assert not denied, f"denied data-flow paths: {denied}"


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_everything_else_is_denied(nets, overlay):
    net = nets[overlay]
    forbidden = [
        # Not a Kafka client: no broker access.
        ("debug", BROKERS, 9093),
        ("stranger", BROKERS, 9093),
        ("prometheus", BROKERS, 9093),
        # The gateway is only reachable through the Ingress controller and tools.
        ("stranger", "review-gateway", "grpc"),
        ("debug", "review-gateway", "grpc"),
        ("criticizer", "review-gateway", "grpc"),
        ("prometheus", "review-gateway", "grpc"),
        # The web workspace: browsers come through the Ingress controller only.
        *((src, "review-gateway", port) for src in WEB_DENIED for port in ("http", 8090)),
        ("ingress-controller", "review-gateway", "metrics"),
        # The trainer's API is for labelled clients of the namespace only.
        ("ingress-controller", "trainer", "grpc"),
        ("debug", "trainer", "grpc"),
        ("review-tool", "trainer", "grpc"),
        ("training-tool", "review-gateway", "grpc"),
        ("stranger", "trainer", "grpc"),
        # Workers accept nothing but scrapes.
        ("sampler", "annotator", "grpc"),
        ("sampler", "criticizer", 8000),
        ("ingress-controller", "criticizer", 8000),
        ("debug", "sampler", "metrics"),
        # No stage but the gateway reaches a database; none reaches the internet...
        ("annotator", "managed-postgres", 5432),
        ("sampler", "managed-postgres", 5432),
        ("criticizer", "hosted-llm-api", 443),
        ("trainer", "hosted-llm-api", 443),
        ("review-gateway", "hosted-llm-api", 443),
        ("sampler", "kube-apiserver", 443),
        # ...and the gateway reaches its database on 5432 only.
        ("review-gateway", "managed-postgres", 22),
        ("review-gateway", "trainer", "grpc"),
        ("annotator", BROKERS, 9091),  # replication port: brokers only
    ]
    if overlay == "dev":
        forbidden += [
            ("annotator", "postgres", 5432),
            ("sampler", "postgres", 5432),
            ("stranger", "postgres", 5432),
            ("sampler", "model-server", 8080),
            ("review-gateway", "model-server", 8080),
            ("model-server", BROKERS, 9093),
            ("model-server", "hosted-llm-api", 443),  # the weights are in its image
            ("model-server", "managed-postgres", 5432),
        ]
    if overlay != "production-hosted-annotator":
        forbidden.append(("annotator", "hosted-llm-api", 443))
    allowed = [p for p in forbidden if net.allows(*p)]
    assert not allowed, f"paths that should be denied: {allowed}"


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_every_pod_is_isolated_both_ways(nets, overlay):
    net = nets[overlay]
    for ep in net.endpoints.values():
        if ep.namespace == "act":
            assert net._selecting(ep, "Ingress"), ep.name
            assert net._selecting(ep, "Egress"), ep.name


# ---------------------------------------------------------------- the evaluator itself


def _policy(name, selector, types, ingress=None, egress=None, ns="a"):
    spec = {"podSelector": selector, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


PODS = [
    Endpoint("web", "10.0.0.1", "a", {"app": "web"}, {"http": (8080, "TCP")}),
    Endpoint("db", "10.0.0.2", "a", {"app": "db", "tier": "data"}, {"pg": (5432, "TCP")}),
    Endpoint("job", "10.0.0.3", "b", {"app": "web"}),
    Endpoint("mon", "10.0.0.4", "mon", {"app": "prom"}),
    Endpoint("ext", "8.8.8.8"),
]


def test_unselected_pods_are_not_isolated():
    net = Network([], PODS)
    assert net.allows("web", "db", 5432)
    assert net.allows("job", "ext", 1)


def test_default_deny_and_an_allow_add_up():
    deny = _policy("deny", {}, ["Ingress", "Egress"])
    allow_in = _policy(
        "db-in",
        {"matchLabels": {"app": "db"}},
        ["Ingress"],
        ingress=[
            {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}
        ],
    )
    allow_out = _policy(
        "web-out",
        {"matchLabels": {"app": "web"}},
        ["Egress"],
        egress=[{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
    )
    net = Network([deny, allow_in, allow_out], PODS)
    assert net.allows("web", "db", 5432)
    assert net.allows("web", "db", "pg")
    assert not net.allows("web", "db", 5433)  # ingress port
    assert not net.allows("db", "web", 8080)  # no egress for db
    assert not net.allows("job", "db", 5432)  # other namespace: podSelector is local
    assert not net.allows("web", "ext", 443)
    assert net.allows("mon", "job", 1)  # namespace b has no policies


def test_namespace_and_pod_selector_in_one_peer_are_anded():
    both = _policy(
        "both",
        {"matchLabels": {"app": "web"}},
        ["Ingress"],
        ingress=[
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "mon"}
                        },
                        "podSelector": {"matchLabels": {"app": "other"}},
                    }
                ]
            }
        ],
    )
    net = Network([both], PODS)
    assert not net.allows("mon", "web", 8080)
    either = _policy(
        "either",
        {"matchLabels": {"app": "web"}},
        ["Ingress"],
        ingress=[
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}},
                    {"podSelector": {"matchLabels": {"app": "other"}}},
                ]
            }
        ],
    )
    assert Network([either], PODS).allows("mon", "web", 8080)


def test_ip_blocks_named_ports_ranges_protocols_and_expressions():
    egress = _policy(
        "out",
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]},
        ["Egress"],
        egress=[
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                "ports": [{"port": 8000, "endPort": 8100}],
            },
            {"ports": [{"port": 53, "protocol": "UDP"}]},
        ],
    )
    net = Network([egress], PODS)
    assert net.allows("web", "ext", 8050)
    assert not net.allows("web", "ext", 8101)
    assert not net.allows("web", "db", 8050)  # 10.0.0.0/8 excepted
    assert net.allows("web", "db", 53, "UDP")
    assert not net.allows("web", "ext", 53, "TCP")
    named = _policy(
        "named",
        {"matchLabels": {"app": "web"}},
        ["Ingress"],
        ingress=[{"ports": [{"port": "http"}]}],
    )
    net = Network([named], PODS)
    assert net.allows("db", "web", 8080)
    assert not net.allows("db", "web", 8081)
    assert netpol.selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"app": "web"}
    )
    assert not netpol.selector_matches(
        {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
        {"app": "web"},
    )


def test_policy_types_default_to_ingress_plus_egress_when_present():
    only_rules = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "a"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "egress": []},
    }
    net = Network([only_rules], PODS)
    assert not net.allows("web", "ext", 443)  # egress isolated, no rule
    assert not net.allows("db", "web", 8080)  # ingress isolated too
