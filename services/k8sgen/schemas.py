"""Offline schema validation of rendered Kubernetes objects.

* Built-in kinds: the JSON schemas of the ``kubernetes-validate`` package
  (generated from the Kubernetes OpenAPI documents), in their *strict* form:
  an unknown field is an error, as with ``kubectl apply --validate=strict``.
* Custom resources: the ``openAPIV3Schema`` of every CustomResourceDefinition
  under ``k8s/schemas/`` (Strimzi's, vendored unmodified; KEDA's, a
  handwritten subset), translated to JSON Schema with the API server's
  structural rules: ``nullable``, ``x-kubernetes-int-or-string``,
  ``x-kubernetes-preserve-unknown-fields``; other objects with declared
  properties reject unknown fields (the API server would silently prune them).

An object whose kind has no schema is an error too, so nothing is skipped.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "k8s" / "schemas"
KUBERNETES_VERSIONS: tuple[str, ...] = ("1.30.0", "1.37.0")
"""Oldest and newest Kubernetes versions every overlay is validated against."""

_DEFS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = {"$ref": f"{_DEFS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Problem:
    """One schema violation of one object."""

    kubernetes_version: str
    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        return (
            f"[k8s {self.kubernetes_version}] {self.kind}/{self.name}: {self.path}: {self.message}"
        )


def _schema_root(version: str) -> Any:
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    folder = root.joinpath(f"v{version}-local-strict")
    if not folder.is_dir():
        known = sorted(p.name for p in root.iterdir())
        raise ValueError(f"kubernetes-validate has no schemas for {version}; it has {known}")
    return folder


def _core_file_name(api_version: str, kind: str) -> str:
    # apps/v1 -> apps-v1, networking.k8s.io/v1 -> networking-v1, v1 -> v1
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        api = f"{group.split('.', 1)[0]}-{version}"
    else:
        api = api_version
    return f"{kind.lower()}-{api}.json"


def _translate(node: Any, strict: bool = True) -> Any:
    """A CRD ``openAPIV3Schema`` node as JSON Schema (draft 2020-12)."""
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
    for key in ("enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                "pattern", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
                "required", "minProperties", "maxProperties"):  # fmt: skip
        if key in node:
            out[key] = node[key]
    if "enum" in out and node.get("nullable"):
        out["enum"] = [*out["enum"], None]
    if "properties" in node:
        out["properties"] = {k: _translate(v, strict) for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = _translate(node["items"], strict)
    if "additionalProperties" in node:
        extra = node["additionalProperties"]
        out["additionalProperties"] = (
            extra if isinstance(extra, bool) else _translate(extra, strict)
        )
    elif strict and not preserve and node.get("type") == "object" and "properties" in node:
        out["additionalProperties"] = False
    for key in ("oneOf", "anyOf", "allOf"):
        if key in node:
            translated = [_translate(n, strict=False) for n in node[key]]
            if key == "anyOf" and "anyOf" in out:
                out["allOf"] = [{"anyOf": out.pop("anyOf")}, {"anyOf": translated}]
            else:
                out[key] = translated
    if "not" in node:
        out["not"] = _translate(node["not"], strict=False)
    return out


def crd_schemas(crd: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema of every version a CRD serves."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        api_version = f"{group}/{version['name']}"
        schema = _translate(version["schema"]["openAPIV3Schema"])
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "enum": [api_version]}
        props["kind"] = {"type": "string", "enum": [kind]}
        props["metadata"] = _OBJECT_META
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
        schema["additionalProperties"] = False
        out[(api_version, kind)] = schema
    return out


@functools.cache
def vendored_crd_schemas(crd_dir: Path = CRD_DIR) -> dict[tuple[str, str], dict[str, Any]]:
    """Schemas of every CustomResourceDefinition under ``k8s/schemas/``."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir.rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                out.update(crd_schemas(doc))
    return out


class SchemaSet:
    """Validators for one Kubernetes version: built-in kinds plus the vendored CRDs."""

    def __init__(self, kubernetes_version: str, crd_dir: Path = CRD_DIR) -> None:
        self.kubernetes_version = kubernetes_version
        self._root = _schema_root(kubernetes_version)
        defs = json.loads(self._root.joinpath("_definitions.json").read_text(encoding="utf-8"))
        self._registry: Registry[Any] = Resource.from_contents(defs) @ Registry()
        self._crds = vendored_crd_schemas(crd_dir)
        self._validators: dict[tuple[str, str], Any] = {}

    def _validator(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        if key not in self._validators:
            schema = self._crds.get(key)
            if schema is None:
                path = self._root.joinpath(_core_file_name(api_version, kind))
                if not path.is_file():
                    raise LookupError(f"no schema for {api_version} {kind}")
                schema = json.loads(path.read_text(encoding="utf-8"))
            cls = jsonschema.validators.Draft202012Validator
            self._validators[key] = cls(schema, registry=self._registry)
        return self._validators[key]

    def problems(self, obj: Mapping[str, Any]) -> list[Problem]:
        """Every schema violation of one object (empty when it is valid)."""
        kind = str(obj.get("kind", "?"))
        name = str((obj.get("metadata") or {}).get("name", "?"))
        try:
            validator = self._validator(str(obj.get("apiVersion", "")), kind)
        except LookupError as exc:
            return [Problem(self.kubernetes_version, kind, name, "", str(exc))]
        return [
            Problem(
                self.kubernetes_version,
                kind,
                name,
                "." + ".".join(str(p) for p in err.absolute_path),
                err.message if len(err.message) < 300 else err.message[:300] + "...",
            )
            for err in validator.iter_errors(obj)
        ]


@functools.cache
def schema_set(kubernetes_version: str) -> SchemaSet:
    """The (cached) schemas of one Kubernetes version."""
    return SchemaSet(kubernetes_version)


def validate(
    objects: Iterable[Mapping[str, Any]], versions: Iterable[str] = KUBERNETES_VERSIONS
) -> list[Problem]:
    """Validate objects against every given Kubernetes version."""
    objs = list(objects)
    return [p for v in versions for obj in objs for p in schema_set(v).problems(obj)]
