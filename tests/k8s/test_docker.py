"""The container image and the Compose file, checked structurally (no Docker here)."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from services.k8sgen import pipeline

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    logical = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        logical += " " + stripped.rstrip("\\").strip()
        if stripped.endswith("\\"):
            continue
        word, _, rest = logical.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        logical = ""
    return out


DOCKERFILES = ["Dockerfile", "model-server.Dockerfile"]


@pytest.fixture(scope="module", params=DOCKERFILES)
def dockerfile(request):
    return instructions(DOCKER / request.param)


def stages(dockerfile):
    result, current = [], None
    for ins, args in dockerfile:
        if ins == "FROM":
            current = []
            result.append((args, current))
        elif current is not None:
            current.append((ins, args))
    return result


def test_image_is_multi_stage_and_pinned(dockerfile):
    args = dict(a.split("=", 1) for i, a in dockerfile if i == "ARG" and "=" in a)
    froms = [a for i, a in dockerfile if i == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    for base in froms:
        image = base.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), image
        assert not image.endswith(":latest")
    final = stages(dockerfile)[-1]
    assert final[0].split()[-1] == "runtime"


def test_runtime_stage_is_small_and_non_root(dockerfile):
    runtime = stages(dockerfile)[-1][1]
    users = [a for i, a in runtime if i == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, "numeric non-root uid (runAsNonRoot can check it)"
    copies = [a for i, a in runtime if i == "COPY"]
    assert any("--from=build" in c for c in copies), "copies the built environment"
    assert not any(a.startswith(".") or " . " in f" {a} " for a in copies), (
        "no source tree in the image"
    )
    runs = " ".join(a for i, a in runtime if i == "RUN")
    assert "pip install" not in runs, "nothing built in the runtime stage"
    assert "build-essential" not in runs and "cmake" not in runs, "no compiler in the image"
    assert any(i == "ENTRYPOINT" for i, _ in runtime)
    assert any(i == "EXPOSE" for i, _ in runtime)


def test_service_image_exposes_grpc_and_metrics():
    runtime = stages(instructions(DOCKER / "Dockerfile"))[-1][1]
    exposed = {p for i, a in runtime if i == "EXPOSE" for p in a.split()}
    assert {"50051", "9464"} <= exposed


@pytest.mark.parametrize("name", DOCKERFILES)
def test_build_context_is_an_allow_list(name):
    ignore = (DOCKER / f"{name}.dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for ins, args in instructions(DOCKER / name):
        if ins == "COPY" and "--from" not in args:
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            copied.update(p.rstrip("/") for p in parts[:-1])
    assert copied <= allowed, copied - allowed
    for path in copied:
        assert (REPO / path).exists(), path


def test_entrypoint_runs_every_service(tmp_path):
    mode = ENTRYPOINT.stat().st_mode
    assert mode & stat.S_IXUSR, "entrypoint must be executable"
    # A stand-in python records how the entrypoint would start each service.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "python $*"\n', encoding="utf-8")
    fake.chmod(0o755)
    (tmp_path / "act").write_text('#!/bin/sh\necho "act $*"\n', encoding="utf-8")
    (tmp_path / "act").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def run(*args, **extra):
        return subprocess.run(["sh", str(ENTRYPOINT), *args], capture_output=True, text=True,
                              env={**env, **extra}, check=False)  # fmt: skip

    for stage in pipeline.STAGES:
        module = "services." + stage.name.replace("-", "_")
        proc = run(stage.name, "--flag")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"python -m {module} --flag"
        assert (REPO / module.replace(".", "/") / "__init__.py").exists(), module
    assert run(ACT_SERVICE="sampler").stdout.strip() == "python -m services.sampler"
    assert run("act", "topics", "ensure").stdout.strip() == "act topics ensure"
    # The health check is the project's own client (TLS from ACT_CLIENT_TLS_*).
    check = "python -m services.runtime.health_check --target 127.0.0.1:50052"
    assert run("healthcheck", "50052").stdout.strip() == check
    assert run("--help").returncode == 0
    assert run("nonsense").returncode == 64
    assert run().returncode == 64


COMPOSE_SERVICES = {
    "kafka", "postgres", "model-server", "topics", *(s.name for s in pipeline.STAGES)
}  # fmt: skip


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_runs_the_pipeline(compose):
    services = compose["services"]
    assert set(services) >= COMPOSE_SERVICES
    assert services["kafka"]["image"] == "apache/kafka:3.9.1"
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller", "KRaft, no ZooKeeper"
    assert str(kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"
    assert services["topics"]["command"][:3] == ["act", "topics", "ensure"]
    for stage in pipeline.STAGES:
        svc = services[stage.name]
        assert svc["command"] == [stage.name]
        assert svc["environment"]["ACT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    gateway = services["review-gateway"]
    assert gateway["environment"]["ACT_GATEWAY_DATABASE_URL"].startswith("postgresql://")
    assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_services_are_hardened_and_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), name
        if name in COMPOSE_SERVICES - {"kafka", "postgres"}:
            assert svc["build"]["dockerfile"] in (
                "deploy/docker/Dockerfile",
                "model-server.Dockerfile",
            )
            assert svc["user"] == "10001:10001"
            assert svc["read_only"] is True
            assert svc["cap_drop"] == ["ALL"]
            assert "no-new-privileges:true" in svc["security_opt"]
            assert "/tmp" in svc["tmpfs"]
    for stage in pipeline.STAGES:
        check = compose["services"][stage.name]["healthcheck"]["test"]
        assert check == ["CMD", "act-service", "healthcheck"]
