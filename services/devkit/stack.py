"""Start and stop the local Kafka broker and PostgreSQL from tests and benchmarks.

Both are thin wrappers around ``deploy/local-stack.sh`` (the same script that
developers run by hand), parameterised through its environment variables so
that every test session gets its own state directory and free ports.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""Root of the repository (the directory holding ``deploy/``)."""

STACK_SCRIPT = REPO_ROOT / "deploy" / "local-stack.sh"
"""The shell script that manages the local stack."""

SHARED_CLASSPATH_FILE = REPO_ROOT / ".local" / "kafka-classpath.txt"
"""Kafka classpath shared by all test brokers, so Maven runs once, not per session."""


class StackCommandError(RuntimeError):
    """A ``deploy/local-stack.sh`` call failed; the message carries its output."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args_list = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"{' '.join(args)} exited with status {returncode}\n"
            f"--- stdout ---\n{stdout.rstrip()}\n--- stderr ---\n{stderr.rstrip()}"
        )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    The port is released before returning, so another process could grab it
    in between; good enough for test servers started right afterwards.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_stack(command: str, env: dict[str, str], timeout: float = 300.0) -> str:
    """Run ``deploy/local-stack.sh COMMAND`` with ``env`` added to os.environ.

    Returns the combined stdout and stderr; raises :class:`StackCommandError`
    (with the captured output) when the script fails.
    """
    args = ["bash", str(STACK_SCRIPT), command]
    full_env = {**os.environ, **env}
    try:
        proc = subprocess.run(
            args,
            env=full_env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise StackCommandError(args, exc.returncode, exc.stdout or "", exc.stderr or "") from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise StackCommandError(args, -1, out, err + f"\n(timed out after {timeout}s)") from exc
    return proc.stdout + proc.stderr


@dataclass
class LocalBroker:
    """A single-node KRaft Kafka broker managed by ``deploy/local-stack.sh``.

    ``state_dir`` holds its configuration, data and logs
    (``state_dir/kafka/logs/kafka.log``). Topics are never created
    automatically (``auto.create.topics.enable=false``): tests create their own.
    """

    state_dir: Path
    port: int
    controller_port: int
    heap: str | None = None
    """JVM heap flags (ACT_KAFKA_HEAP); None keeps the script's default."""
    version: str | None = None
    """Kafka version (ACT_KAFKA_VERSION); None keeps the script's default."""
    last_output: str = field(default="", repr=False)
    """Output of the most recent script call (for assertions and debugging)."""

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` bootstrap address for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """The broker's log (log4j output and JVM stdout/stderr)."""
        return self.state_dir / "kafka" / "logs" / "kafka.log"

    @property
    def pid_file(self) -> Path:
        """The broker's pidfile, present while it runs."""
        return self.state_dir / "kafka" / "kafka.pid"

    def env(self) -> dict[str, str]:
        """Environment variables that point the script at this broker."""
        env = {
            "ACT_STACK_DIR": str(self.state_dir),
            "ACT_KAFKA_PORT": str(self.port),
            "ACT_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "ACT_STACK_NO_POSTGRES": "1",
            "ACT_STACK_NO_TOPICS": "1",
        }
        if "ACT_KAFKA_CLASSPATH_FILE" not in os.environ:
            env["ACT_KAFKA_CLASSPATH_FILE"] = str(SHARED_CLASSPATH_FILE)
        if self.heap is not None:
            env["ACT_KAFKA_HEAP"] = self.heap
        if self.version is not None:
            env["ACT_KAFKA_VERSION"] = self.version
        return env

    def _run(self, command: str) -> str:
        self.last_output = run_stack(command, self.env())
        return self.last_output

    def start(self) -> str:
        """Start the broker and wait until it accepts connections.

        A no-op (apart from the readiness check) when it already runs.
        Returns the script's output.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self._run("kafka-up")

    def stop(self) -> str:
        """Stop the broker gracefully (SIGTERM, SIGKILL after 60 s)."""
        return self._run("kafka-down")

    def kill(self) -> str:
        """Kill the broker with SIGKILL (crash simulation); data stays on disk."""
        return self._run("kafka-kill")

    def restart(self) -> str:
        """Stop the broker gracefully and start it again on the same ports."""
        out = self.stop()
        return out + self.start()

    def pid(self) -> int | None:
        """The broker's process id, or None when it is not running."""
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            return None
        pid = int(text)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def is_running(self) -> bool:
        """Whether the script reports the broker as running and reachable."""
        try:
            run_stack("kafka-status", self.env(), timeout=30)
        except StackCommandError:
            return False
        return True


@dataclass
class LocalPostgres:
    """A private PostgreSQL cluster managed by ``deploy/local-stack.sh``.

    When the tests run as root the cluster is owned by the ``postgres`` OS
    user, so ``state_dir`` and all its parents must be traversable by that
    user (for example a directory directly under /tmp with mode 0755).
    """

    state_dir: Path
    port: int
    last_output: str = field(default="", repr=False)
    """Output of the most recent script call (for assertions and debugging)."""

    @property
    def dsn(self) -> str:
        """Connection string for the ``act`` database as role ``act``."""
        return f"postgresql://act:act@127.0.0.1:{self.port}/act"

    def env(self) -> dict[str, str]:
        """Environment variables that point the script at this cluster."""
        return {"ACT_STACK_DIR": str(self.state_dir), "ACT_PG_PORT": str(self.port)}

    def start(self) -> str:
        """initdb if needed, start the server, create role and database ``act``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.last_output = run_stack("postgres-up", self.env())
        return self.last_output

    def stop(self) -> str:
        """Stop the server (fast shutdown); the cluster stays on disk."""
        self.last_output = run_stack("postgres-down", self.env())
        return self.last_output
