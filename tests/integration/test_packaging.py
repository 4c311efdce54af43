"""What the built wheel really contains."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser

import pytest

from support import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # build from a copy: parallel test workers must not share setuptools' build dirs
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "lifecycle", src / "lifecycle", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_the_package_typed(wheel: zipfile.ZipFile) -> None:
    """The wheel holds the package with py.typed, the strategies and every file the web
    pages need (templates, stylesheet, script), and no tests."""
    names = set(wheel.namelist())
    assert {"lifecycle/__init__.py", "lifecycle/py.typed", "lifecycle/strategies.py"} <= names
    assert not any(n.startswith(("tests/", "bench/", "docs/")) for n in names)
    sources = {n for n in names if n.startswith("lifecycle/")}
    package = ROOT / "lifecycle"
    expected = {
        f"lifecycle/{p.relative_to(package).as_posix()}"
        for p in package.rglob("*")
        if p.suffix == ".py" or p.name == "py.typed" or p.parent.name in ("templates", "static")
    }
    assert {"lifecycle/server/static/ui.js", "lifecycle/server/templates/session.html"} <= names
    assert expected == sources


def test_wheel_metadata_pins_lower_bounds(wheel: zipfile.ZipFile) -> None:
    """Every dependency has a lower bound, and the testing extra brings hypothesis."""
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    msg = Parser().parsestr(wheel.read(meta).decode())
    requires = msg.get_all("Requires-Dist") or []
    runtime = [r for r in requires if "extra ==" not in r]
    assert {"attrs", "cattrs", "click", "orjson", "rich", "transitions"} == {
        r.split(">=")[0] for r in runtime
    }
    assert all(">=" in r for r in requires)
    assert any(r.startswith("hypothesis>=") and 'extra == "testing"' in r for r in requires)
    server = {r.split(">=")[0].split("[")[0] for r in requires if 'extra == "server"' in r}
    assert {
        "starlette",
        "uvicorn",
        "cryptography",
        "prometheus-client",
        "sse-starlette",  # the change feed's event stream
        "standardwebhooks",  # signing forwarded changes
        "aiohttp",  # sending them
        "jinja2",  # the web pages
    } == server
    assert "Typing :: Typed" in (msg.get_all("Classifier") or [])
    assert ">=3.11" == msg["Requires-Python"]


def test_wheel_installs_the_lifecycle_command(wheel: zipfile.ZipFile) -> None:
    """The console script `lifecycle` runs lifecycle._cli:main."""
    (points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "lifecycle = lifecycle._cli:main" in wheel.read(points).decode().splitlines()


def test_importing_the_library_imports_no_interface() -> None:
    """`import lifecycle` loads neither the server's nor the command line's libraries."""
    code = (
        "import sys, lifecycle; print(sorted(m for m in ('starlette', 'uvicorn', 'click', "
        "'rich', 'cryptography', 'prometheus_client', 'psycopg', 'sse_starlette', "
        "'standardwebhooks', 'aiohttp', 'httpx') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == run.stdout.strip()
