"""Fixtures of the Kubernetes tests: the rendered overlays, rendered once.

Rendering needs kustomize: ``k8s/tools.sh`` (idempotent) installs the pinned
version into ``.local/bin`` with Go, from the Go module proxy; it runs here
whenever Go is available. Without Go, a kustomize on PATH is used, and without
either the tests are skipped with that message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from services.k8sgen import render

Objects = list[dict[str, Any]]


@pytest.fixture(scope="session")
def kustomize() -> str:
    try:
        return render.ensure_tools()
    except render.RenderError:
        pytest.skip("no kustomize, and no Go to install it: run k8s/tools.sh")


@pytest.fixture(scope="session")
def overlays(kustomize: str) -> dict[str, Objects]:
    """Every overlay of k8s/overlays, rendered."""
    return {name: render.build_overlay(name, kustomize) for name in render.OVERLAYS}


@pytest.fixture(scope="session")
def render_dir(kustomize: str, tmp_path_factory: pytest.TempPathFactory):
    """Render a throwaway kustomization into objects.

    ``{k8s}`` in the text is replaced by the relative path to k8s/ (kustomize
    refuses absolute paths).
    """

    def _render(kustomization: str) -> Objects:
        d = Path(tmp_path_factory.mktemp("kustomization"))
        rel = os.path.relpath(render.K8S, d)
        text = kustomization.replace("{k8s}", rel)
        (d / "kustomization.yaml").write_text(text, encoding="utf-8")
        return render.build(d, kustomize)

    return _render


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of a kind (and name)."""
    return [
        o
        for o in objects
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    """The one object of this kind and name."""
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Regular containers and sidecars (init containers with restartPolicy Always)."""
    sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    return [*spec.get("containers", []), *sidecars]
