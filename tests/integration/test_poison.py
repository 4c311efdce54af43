"""Poison webhooks: what a store cannot keep never fails the payloads it travels with.

Limits decided when a payload is parsed (nesting depth, key length) make it
``malformed`` on every store; a batch that the database refuses for another reason is
fed again one payload at a time, and the guilty one is stored as ``malformed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lifecycle import Engine, Outcome, StoreRefused, StoreUnavailable
from lifecycle._convert import MAX_DEPTH, MAX_KEY_LENGTH
from lifecycle._simulate import stream
from lifecycle.stores.postgres import PostgresStore
from lifecycle.stores.sqlite import SqliteStore

from support import Server, postgres_or_skip, reset_postgres

POISON = b"poison-marker"


def nested(levels: int) -> bytes:
    """A recording-started webhook whose ``data`` holds objects ``levels`` deep in all."""
    deep = b'{"x":' * (levels - 1) + b"1" + b"}" * (levels - 1)
    return b'{"webhookType":"recording-started","data":{"meetingId":"m-deep","sessionId":"s",' + (
        b'"deep":' + deep + b"}}"
    )


def long_key(length: int) -> bytes:
    return orjson.dumps(
        {"webhookType": "session-started", "data": {"meetingId": "m", "sessionId": "k" * length}}
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "poison.db")
    url = postgres_or_skip()
    reset_postgres(url)
    return url


# -- the limits of parse, on every store ------------------------------------------------


def test_limits_are_malformed_on_every_store(db: str) -> None:
    """At the limit a payload is kept as usual; one past it is ``malformed``, its reason
    naming the limit, stored as it came; status pages holding the others still answer."""
    fine = [nested(MAX_DEPTH), long_key(MAX_KEY_LENGTH)]
    poison = [nested(MAX_DEPTH + 1), nested(300), long_key(MAX_KEY_LENGTH + 1), long_key(8192)]
    with Engine.open(db) as engine:
        results = engine.feed_many([*fine, *poison])
        assert Outcome.MALFORMED not in [r.outcome for r in results[:2]]
        assert all(r.outcome is Outcome.MALFORMED for r in results[2:])
        assert all(f"more than {MAX_DEPTH} levels deep" in str(r.reason) for r in results[2:4])
        assert all(f"longer than {MAX_KEY_LENGTH} characters" in str(r.reason) for r in results[4:])
        assert [*fine, *poison] == [r.payload for r in engine.log()]
        deep = engine.status("recording", "m-deep", "s")
        assert deep is not None
        assert "deep" in deep.data
        assert len(engine.resources()) == 2


def test_a_long_session_id_outside_the_key_is_kept_without_a_session_link(db: str) -> None:
    """A transcription (keyed by ``id``) naming an 8 kB session: kept, not indexed."""
    data = {"id": "t1", "meetingId": "m", "sessionId": "s" * 8192}
    with Engine.open(db) as engine:
        result = engine.feed({"webhookType": "transcription-started", "data": data})
        assert result.outcome is Outcome.APPLIED
        assert [] == engine.resources(session_id="s" * 8192)
        status = engine.status("transcription", "t1")
        assert status is not None
        assert status.data["sessionId"] == "s" * 8192


# -- a batch the database refuses is fed one payload at a time ---------------------------


class _Refusing:
    """Runs a statement its database refuses in a batch that applies a payload holding
    the poison marker (as ``malformed``, its record is kept)."""

    refusal: str

    def _write(self, conn: Any, batch: Any, results: Sequence[Any], *more: Any) -> Any:
        changed = super()._write(conn, batch, results, *more)  # type: ignore[misc]
        if any(POISON in bytes(r.payload) and r.lifecycle for r in results):
            conn.execute(self.refusal)
        return changed


class RefusingSqlite(_Refusing, SqliteStore):
    refusal = "SELECT zeroblob(2000000000)"  # SQLITE_TOOBIG


class RefusingPostgres(_Refusing, PostgresStore):
    refusal = "SELECT 1/0"  # SQLSTATE 22012, a data exception


def refusing_store(db: str) -> SqliteStore | PostgresStore:
    return RefusingPostgres(db) if db.startswith("postgresql") else RefusingSqlite(db)


def webhooks(n: int) -> list[bytes]:
    return [orjson.dumps(p) for p in stream(5, seed=1)][:n]


def test_the_refusal_is_stored_malformed_and_the_rest_as_usual(db: str) -> None:
    good = webhooks(20)
    poison = orjson.dumps(
        {"webhookType": "recording-started", "data": {"meetingId": "p", "sessionId": "p"}}
    ).replace(b'"p"}', b'"p","note":"' + POISON + b'"}')
    payloads = [*good[:10], poison, *good[10:]]
    with Engine(refusing_store(db)) as engine:
        results = engine.feed_many(payloads)
        seqs = [r.seq for r in results]  # PostgreSQL's sequence skips the failed tries
        assert seqs == sorted(set(seqs))
        assert len(seqs) == len(payloads)
        assert results[10].outcome is Outcome.MALFORMED
        assert str(results[10].reason).startswith("the store cannot keep it as given: StoreRefused")
        expected = Engine().feed_many(good)
        assert [r.outcome for r in expected] == [
            r.outcome for i, r in enumerate(results) if i != 10
        ]
        assert (payloads, seqs) == (
            [r.payload for r in engine.log()],
            [r.seq for r in engine.log()],
        )
        malformed = [a.seq for a in engine.anomalies() if a.outcome is Outcome.MALFORMED]
        assert [seqs[10]] == malformed


def test_an_unavailable_store_is_not_fed_one_by_one(tmp_path: Path) -> None:
    """A store that is unavailable raises for the whole batch: nothing is stored, nothing
    is called malformed, and the same batch goes in whole once the store is back."""
    path = tmp_path / "ro.db"
    good = webhooks(5)
    with Engine.open(str(path)) as engine:
        engine.feed(good[0])
        engine.store._connection().execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
        with pytest.raises(StoreUnavailable, match="readonly"):
            engine.feed_many(good[1:])
        engine.store.close()
        assert [1] == [r.seq for r in engine.log()]
        assert [2, 3, 4, 5] == [r.seq for r in engine.feed_many(good[1:])]


# -- which driver errors are which -------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SELECT zeroblob(2000000000)", StoreRefused),  # TOOBIG
        ("INSERT INTO lifecycle_meta (name, value) VALUES ('x', NULL)", StoreRefused),
        ("PRAGMA query_only = ON; INSERT INTO lifecycle_meta VALUES ('a', 'b')", StoreUnavailable),
    ],
)
def test_sqlite_errors_are_refusals_or_unavailability(
    tmp_path: Path, sql: str, error: type[Exception]
) -> None:
    store = SqliteStore(tmp_path / "e.db")

    def run() -> None:
        with store._transaction(exclusive=True) as conn:
            for statement in sql.split("; "):
                conn.execute(statement)

    with pytest.raises(error):
        run()
    store.close()


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SELECT 1/0", StoreRefused),  # data exception
        # an index row beyond the B-tree limit: program limit exceeded
        (
            "INSERT INTO lifecycle_meta SELECT string_agg(md5(random()::text), ''), 'x' "
            "FROM generate_series(1, 300)",
            StoreRefused,
        ),
        ("SELECT pg_terminate_backend(pg_backend_pid())", StoreUnavailable),
    ],
)
def test_postgresql_errors_are_refusals_or_unavailability(sql: str, error: type[Exception]) -> None:
    url = postgres_or_skip()
    reset_postgres(url)
    store = PostgresStore(url)
    with pytest.raises(error), store._transaction(exclusive=True) as conn:
        conn.execute(sql)
    store.close()


# -- over HTTP: the poison answered 200 malformed, its batch unharmed --------------------


def test_poison_in_a_concurrent_batch_fails_nothing(db: str, serve: Callable[..., Server]) -> None:
    """150 webhooks with two poisons among them, all at once: every answer is 200, the
    poisons ``malformed``; the pages that list the resources answer 200 after."""
    server = serve(db=db)
    good = webhooks(150)
    poison = [nested(300), long_key(8192)]
    bodies = good[:75] + poison + good[75:]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/webhooks", content=b) for b in bodies))

    answers = asyncio.run(send_all())
    assert [200] * len(bodies) == [a.status_code for a in answers], answers[0].text
    assert ["malformed", "malformed"] == [a.json()["outcome"] for a in answers[75:77]]
    assert "malformed" not in [a.json()["outcome"] for a in answers[:75] + answers[77:]]
    with httpx.Client(base_url=server.url) as client:
        for path in ("/resources?limit=1000", "/anomalies?limit=1000"):
            assert 200 == client.get(path).status_code
    server.stop()
    with Engine.open(db) as engine:
        assert sorted(bodies) == sorted(r.payload for r in engine.log())  # type: ignore[type-var]


def test_a_nul_in_a_cycle_id_fails_nothing(db: str) -> None:
    """A recorder's id holding NUL (PostgreSQL keeps no NUL in text, and psycopg refused
    it with a DataError that read as unavailability: 503 for its whole batch, on every
    retry): stored with the others, the id not taken as the cycle's."""
    nul = {
        "webhookType": "recording-starting",
        "data": {"meetingId": "m", "sessionId": "s", "id": "a\x00b"},
    }
    good = webhooks(4)
    with Engine.open(db) as engine:
        results = engine.feed_many([good[0], nul, *good[1:]])
        assert Outcome.MALFORMED not in [r.outcome for r in results]
        assert 5 == len(engine.log())
        status = engine.status("recording", "m", "s")
        assert status is not None
        assert "starting" == status.state
