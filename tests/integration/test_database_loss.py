"""The database never disappears silently under `lifecycle serve`.

A SQLite file deleted, or read-only then writable again, and PostgreSQL restarted: the
server answers 503 while it cannot store, ``/healthz`` says what the writer can do, and
it recovers without a restart once the database is back.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import orjson
import pytest

from lifecycle import Engine

from support import Server, postgres_or_skip, read_only_folder, reset_postgres


def webhook(n: int) -> bytes:
    return orjson.dumps(
        {"webhookType": "session-started", "data": {"meetingId": "m", "sessionId": f"s{n}"}}
    )


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as exits:
        yield exits


def files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def test_a_deleted_sqlite_file_answers_503_until_it_is_restored(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    """Deleted with its -wal and -shm: 503 and an unavailable /healthz (they were 200
    and ok, and lost after a restart), no new empty file; restored from a backup: 200
    again, into the restored file."""
    db = tmp_path / "live.db"
    server = serve(db=str(db))
    with httpx.Client(base_url=server.url) as client:
        assert 200 == client.post("/webhooks", content=webhook(1)).status_code
        with sqlite3.connect(db) as live, sqlite3.connect(tmp_path / "backup.db") as backup:
            live.backup(backup)
        for f in files(db):
            f.unlink(missing_ok=True)
        refused = client.post("/webhooks", content=webhook(2))
        assert 503 == refused.status_code
        assert "retry" in refused.json()["error"]
        assert (503, {"status": "unavailable"}) == (
            client.get("/healthz").status_code,
            client.get("/healthz").json(),
        )
        assert not db.exists()  # not recreated empty
        shutil.copy(tmp_path / "backup.db", db)
        assert 200 == client.get("/healthz").status_code
        assert 200 == client.post("/webhooks", content=webhook(3)).status_code
    server.stop()
    with Engine.open(str(db)) as engine:
        assert [webhook(1), webhook(3)] == [r.payload for r in engine.log()]
    assert "deleted or replaced" in server.log.read_text()


def test_read_only_files_then_writable_again_recover_without_a_restart(
    serve: Callable[..., Server], stack: ExitStack
) -> None:
    """Read-only when the server starts: 503 and an unavailable /healthz (it said ok);
    writable again: 200 (it stayed 503 until a restart)."""
    folder, prefix = stack.enter_context(read_only_folder())  # open to nobody, unlike tmp_path
    db = folder / "ro.db"
    with Engine.open(str(db)) as engine:
        engine.feed(webhook(1))
    if prefix:
        shutil.chown(folder, "nobody", "nogroup")
        shutil.chown(db, "nobody", "nogroup")
    db.chmod(0o444)
    server = serve(db=str(db), prefix=prefix)
    with httpx.Client(base_url=server.url) as client:
        assert 503 == client.post("/webhooks", content=webhook(2)).status_code
        assert 503 == client.get("/healthz").status_code
        for f in files(db):  # the -wal and -shm SQLite made take the file's mode
            if f.exists():
                f.chmod(0o644)
        assert 200 == client.get("/healthz").status_code
        assert 200 == client.post("/webhooks", content=webhook(2)).status_code
        assert 200 == client.post("/webhooks", content=webhook(3)).status_code
    server.stop()
    with Engine.open(str(db)) as engine:
        assert [webhook(n) for n in (1, 2, 3)] == [r.payload for r in engine.log()]


def test_healthz_is_ok_at_once_after_postgresql_connections_are_lost(
    serve: Callable[..., Server],
) -> None:
    """Every connection of the server killed while PostgreSQL stays up: the next
    /healthz is 200 (it answered 503 once), since it retries on a fresh connection."""
    url = postgres_or_skip()
    reset_postgres(url)
    import psycopg

    server = serve(db=url)
    with httpx.Client(base_url=server.url) as client:
        assert 200 == client.post("/webhooks", content=webhook(1)).status_code
        for _ in range(3):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            assert (200, "ok") == (
                (h := client.get("/healthz")).status_code,
                h.json()["status"],
            )
