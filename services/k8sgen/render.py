"""Render the kustomize overlays of ``k8s/`` into Kubernetes objects."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS: tuple[str, ...] = ("dev", "production", "production-hosted-annotator")
"""Every overlay under k8s/overlays/; CI renders and validates each."""

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RenderError(RuntimeError):
    """kustomize is missing or failed."""


def kustomize_binary() -> str:
    """The kustomize executable: $ACT_KUSTOMIZE, .local/bin (k8s/tools.sh), or PATH."""
    candidates = [os.environ.get("ACT_KUSTOMIZE", ""), str(REPO / ".local" / "bin" / "kustomize")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("kustomize")
    if found:
        return found
    raise RenderError("kustomize not found: run k8s/tools.sh (installs the pinned version)")


def ensure_tools() -> str:
    """The pinned kustomize, installed by k8s/tools.sh (idempotent) where Go is available.

    Without Go, whatever :func:`kustomize_binary` finds is used.
    """
    if shutil.which("go"):
        subprocess.run(["bash", str(K8S / "tools.sh")], check=True, stdout=subprocess.DEVNULL)
    return kustomize_binary()


def build_text(path: Path, kustomize: str | None = None) -> str:
    """``kustomize build <path>`` as YAML text."""
    exe = kustomize or kustomize_binary()
    proc = subprocess.run(
        [exe, "build", str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    if proc.returncode != 0:
        raise RenderError(f"kustomize build {path} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def load_documents(text: str) -> list[dict[str, Any]]:
    """The non-empty documents of a multi-document YAML text."""
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc]


def build(path: Path, kustomize: str | None = None) -> list[dict[str, Any]]:
    """Render a kustomization directory into its objects."""
    return load_documents(build_text(path, kustomize))


def build_overlay(name: str, kustomize: str | None = None) -> list[dict[str, Any]]:
    """Render ``k8s/overlays/<name>``."""
    return build(K8S / "overlays" / name, kustomize)
