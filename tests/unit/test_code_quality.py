"""The project's own checks run with the tests, so CI holds every change to them."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import REPO_ROOT


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(tool, path=str(REPO_ROOT / ".venv" / "bin")) or shutil.which(tool)
    command = [executable, *args] if executable else [sys.executable, "-m", tool, *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
