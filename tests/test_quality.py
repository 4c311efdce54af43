"""The code base stays lint clean and type checks under mypy --strict."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, check=False)


def test_ruff_is_clean() -> None:
    """ruff finds nothing in the package, tests, bench and docs scripts."""
    result = run("ruff", "check", "lifecycle", "tests", "bench", "docs", "examples")
    assert 0 == result.returncode, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    """mypy --strict (configured in pyproject.toml) finds no error."""
    result = run("mypy")
    assert 0 == result.returncode, result.stdout + result.stderr
