"""The import layering holds (``lint-imports`` with pyproject's contracts), and the
checker really catches a cycle between sibling packages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from services.devkit.stack import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def run_lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` in ``cwd`` (its config there) with ``pythonpath`` importable."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_repository_keeps_its_import_contracts() -> None:
    result = run_lint_imports(REPO_ROOT, REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_a_cycle_between_sibling_packages_is_reported(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "demo_pkg"
    for name, body in {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/x.py": "def f():\n    from demo_pkg.b import y  # hidden in a function\n",
        "b/__init__.py": "",
        "b/y.py": "import demo_pkg.a.x\n",
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(body)
    (tmp_path / ".importlinter").write_text(
        textwrap.dedent(
            """\
            [importlinter]
            root_package = demo_pkg

            [importlinter:contract:acyclic]
            name = acyclic
            type = acyclic_siblings
            ancestors = demo_pkg
            """
        )
    )
    result = run_lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
