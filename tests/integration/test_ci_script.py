"""The CI's throwaway PostgreSQL (``.ci/postgres.sh``), sourced as ``.ci/run`` does."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ROOT


def _server_binaries() -> bool:
    return bool(shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")))


def _postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(not _server_binaries(), reason="no PostgreSQL server binaries"),
    pytest.mark.skipif(
        os.geteuid() == 0 and not _postgres_user(), reason="root, and no postgres user"
    ),
]


def source(port: int, *then: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """``source .ci/postgres.sh`` in bash with ``LIFECYCLE_CI_PGPORT=port`` and a stray
    ``PGPORT``, then the commands ``then``."""
    env = {**os.environ, "LIFECYCLE_CI_PGPORT": str(port), "PGPORT": "1"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["bash", "-c", "; ".join(["source .ci/postgres.sh", *then])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port: int = s.getsockname()[1]
        return port


def test_a_taken_port_shows_the_log_and_removes_the_cluster() -> None:
    """On a port another program listens on: status 1, the log's path and its tail
    (which says why), and no cluster folder left behind."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = source(port)
    found = re.search(
        r"its cluster, (\S+), is removed\); the end of its log, (\S+):", result.stderr
    )
    assert (1, True) == (result.returncode, found is not None), result.stderr
    assert found is not None
    cluster, log = Path(found[1]), Path(found[2])
    try:
        assert f"did not start on 127.0.0.1:{port}" in result.stderr
        assert "already in use" in result.stderr
        assert log.read_text().splitlines()[-1] in result.stderr
        assert not cluster.exists()
    finally:
        log.unlink(missing_ok=True)


@pytest.fixture
def wrappers() -> Iterator[Path]:
    """A folder of pg_ctl, initdb and postgres that say they ran, then run the real one
    (readable by the postgres user, whom root runs them as)."""
    on_path = shutil.which("pg_ctl")
    real = (
        Path(os.path.realpath(on_path)).parent
        if on_path
        else max(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
        )
    )
    folder = Path(tempfile.mkdtemp(prefix="lifecycle-pgbin-"))
    folder.chmod(0o755)
    for name in ("pg_ctl", "initdb", "postgres"):
        wrapper = folder / name
        wrapper.write_text(f'#!/bin/sh\necho "wrapper {name} ran" >&2\nexec {real / name} "$@"\n')
        wrapper.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_the_server_of_pg_ctl_on_path_starts_on_its_own_port(wrappers: Path) -> None:
    """pg_ctl on PATH comes first; the port is LIFECYCLE_CI_PGPORT, not PGPORT; the
    cluster is gone when the shell that sourced the script exits."""
    pytest.importorskip("psycopg")
    port = free_port()
    query = (
        f'{sys.executable} -c "import os, psycopg; print(psycopg.connect('
        "os.environ['LIFECYCLE_TEST_POSTGRES']).execute('SHOW port').fetchone()[0])\""
    )
    result = source(
        port, query, 'echo "cluster $PGDATA_DIR"', path=f"{wrappers}:{os.environ['PATH']}"
    )
    assert (0, f"postgresql://postgres@127.0.0.1:{port}/postgres") == (
        result.returncode,
        re.findall(r"on (\S+)", result.stdout)[0],
    ), result.stderr
    assert str(port) in result.stdout.splitlines()
    assert "wrapper pg_ctl ran" in result.stderr
    cluster = Path(result.stdout.split("cluster ")[1].strip())
    assert not cluster.exists()
