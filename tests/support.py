"""Helpers the test tiers share: the examples, PostgreSQL test databases, a fake clock."""

from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import strategies as st

from lifecycle import Engine, FeedResult
from lifecycle import strategies as vs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_FILE = ROOT / "examples" / "videosdk-webhook-examples.jsonl"


def load_examples() -> list[dict[str, Any]]:
    """The provider's 41 example payloads, in the order of its page."""
    return [json.loads(line) for line in EXAMPLES_FILE.read_text().splitlines() if line]


POSTGRES_URL = os.environ.get("LIFECYCLE_TEST_POSTGRES", "")
STORES = ["memory", "sqlite", "postgresql"]


def postgres_or_skip() -> str:
    """This worker's database on the test server; a loud skip when none is reachable.

    In CI (``CI`` set) a missing or unreachable server fails the test instead.
    """
    problem = "LIFECYCLE_TEST_POSTGRES is not set" if not POSTGRES_URL else None
    if problem is None:
        try:
            return _worker_database(POSTGRES_URL, os.environ.get("PYTEST_XDIST_WORKER", "main"))
        except Exception as e:  # psycopg.OperationalError and friends
            problem = f"cannot reach {POSTGRES_URL}: {e}"
    message = f"PostgreSQL tests not run: {problem} (`source .ci/postgres.sh` starts a server)"
    if os.environ.get("CI"):
        pytest.fail(message)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


@functools.cache
def _worker_database(url: str, worker: str) -> str:
    """A database of this test worker's own on the server, so workers never collide."""
    import psycopg

    name = f"lifecycle_test_{worker}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def database_urls(folder: Path) -> list[str]:
    """A new SQLite database in ``folder``, and the emptied test PostgreSQL when there is
    one (a property test compares them with memory, and runs without PostgreSQL too)."""
    urls = [f"sqlite:///{folder / 'lifecycle.db'}"]
    try:
        pg = postgres_or_skip()
    except pytest.skip.Exception:
        return urls
    reset_postgres(pg)
    return [*urls, pg]


def reset_postgres(url: str) -> None:
    """Drop every table of the test database (a fresh store for the next engine)."""
    import psycopg

    from lifecycle.stores.postgres import DROP

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in DROP:
            conn.execute(statement)


class Clock:
    """A clock the test sets and moves by hand (``Engine(clock=...)``): epoch seconds.

    With ``tick``, each reading first moves it on by that many seconds.
    """

    def __init__(self, now: float = 1_700_000_000.0, tick: float = 0.0) -> None:
        self.now = now
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock on; the new time."""
        self.now += seconds
        return self.now


# -- signed webhooks and real servers ---------------------------------------------------


@functools.cache
def signing_key() -> rsa.RSAPrivateKey:
    """The tests' stand-in for VideoSDK's signing key (one per test process)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The PEM of ``key``'s public half: what ``--public-key`` reads."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign(key: rsa.RSAPrivateKey, body: bytes) -> dict[str, str]:
    """The videosdk-signature header of ``body``."""
    signature = key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return {"videosdk-signature": base64.b64encode(signature).decode()}


_SERVERS = itertools.count()
_RUNNING_ON = re.compile(r'"message":"serving","url":"http://[^"]+:(\d+)"')


class Server:
    """A ``lifecycle serve`` process on a loopback port, ready once ``/healthz`` answers
    (200, or 503 when its store cannot be written).

    The port is the one the system gives the server (``--port 0``), read from its log:
    no other process can take it between a choice and the bind.
    """

    def __init__(
        self,
        tmp: Path,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        prefix: Sequence[str] = (),
    ) -> None:
        self.log = tmp / f"server-{os.getpid()}-{next(_SERVERS)}.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "lifecycle", "serve", *args, "--port", "0"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            env={**os.environ, **(env or {})},
        )
        self.port = self._wait_until_ready(time.monotonic() + timeout)
        self.url = f"http://127.0.0.1:{self.port}"

    def _wait_until_ready(self, deadline: float) -> int:
        port: int | None = None
        while True:
            if port is None:
                found = _RUNNING_ON.search(self.log.read_text(errors="replace"))
                port = int(found[1]) if found else None
            try:
                # any answer: the app has started (503 when its store cannot be written)
                if port is not None and httpx.get(
                    f"http://127.0.0.1:{port}/healthz", timeout=5
                ).status_code in (200, 503):
                    return port
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                raise RuntimeError(f"the server did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` unless it has ended, and wait for the end; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(60)
        self._log.close()
        return code


def unprivileged(cwd: Path) -> list[str]:
    """The command prefix of a process that file permissions apply to: ``nobody``
    through ``setpriv`` under root (root ignores them), none otherwise; a skip when
    ``nobody`` cannot run lifecycle here."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = [*prefix, sys.executable, "-c", "import lifecycle"]
    if subprocess.run(probe, cwd=cwd, capture_output=True, check=False).returncode:
        pytest.skip("running as root, and nobody cannot run lifecycle here (setpriv)")
    return prefix


@contextmanager
def read_only_folder() -> Iterator[tuple[Path, list[str]]]:
    """A folder every user may enter, and the command prefix of a process that may read
    but not write in it: ``nobody`` under root (see :func:`unprivileged`), else none,
    and the test makes the folder read-only once it has filled it (mode 555)."""
    folder = Path(tempfile.mkdtemp(prefix="lifecycle-ro-"))
    folder.chmod(0o755)
    try:
        yield folder, unprivileged(folder)
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


# -- sweeps among the events -------------------------------------------------------------

Step = tuple[str, Any]


@st.composite
def fed_and_swept(draw: st.DrawFn) -> list[Step]:
    """A meeting's events with sweeps among them, each after a pause (seconds)."""
    events = draw(vs.session_events())
    sweeps = draw(st.lists(st.tuples(st.integers(0, len(events)), st.floats(0, 3_000)), max_size=6))
    ops: list[Step] = [("feed", payload) for payload in events]
    for at, pause in sorted(sweeps, key=lambda s: -s[0]):  # from the end: positions hold
        ops.insert(at, ("sweep", pause))
    ops += [
        ("sweep", pause) for pause in draw(st.lists(st.floats(0, 100_000), min_size=1, max_size=3))
    ]
    return ops


def run(engine: Engine, clock: Clock, ops: list[Step]) -> list[tuple[float, list[FeedResult]]]:
    """Feed and sweep as ``ops`` say; each sweep's time and entries."""
    swept = []
    for op, arg in ops:
        if op == "feed":
            engine.feed(arg)
        else:
            t = clock.advance(arg)
            swept.append((t, engine.sweep(t)))
    return swept
