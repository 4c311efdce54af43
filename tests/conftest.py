"""Shared fixtures and hypothesis profiles (``HYPOTHESIS_PROFILE=fast|ci``).

Helpers that tests import live in ``support.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from support import Server, load_examples, postgres_or_skip, reset_postgres

settings.register_profile("fast", max_examples=25, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def examples() -> list[dict[str, Any]]:
    return load_examples()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None for the in-memory engine, else a fresh database URL of the store asked for."""
    kind = getattr(request, "param", "sqlite")
    if kind == "memory":
        return None
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'lifecycle.db'}"
    url = postgres_or_skip()
    reset_postgres(url)
    return url


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``lifecycle serve`` processes that take unsigned webhooks: ``serve(*options,
    db=..., prefix=...)``, on ``tmp_path/lifecycle.db`` unless told; stopped after."""
    servers: list[Server] = []

    def starter(*options: str, db: str | None = None, prefix: Sequence[str] = ()) -> Server:
        where = db or str(tmp_path / "lifecycle.db")
        args = ["--db", where, "--insecure-no-signature", *options]
        servers.append(Server(tmp_path, args, prefix=prefix))
        return servers[-1]

    yield starter
    for server in servers:
        server.stop()
