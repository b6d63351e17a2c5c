"""Run services as their own processes, the way an operator (or a crash test) would.

``spawn_service`` starts ``python -m <module>`` from the repository root with
extra environment variables, appending stdout and stderr to a log file (a
restarted process appends to the same log). The other helpers wait for it to
serve gRPC health, kill it without warning, stop it with SIGTERM, and reap it
in a ``finally`` block. :class:`Supervisor` keeps several named
:class:`ServiceProcess` es, raises :class:`ServiceExited` as soon as one of
them exits, and stops them in reverse start order.

The waiting helpers (:func:`wait_serving`, :func:`wait_until`) raise
``AssertionError`` on failure, so a test that uses them fails rather than
errors, as it did with the test suite's own helpers they replace.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Re-exported (the "as" form) so callers get every process helper from here.
from services.devkit.stack import REPO_ROOT as REPO_ROOT
from services.devkit.stack import free_port as free_port


def spawn_service(
    module: str, env: Mapping[str, str], log: Path, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``python -m MODULE`` with ``env`` added to os.environ.

    Runs from the repository root with ``PYTHONPATH`` set to it (``env`` may
    override that); stdout and stderr are appended to ``log``. With
    ``new_session`` the child gets its own session, so a Ctrl-C in the
    terminal reaches only the parent, which then stops its children in order.
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


# ``timeout`` parameters (ASYNC109) are kept: callers pass timeouts by name.


async def wait_serving(
    port: int,
    proc: subprocess.Popen[bytes],
    *,
    what: str,
    timeout: float = 60,  # noqa: ASYNC109
) -> None:
    """Wait until the gRPC health service on ``port`` answers SERVING.

    Fails (``AssertionError``) when ``proc`` exits first or after ``timeout``
    seconds; ``what`` names the service in the failure message.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{what} exited during start")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass  # not listening yet, or health not registered yet: ask again
            await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not become healthy")


async def wait_until(
    predicate: Callable[[], bool],
    timeout: float,  # noqa: ASYNC109
    what: str,
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` every ``interval`` seconds until it holds.

    Fails (``AssertionError`` naming ``what``) after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def sigkill(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Kill the process without warning (crash simulation) and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=timeout)


def sigterm(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """Ask the process to stop (SIGTERM) and return its exit status.

    Raises ``subprocess.TimeoutExpired`` when it does not exit within ``timeout``.
    """
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0, kill_timeout: float = 10.0) -> int:
    """SIGTERM (a service drains and commits), then SIGKILL if it does not exit in time.

    Returns the exit status; a process that has already exited is only reaped.
    """
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=kill_timeout)


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process if it still runs and wait for it (for ``finally`` blocks)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def read_log(log: Path) -> str:
    """A service's log as text (undecodable bytes replaced)."""
    return log.read_text(errors="replace")


class ServiceExited(RuntimeError):
    """A supervised service exited while it should have been running."""

    def __init__(self, name: str, returncode: int, log: Path) -> None:
        self.name = name
        self.returncode = returncode
        self.log = log
        super().__init__(f"the {name} service exited with code {returncode}; see {log}")


@dataclass
class ServiceProcess:
    """One named ``python -m`` service process with its own log file.

    ``metrics_port`` and ``grpc_port`` record what the service was told to
    listen on (0 when not known), so callers can reach it.
    """

    name: str
    module: str
    env: dict[str, str]
    log: Path
    metrics_port: int = 0
    grpc_port: int = 0
    new_session: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The process id once started."""
        return self.proc.pid if self.proc is not None else None

    def start(self) -> subprocess.Popen[bytes]:
        """Spawn the process (its log file's folder must exist)."""
        self.proc = spawn_service(self.module, self.env, self.log, new_session=self.new_session)
        return self.proc

    def exited(self) -> int | None:
        """Its exit status if it was started and has exited, else None."""
        return None if self.proc is None else self.proc.poll()

    def check_alive(self) -> None:
        """Raise :class:`ServiceExited` (with the log's path) when the process has exited."""
        code = self.exited()
        if code is not None:
            raise ServiceExited(self.name, code, self.log)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; its exit status (None if never started)."""
        return None if self.proc is None else stop(self.proc, timeout)


class Supervisor:
    """Several named service processes: start, readiness, liveness, orderly stop.

    Stops in reverse start order, so downstream services started later stop
    first; usable as a context manager that stops everything on the way out.
    """

    def __init__(self, services: Iterable[ServiceProcess]) -> None:
        self.services = list(services)
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")

    @classmethod
    def of(
        cls,
        specs: Iterable[tuple[str, str, str, Mapping[str, str]]],
        *,
        bootstrap: str,
        topic_prefix: str,
        log_dir: Path,
    ) -> Supervisor:
        """Service processes on one Kafka and topic prefix, each on free ports.

        ``specs`` holds ``(name, module, env prefix, settings)``: the settings
        get the service's prefix (``ACT_SAMPLER_``...). Every child logs to
        ``log_dir/<name>.log``, gets its own session (a Ctrl-C in the terminal
        reaches only the parent, which stops the children in order: drain and
        commit), and one OpenMP thread (several processes share the cores).
        """
        common = {
            "ACT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ACT_KAFKA_TOPIC_PREFIX": topic_prefix,
            "OMP_NUM_THREADS": "1",
            # The generated protos import as ``act.v1`` even without the editable install.
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), str(REPO_ROOT / "protos"), os.environ.get("PYTHONPATH", "")]
            ).rstrip(os.pathsep),
        }
        services = []
        for name, module, env_prefix, settings in specs:
            metrics_port, grpc_port = free_port(), free_port()
            env = dict(common)
            env.update({env_prefix + k: v for k, v in settings.items()})
            env.update(
                {
                    f"{env_prefix}METRICS_PORT": str(metrics_port),
                    f"{env_prefix}GRPC_PORT": str(grpc_port),
                    f"{env_prefix}ENVIRONMENT": "dev",
                    f"{env_prefix}LOG_LEVEL": "INFO",
                }
            )
            log = log_dir / f"{name}.log"
            services.append(
                ServiceProcess(name, module, env, log, metrics_port, grpc_port, new_session=True)
            )
        return cls(services)

    def __iter__(self) -> Iterator[ServiceProcess]:
        return iter(self.services)

    def __getitem__(self, name: str) -> ServiceProcess:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def start(self) -> None:
        """Start every service in order (their log folders are created)."""
        for service in self.services:
            service.log.parent.mkdir(parents=True, exist_ok=True)
            service.start()

    def check(self) -> None:
        """Raise :class:`ServiceExited` for the first service that has exited."""
        for service in self.services:
            service.check_alive()

    async def wait_ready(
        self,
        ready: Callable[[ServiceProcess], bool],
        *,
        timeout_s: float = 180.0,
        interval_s: float = 0.5,
    ) -> None:
        """Until ``ready(service)`` holds for every service.

        ``ready`` may block (it runs in a thread, e.g. an HTTP scrape). Raises
        :class:`ServiceExited` when one exits first and ``TimeoutError``
        naming the stragglers after ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        pending = list(self.services)
        while pending:
            for service in list(pending):
                service.check_alive()
                if await asyncio.to_thread(ready, service):
                    pending.remove(service)
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.name for s in pending)
                raise TimeoutError(f"not ready after {timeout_s:.0f} s: {names}")
            if pending:
                await asyncio.sleep(interval_s)

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """Stop every service in reverse start order; their exit statuses by name."""
        return {s.name: s.stop(timeout) for s in reversed(self.services)}

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
