"""Helpers the test tiers share: the examples, PostgreSQL test databases, a fake clock."""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

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


def reset_postgres(url: str) -> None:
    """Drop every table of the test database (a fresh store for the next engine)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS events, resources, lifecycle_meta CASCADE")
        conn.execute("DROP SEQUENCE IF EXISTS lifecycle_events_seq")


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
