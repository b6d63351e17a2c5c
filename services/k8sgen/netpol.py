"""An evaluator of Kubernetes NetworkPolicies (networking.k8s.io/v1).

Given the rendered NetworkPolicies and a set of endpoints (pods with their
namespace, labels, named ports and address; hosts outside the cluster with
an address only), :meth:`Network.allows` answers whether a connection from
A to B on a port is allowed, with the semantics the API defines:

* a pod is isolated for ingress (egress) when at least one policy of its
  namespace selects it and lists that policy type; a pod that is not isolated
  accepts (may open) every connection;
* an isolated pod accepts (opens) a connection only when some rule of some
  policy selecting it matches the peer and the port; rules and policies add up;
* a connection needs both: egress allowed at A and ingress allowed at B;
* peers: ``podSelector`` (pods of the policy's namespace),
  ``namespaceSelector`` (every pod of the matching namespaces), both (pods
  matching in matching namespaces), ``ipBlock`` (addresses, minus ``except``);
  an absent or empty ``from``/``to`` matches everything;
* ports: number or name (resolved against the destination pod's container
  ports), ``endPort`` ranges, protocol TCP by default; absent or empty ports
  match every port.

Strimzi generates the NetworkPolicies of its Kafka pods at run time from the
listeners of the ``Kafka`` resource; :func:`strimzi_policies` builds the
equivalent objects so that those paths can be evaluated too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A pod (namespace set) or a host outside the cluster (namespace None)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    """Named container ports: name -> (number, protocol)."""

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def selector_matches(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def _policy_types(policy: Obj) -> set[str]:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return set(types)
    return {"Ingress", "Egress"} if "egress" in spec else {"Ingress"}


class Network:
    """Endpoints, namespaces and policies; answers reachability questions."""

    def __init__(
        self,
        policies: Iterable[Obj],
        endpoints: Iterable[Endpoint],
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.policies = [p for p in policies if p.get("kind") == "NetworkPolicy"]
        self.endpoints = {e.name: e for e in endpoints}
        self._ns_labels: dict[str, dict[str, str]] = {}
        for ns, labels in (namespace_labels or {}).items():
            self._ns_labels[ns] = {"kubernetes.io/metadata.name": ns, **labels}

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """A namespace's labels (``kubernetes.io/metadata.name`` always set)."""
        return self._ns_labels.get(namespace, {"kubernetes.io/metadata.name": namespace})

    def endpoint(self, name: str) -> Endpoint:
        return self.endpoints[name]

    def _selecting(self, pod: Endpoint, policy_type: str) -> list[Obj]:
        return [
            p
            for p in self.policies
            if p["metadata"].get("namespace") == pod.namespace
            and policy_type in _policy_types(p)
            and selector_matches(p["spec"].get("podSelector") or {}, pod.labels)
        ]

    def _peer_matches(self, peer: Obj, policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            addr = ipaddress.ip_address(other.ip)
            if addr not in ipaddress.ip_network(block["cidr"], strict=False):
                return False
            return not any(
                addr in ipaddress.ip_network(ex, strict=False) for ex in block.get("except") or []
            )
        if not other.is_pod:
            return False  # selectors select pods only
        assert other.namespace is not None
        ns_sel = peer.get("namespaceSelector")
        pod_sel = peer.get("podSelector")
        if ns_sel is None:
            ns_ok = other.namespace == policy_ns
        else:
            ns_ok = selector_matches(ns_sel, self.namespace_labels(other.namespace))
        pod_ok = True if pod_sel is None else selector_matches(pod_sel, other.labels)
        return ns_ok and pod_ok

    @staticmethod
    def _port_matches(rule_ports: list[Obj] | None, dst: Endpoint, port: int, proto: str) -> bool:
        if not rule_ports:
            return True
        for rp in rule_ports:
            if rp.get("protocol", "TCP") != proto:
                continue
            want = rp.get("port")
            if want is None:
                return True
            if isinstance(want, str) and not want.isdigit():
                named = dst.ports.get(want)
                if named is not None and named == (port, proto):
                    return True
                continue
            low = int(want)
            high = int(rp.get("endPort", low))
            if low <= port <= high:
                return True
        return False

    def _rules_allow(
        self, policies: list[Obj], key: str, peer_key: str, peer: Endpoint, dst: Endpoint,
        port: int, proto: str,
    ) -> bool:  # fmt: skip
        for policy in policies:
            ns = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peer_key)
                peer_ok = not peers or any(self._peer_matches(p, ns, peer) for p in peers)
                if peer_ok and self._port_matches(rule.get("ports"), dst, port, proto):
                    return True
        return False

    def egress_allowed(self, src: Endpoint, dst: Endpoint, port: int, proto: str = "TCP") -> bool:
        """May ``src`` open the connection (its egress policies)?"""
        if not src.is_pod:
            return True
        selecting = self._selecting(src, "Egress")
        if not selecting:
            return True
        return self._rules_allow(selecting, "egress", "to", dst, dst, port, proto)

    def ingress_allowed(self, src: Endpoint, dst: Endpoint, port: int, proto: str = "TCP") -> bool:
        """Does ``dst`` accept the connection (its ingress policies)?"""
        if not dst.is_pod:
            return True
        selecting = self._selecting(dst, "Ingress")
        if not selecting:
            return True
        return self._rules_allow(selecting, "ingress", "from", src, dst, port, proto)

    def allows(self, src: str, dst: str, port: int | str, proto: str = "TCP") -> bool:
        """May endpoint ``src`` connect to endpoint ``dst`` on ``port``?

        ``port`` may name a container port of ``dst``.
        """
        a, b = self.endpoint(src), self.endpoint(dst)
        if isinstance(port, str):
            port, proto = b.ports[port]
        if a.is_pod and b.is_pod and a.name == b.name:
            return True  # localhost inside the pod
        return self.egress_allowed(a, b, port, proto) and self.ingress_allowed(a, b, port, proto)


def _pod_templates(objects: Iterable[Obj]) -> Iterable[tuple[str, str, Obj]]:
    for obj in objects:
        if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield (
                obj["metadata"]["name"],
                obj["metadata"].get("namespace", "default"),
                obj["spec"]["template"],
            )


def pod_endpoints(objects: Iterable[Obj], first_ip: str = "10.244.0.10") -> list[Endpoint]:
    """One endpoint per workload (named after it) from its pod template."""
    out = []
    ip = ipaddress.ip_address(first_ip)
    for name, namespace, template in _pod_templates(objects):
        spec = template["spec"]
        ports: dict[str, tuple[int, str]] = {}
        containers = [
            *spec.get("containers", []),
            *(c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"),
        ]
        for container in containers:
            for p in container.get("ports") or []:
                if "name" in p:
                    ports[p["name"]] = (int(p["containerPort"]), p.get("protocol", "TCP"))
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        out.append(Endpoint(name, str(ip), namespace, labels, ports))
        ip += 1
    return out


def strimzi_pods(objects: Iterable[Obj], first_ip: str = "10.244.1.10") -> list[Endpoint]:
    """One endpoint per KafkaNodePool (its pods' labels as Strimzi sets them)."""
    objs = list(objects)
    out = []
    ip = ipaddress.ip_address(first_ip)
    for kafka in (o for o in objs if o.get("kind") == "Kafka"):
        cluster, ns = kafka["metadata"]["name"], kafka["metadata"].get("namespace", "default")
        listeners = kafka["spec"]["kafka"]["listeners"]
        ports = {f"tcp-{lst['name']}": (int(lst["port"]), "TCP") for lst in listeners}
        for pool in objs:
            if pool.get("kind") != "KafkaNodePool":
                continue
            if (pool["metadata"].get("labels") or {}).get("strimzi.io/cluster") != cluster:
                continue
            roles = pool["spec"]["roles"]
            labels = {
                "strimzi.io/cluster": cluster,
                "strimzi.io/kind": "Kafka",
                "strimzi.io/name": f"{cluster}-kafka",
                "strimzi.io/pool-name": pool["metadata"]["name"],
                "strimzi.io/broker-role": str("broker" in roles).lower(),
                "strimzi.io/controller-role": str("controller" in roles).lower(),
            }
            name = f"{cluster}-{pool['metadata']['name']}"
            pool_ports = dict(ports) if "broker" in roles else {}
            pool_ports.update({"tcp-ctrlplane": (9090, "TCP"), "tcp-replication": (9091, "TCP")})
            out.append(Endpoint(name, str(ip), ns, labels, pool_ports))
            ip += 1
        out.append(
            Endpoint(
                f"{cluster}-entity-operator",
                str(ip),
                ns,
                {
                    "strimzi.io/cluster": cluster,
                    "strimzi.io/kind": "Kafka",
                    "strimzi.io/name": f"{cluster}-entity-operator",
                },
            )
        )
        ip += 1
    return out


def strimzi_policies(objects: Iterable[Obj]) -> list[dict[str, Any]]:
    """The ingress NetworkPolicy Strimzi generates for a Kafka cluster's pods.

    One rule per listener (its ``networkPolicyPeers``, or everyone when it has
    none) plus the cluster's own traffic: the control plane (9090) and
    replication (9091) ports between the cluster's pods.
    """
    out: list[dict[str, Any]] = []
    for kafka in (o for o in objects if o.get("kind") == "Kafka"):
        cluster, ns = kafka["metadata"]["name"], kafka["metadata"].get("namespace", "default")
        rules: list[dict[str, Any]] = [
            {
                "from": [{"podSelector": {"matchLabels": {"strimzi.io/cluster": cluster}}}],
                "ports": [{"protocol": "TCP", "port": 9090}, {"protocol": "TCP", "port": 9091}],
            }
        ]
        for listener in kafka["spec"]["kafka"]["listeners"]:
            rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": listener["port"]}]}
            if listener.get("networkPolicyPeers"):
                rule["from"] = listener["networkPolicyPeers"]
            rules.append(rule)
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"{cluster}-network-policy-kafka", "namespace": ns},
                "spec": {
                    "podSelector": {
                        "matchLabels": {
                            "strimzi.io/cluster": cluster,
                            "strimzi.io/kind": "Kafka",
                            "strimzi.io/name": f"{cluster}-kafka",
                        }
                    },
                    "policyTypes": ["Ingress"],
                    "ingress": rules,
                },
            }
        )
    return out
