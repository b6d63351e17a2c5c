"""One local model server per profile, started with deploy/llm-server.sh.

The same path as ``make bench`` and the LLM demo: the Qwen weights are
fetched and verified first (``python -m services.llm.weights ensure``), then
the script serves the profile on a free port with its own state directory,
so the study never touches a server someone else runs on the default port.
A profile can also be given an already running server (``--server
smollm2=http://127.0.0.1:8089/v1``); that one is neither started nor stopped.

Servers are started on first use and all stopped at the end: only one works
at a time (the study is sequential), so idle ones cost memory, not CPU, and
each keeps its prompt cache between the annotation and critique phases.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from services.devkit.processes import REPO_ROOT, free_port

SCRIPT = REPO_ROOT / "deploy" / "llm-server.sh"
MODELS_DIR = REPO_ROOT / ".local" / "models"


class ServerPool:
    """Local model servers by profile; a context manager that stops what it started."""

    def __init__(
        self,
        state_dir: Path,
        given: Mapping[str, str] | None = None,
        say: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.state_dir = state_dir
        self.given = dict(given or {})
        self.say = say
        self._started: dict[str, int] = {}  # profile -> port
        #: Seconds each start took (the sizing charges later starts with them).
        self.start_seconds: list[float] = []

    def _env(self, profile: str, port: int) -> dict[str, str]:
        return {
            **os.environ,
            "ACT_STACK_DIR": str(self.state_dir / profile),
            "ACT_LLM_PORT": str(port),
            "ACT_LLM_PROFILE": profile,
            "ACT_LLM_START_TIMEOUT": "300",
            # The per-request log is where llama-cpp-python shows prompt-cache
            # reuse (records.prefix_hits); it carries no prompt text.
            "ACT_LLM_VERBOSE": "true",
            "PYTHON": sys.executable,
        }

    def url(self, profile: str) -> str:
        """The profile's ``/v1`` URL, starting its server on first use."""
        if profile in self.given:
            return self.given[profile]
        if profile not in self._started:
            t0 = time.monotonic()
            if profile != "smollm2":
                self.say(f"fetching and verifying the {profile} weights (downloads on first use)")
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "services.llm.weights",
                        "ensure",
                        "--profile",
                        profile,
                        "--dir",
                        str(MODELS_DIR),
                    ],
                    check=True,
                    timeout=3600,
                    cwd=REPO_ROOT,
                )
            port = free_port()
            self.say(f"starting the {profile} server on port {port}")
            subprocess.run(
                ["bash", str(SCRIPT), "up"],
                env=self._env(profile, port),
                check=True,
                capture_output=True,
                timeout=600,
            )
            self._started[profile] = port
            self.start_seconds.append(time.monotonic() - t0)
        return f"http://127.0.0.1:{self._started[profile]}/v1"

    def log_path(self, profile: str) -> Path | None:
        """The server's log (deploy/llm-server.sh's), or None for a given server."""
        if profile in self.given or profile not in self._started:
            return None
        return self.state_dir / profile / "llm" / "llm-server.log"

    def log_size(self, profile: str) -> int:
        """Bytes in the server's log now (0 without one): a phase reads what follows."""
        path = self.log_path(profile)
        return path.stat().st_size if path is not None and path.exists() else 0

    def log_since(self, profile: str, offset: int) -> str | None:
        """The server's log written after ``offset``, or None without a log."""
        path = self.log_path(profile)
        if path is None or not path.exists():
            return None
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")

    def close(self) -> None:
        """Stop every server this pool started."""
        for profile, port in list(self._started.items()):
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["bash", str(SCRIPT), "down"],
                    env=self._env(profile, port),
                    check=False,
                    capture_output=True,
                    timeout=120,
                )
            del self._started[profile]

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
