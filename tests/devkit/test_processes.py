"""services.devkit.processes on real child processes (``tests.devkit.child``)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from services.devkit.processes import (
    REPO_ROOT,
    ServiceExited,
    ServiceProcess,
    Supervisor,
    free_port,
    read_log,
    reap,
    sigkill,
    sigterm,
    spawn_service,
    stop,
    wait_serving,
    wait_until,
)

CHILD = "tests.devkit.child"


def spawn(tmp_path: Path, name: str = "child", **env: str) -> subprocess.Popen[bytes]:
    return spawn_service(CHILD, env, tmp_path / f"{name}.log")


async def wait_ready(log: Path) -> None:
    await wait_until(lambda: "ready" in read_log(log), 30, f"{log.name} ready")


def test_spawn_runs_from_repo_root_with_env_and_appends_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    # The child imports as tests.devkit.child only because PYTHONPATH is the repo root.
    first = spawn_service(CHILD, {"CHILD_SAY": "first run", "CHILD_EXIT": "3"}, log)
    assert first.wait(timeout=30) == 3
    second = spawn_service(CHILD, {"CHILD_SAY": "second run"}, log)
    assert second.wait(timeout=30) == 0
    text = read_log(log)
    assert text.index("first run") < text.index("second run")  # appended, not truncated
    assert f"cwd={REPO_ROOT}" in text
    assert "own-session=False" in text


def test_new_session_detaches_the_child_from_the_terminal(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    proc = spawn_service(CHILD, {}, log, new_session=True)
    assert proc.wait(timeout=30) == 0
    assert "own-session=True" in read_log(log)


def test_read_log_replaces_undecodable_bytes(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"ok \xff\xfe end")
    assert read_log(log) == "ok \ufffd\ufffd end"


async def test_sigterm_returns_the_exit_status(tmp_path: Path) -> None:
    draining = spawn(tmp_path, "draining", CHILD_TERM_EXIT="0", CHILD_SLEEP="60")
    plain = spawn(tmp_path, "plain", CHILD_SLEEP="60")
    try:
        await wait_ready(tmp_path / "draining.log")
        await wait_ready(tmp_path / "plain.log")
        assert sigterm(draining, timeout=30) == 0
        assert sigterm(plain, timeout=30) == -signal.SIGTERM
    finally:
        reap(draining)
        reap(plain)


async def test_sigterm_times_out_on_a_process_that_ignores_it(tmp_path: Path) -> None:
    proc = spawn(tmp_path, CHILD_IGNORE_TERM="1", CHILD_SLEEP="60")
    try:
        await wait_ready(tmp_path / "child.log")
        with pytest.raises(subprocess.TimeoutExpired):
            sigterm(proc, timeout=0.5)
        assert proc.poll() is None
    finally:
        reap(proc)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_kills_and_reaps(tmp_path: Path) -> None:
    proc = spawn(tmp_path, CHILD_IGNORE_TERM="1", CHILD_SLEEP="60")
    sigkill(proc)
    assert proc.returncode == -signal.SIGKILL


async def test_stop_falls_back_to_sigkill_and_reports_exit_status(tmp_path: Path) -> None:
    stubborn = spawn(tmp_path, "stubborn", CHILD_IGNORE_TERM="1", CHILD_SLEEP="60")
    polite = spawn(tmp_path, "polite", CHILD_TERM_EXIT="0", CHILD_SLEEP="60")
    done = spawn(tmp_path, "done", CHILD_EXIT="4")
    try:
        await wait_ready(tmp_path / "stubborn.log")
        await wait_ready(tmp_path / "polite.log")
        started = time.monotonic()
        assert stop(stubborn, timeout=0.5) == -signal.SIGKILL
        assert time.monotonic() - started < 10
        assert stop(polite, timeout=30) == 0
        done.wait(timeout=30)
        assert stop(done) == 4  # already exited: only reaped
    finally:
        for proc in (stubborn, polite, done):
            reap(proc)


def test_reap_kills_a_running_process_and_leaves_an_exited_one(tmp_path: Path) -> None:
    running = spawn(tmp_path, "running", CHILD_SLEEP="60")
    exited = spawn(tmp_path, "exited", CHILD_EXIT="2")
    exited.wait(timeout=30)
    reap(running)
    reap(exited)
    assert running.returncode == -signal.SIGKILL
    assert exited.returncode == 2


async def test_wait_until_returns_once_the_predicate_holds() -> None:
    deadline = time.monotonic() + 0.3
    await wait_until(lambda: time.monotonic() > deadline, 10, "the clock")
    assert time.monotonic() > deadline
    with pytest.raises(AssertionError, match="timed out waiting for never"):
        await wait_until(lambda: False, 0.2, "never")


async def test_wait_serving_returns_when_health_answers_serving(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn(tmp_path, CHILD_HEALTH_PORT=str(port), CHILD_SLEEP="60")
    try:
        await wait_serving(port, proc, what="child", timeout=30)
        assert proc.poll() is None
    finally:
        reap(proc)


async def test_wait_serving_fails_when_the_process_exits_or_never_serves(tmp_path: Path) -> None:
    crashing = spawn(tmp_path, "crashing", CHILD_EXIT="1")
    silent = spawn(tmp_path, "silent", CHILD_SLEEP="60")  # no health server
    try:
        with pytest.raises(AssertionError, match="crashing exited during start"):
            await wait_serving(free_port(), crashing, what="crashing", timeout=30)
        with pytest.raises(AssertionError, match="silent did not become healthy"):
            await wait_serving(free_port(), silent, what="silent", timeout=1)
    finally:
        reap(crashing)
        reap(silent)


def service(tmp_path: Path, name: str, **env: str) -> ServiceProcess:
    return ServiceProcess(name, CHILD, env, tmp_path / "logs" / f"{name}.log")


async def test_supervisor_waits_for_readiness_and_stops_in_reverse_order(tmp_path: Path) -> None:
    first = service(tmp_path, "first", CHILD_TERM_EXIT="0", CHILD_SLEEP="60")
    second = service(tmp_path, "second", CHILD_TERM_EXIT="7", CHILD_SLEEP="60")
    with Supervisor([first, second]) as services:
        services.start()  # creates the logs folder
        assert services["second"] is second and first.pid is not None
        await services.wait_ready(lambda s: "ready" in read_log(s.log), timeout_s=30)
        services.check()  # both alive: no exception
        codes = services.stop()
    assert list(codes) == ["second", "first"]  # last started stops first
    assert codes == {"second": 7, "first": 0}
    assert first.exited() == 0 and second.exited() == 7
    with pytest.raises(KeyError):
        services["third"]


async def test_supervisor_notices_a_child_exiting(tmp_path: Path) -> None:
    steady = service(tmp_path, "steady", CHILD_SLEEP="60")
    fragile = service(tmp_path, "fragile", CHILD_EXIT="5")
    with Supervisor([steady, fragile]) as services:
        services.start()
        with pytest.raises(ServiceExited) as raised:
            await services.wait_ready(lambda s: False, timeout_s=30, interval_s=0.05)
        assert raised.value.name == "fragile" and raised.value.returncode == 5
        assert str(fragile.log) in str(raised.value)
        with pytest.raises(ServiceExited, match="the fragile service exited with code 5"):
            services.check()
    # Leaving the block stopped the steady one (SIGTERM, default handling).
    assert steady.exited() == -signal.SIGTERM


async def test_supervisor_times_out_naming_the_stragglers(tmp_path: Path) -> None:
    quick = service(tmp_path, "quick", CHILD_SLEEP="60")
    slow = service(tmp_path, "slow", CHILD_SLEEP="60")
    with Supervisor([quick, slow]) as services:
        services.start()
        with pytest.raises(TimeoutError, match=r"not ready after 1 s: slow$"):
            await services.wait_ready(lambda s: s.name == "quick", timeout_s=1, interval_s=0.1)


def test_supervisor_refuses_duplicate_names_and_stops_unstarted_services(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([service(tmp_path, "a"), service(tmp_path, "a")])
    unstarted = Supervisor([service(tmp_path, "a")])
    assert unstarted.stop() == {"a": None}
    assert unstarted["a"].pid is None
