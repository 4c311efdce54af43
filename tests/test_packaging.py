"""What the built wheel really contains."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # build from a copy: parallel test workers must not share setuptools' build dirs
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "lifecycle", src / "lifecycle",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True,
    )
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_the_package_typed(wheel: zipfile.ZipFile) -> None:
    """The wheel holds the package with py.typed and the strategies, and no tests."""
    names = set(wheel.namelist())
    assert {"lifecycle/__init__.py", "lifecycle/py.typed", "lifecycle/strategies.py"} <= names
    assert not any(n.startswith(("tests/", "bench/", "docs/")) for n in names)
    sources = {Path(n).name for n in names if n.startswith("lifecycle/")}
    expected = {p.name for p in (ROOT / "lifecycle").glob("*.py")} | {"py.typed"}
    assert expected == sources


def test_wheel_metadata_pins_lower_bounds(wheel: zipfile.ZipFile) -> None:
    """Every dependency has a lower bound, and the testing extra brings hypothesis."""
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    msg = Parser().parsestr(wheel.read(meta).decode())
    requires = msg.get_all("Requires-Dist") or []
    runtime = [r for r in requires if "extra ==" not in r]
    assert {"attrs", "cattrs", "orjson", "transitions"} == {r.split(">=")[0] for r in runtime}
    assert all(">=" in r for r in requires)
    assert any(r.startswith("hypothesis>=") and "extra == \"testing\"" in r for r in requires)
    assert "Typing :: Typed" in (msg.get_all("Classifier") or [])
    assert ">=3.11" == msg["Requires-Python"]
