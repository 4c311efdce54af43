"""One engine API, three stores: memory, SQLite and PostgreSQL give the same results."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle import (
    SCHEMA_VERSION,
    Engine,
    FeedResult,
    LifecycleViolation,
    LogPruned,
    Outcome,
    ResourceStatus,
    StoreUnavailable,
)
from lifecycle import strategies as vs
from lifecycle._convert import encode_payload
from lifecycle.stores._sql import MIGRATIONS

from support import STORES, Clock, load_examples, postgres_or_skip, reset_postgres

MEETING = {"meetingId": "m1", "sessionId": "s1"}


def summary(r: FeedResult) -> tuple[Any, ...]:
    """What a result says, without its clock time."""
    return (
        r.seq,
        r.outcome,
        r.lifecycle,
        r.key,
        r.webhook_type,
        r.before,
        r.after,
        r.missing,
        r.warnings,
        r.reason,
    )


def states(engine: Engine) -> list[tuple[str, tuple[str, ...], str]]:
    """Every resource's lifecycle, key and state, in the engine's order."""
    return [(r.lifecycle, r.key, r.state) for r in engine.resources()]


@pytest.fixture
def make(store_url: str | None) -> Iterator[Callable[..., Engine]]:
    """Open engines on the store under test (closed afterwards)."""
    opened: list[Engine] = []

    def factory(**options: Any) -> Engine:
        engine = Engine(**options) if store_url is None else Engine.open(store_url, **options)
        opened.append(engine)
        return engine

    yield factory
    for engine in opened:
        engine.close()


across = pytest.mark.parametrize("store_url", STORES, indirect=True)


@across
def test_examples_give_the_same_results_as_in_memory(make: Callable[..., Engine]) -> None:
    """The 41 examples give, on every store, the in-memory engine's results and states."""
    engine, memory = make(clock=lambda: 5.0), Engine(clock=lambda: 5.0)
    for p in load_examples():
        assert summary(memory.feed(p)) == summary(engine.feed(p))
    assert states(memory) == states(engine)
    assert [summary(a) for a in memory.anomalies()] == [summary(a) for a in engine.anomalies()]
    assert memory.events_fed == engine.events_fed
    assert len(memory) == len(engine)


@across
def test_status_data_and_history(make: Callable[..., Engine]) -> None:
    """Status carries the merged data, entry time and the history with outcomes."""
    clock = Clock(tick=1.0)
    engine = make(clock=clock)
    engine.feed({"webhookType": "recording-starting", "data": MEETING})
    engine.feed({"webhookType": "recording-stopped", "data": {**MEETING, "fileUrl": "u"}})
    engine.feed({"webhookType": "recording-started", "data": MEETING})
    status = engine.status("recording", meeting_id="m1", session_id="s1")
    assert status is not None
    assert "stopped" == status.state
    assert {**MEETING, "fileUrl": "u"} == dict(status.data)
    assert datetime.fromtimestamp(clock.now - 1, UTC) == status.entered_at
    assert [
        (1, "recording-starting", Outcome.APPLIED),
        (2, "recording-stopped", Outcome.GAP),
        (3, "recording-started", Outcome.OUT_OF_ORDER),
    ] == [(h.seq, h.webhook_type, h.outcome) for h in status.history]
    assert status == engine.status("recording", "m1", "s1")
    assert engine.status("recording", "m1", "nope") is None


@across
def test_filters(make: Callable[..., Engine]) -> None:
    """resources() and anomalies() filter by lifecycle, meeting, session, state, outcome."""
    engine = make()
    other = {"meetingId": "m2", "sessionId": "s2"}
    engine.feed({"webhookType": "recording-starting", "data": MEETING})
    engine.feed({"webhookType": "hls-started", "data": MEETING})
    engine.feed({"webhookType": "recording-starting", "data": other})
    engine.feed({"webhookType": "transcription-started", "data": {"id": "t1", **other}})
    engine.feed(b"not json")
    assert [("recording", ("m1", "s1")), ("recording", ("m2", "s2"))] == [
        (r.lifecycle, r.key) for r in engine.resources(lifecycle="recording")
    ]
    assert {"recording", "transcription"} == {
        r.lifecycle for r in engine.resources(session_id="s2")
    }
    assert [("hls", "started")] == [
        (r.lifecycle, r.state) for r in engine.resources(meeting_id="m1", state="started")
    ]
    assert [Outcome.GAP, Outcome.MALFORMED] == [a.outcome for a in engine.anomalies()]
    assert [b"not json"] == [a.payload for a in engine.anomalies(outcome="malformed")]
    assert ["hls"] == [a.lifecycle for a in engine.anomalies(meeting_id="m1")]
    assert [] == engine.anomalies(lifecycle="transcription")


@across
def test_payloads_are_kept_as_they_came(make: Callable[..., Engine]) -> None:
    """Malformed and unknown payloads are kept with their reason, bytes as bytes."""
    engine = make()
    raw = b'{"webhookType": "recording-started", "data": {"meetingId": 7}}'
    engine.feed(raw)
    engine.feed('{"webhookType": "sip-call-started", "data": {}}')
    engine.feed([1, 2])  # type: ignore[arg-type]
    bad, unknown, odd = engine.anomalies()
    assert (Outcome.MALFORMED, raw) == (bad.outcome, bad.payload)
    assert "data.meetingId" in (bad.reason or "")
    assert (Outcome.UNKNOWN_TYPE, '{"webhookType": "sip-call-started", "data": {}}') == (
        unknown.outcome,
        unknown.payload,
    )
    assert Outcome.MALFORMED == odd.outcome
    assert "payload must be a mapping" in (odd.reason or "")


@across
def test_strict_changes_nothing(make: Callable[..., Engine]) -> None:
    """A strict engine raises for a gap and stores nothing of it."""
    engine = make(strict=True)
    engine.feed({"webhookType": "recording-starting", "data": MEETING})
    with pytest.raises(LifecycleViolation) as raised:
        engine.feed({"webhookType": "recording-stopped", "data": MEETING})
    assert Outcome.GAP == raised.value.result.outcome
    assert 1 == engine.events_fed
    assert [("recording", ("m1", "s1"), "starting")] == states(engine)
    assert [] == engine.anomalies()


@across
def test_feed_many_equals_feed(make: Callable[..., Engine]) -> None:
    """A batch gives the results of feeding its payloads one by one."""
    batch = make(clock=lambda: 1.0)
    one = Engine(clock=lambda: 1.0)
    payloads: list[Any] = [*load_examples(), b"{", *load_examples()[:5]]
    assert [summary(one.feed(p)) for p in payloads] == [
        summary(r) for r in batch.feed_many(payloads)
    ]
    assert states(one) == states(batch)


@across
def test_subscribers_hear_changes(make: Callable[..., Engine]) -> None:
    """Subscribers are called after each change of state, filtered as asked."""
    engine = make()
    heard: list[tuple[str | None, str | None]] = []
    engine.subscribe(lambda r: heard.append((r.webhook_type, r.after)), lifecycle="recording")
    engine.feed({"webhookType": "recording-starting", "data": MEETING})
    engine.feed({"webhookType": "recording-starting", "data": MEETING})
    engine.feed({"webhookType": "hls-starting", "data": MEETING})
    assert [("recording-starting", "starting")] == heard


@across
@given(stream=vs.streams())
@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_stream_gives_the_same_results_on_every_store(
    store_url: str | None, stream: list[Any]
) -> None:
    """For any stream, the store gives the in-memory engine's outcomes and final states."""
    if store_url is None:
        engine = Engine(clock=lambda: 1.0)
    elif store_url.startswith("sqlite"):
        engine = Engine.open("sqlite://", clock=lambda: 1.0)
    else:
        reset_postgres(store_url)
        engine = Engine.open(store_url, clock=lambda: 1.0)
    memory = Engine(clock=lambda: 1.0)
    try:
        assert [summary(memory.feed(p)) for p in stream] == [
            summary(engine.feed(p)) for p in stream
        ]
        assert states(memory) == states(engine)
    finally:
        engine.close()


@across
def test_the_log_answers_for_the_past(make: Callable[..., Engine]) -> None:
    """status(at=) replays the log; rebuild() agrees; prune keeps the final state."""
    clock = Clock(tick=1.0)
    engine = make(clock=clock)
    for step in ("starting", "started", "stopping", "stopped"):
        engine.feed({"webhookType": f"hls-{step}", "data": MEETING})
    at_two = engine.status("hls", "m1", "s1", at=2)
    assert at_two is not None
    assert ("started", 2) == (at_two.state, len(at_two.history))
    when = datetime.fromtimestamp(clock.now - 1.5, UTC)  # between events 2 and 3
    assert "started" == getattr(engine.status("hls", "m1", "s1", at=when), "state", None)
    assert engine.status("hls", "m1", "s1", at=0) is None
    assert [] == engine.rebuild()
    assert 4 == engine.prune(before=clock.now + 10)
    assert "stopped" == getattr(engine.status("hls", "m1", "s1"), "state", None)
    assert [] == engine.rebuild()
    engine.feed({"webhookType": "hls-starting", "data": MEETING})  # a new cycle after pruning
    assert [] == engine.rebuild()
    assert "starting" == getattr(engine.status("hls", "m1", "s1"), "state", None)
    with pytest.raises(LogPruned, match="pruned"):
        engine.status("hls", "m1", "s1", at=2)


@across
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_history_is_the_last_history_limit_events(make: Callable[..., Engine], limit: int) -> None:
    """A status's history holds exactly its resource's last ``history_limit`` events,
    in status, resources() and status(at=), however many other resources have events."""
    engine = make(history_limit=limit, clock=Clock(tick=1.0))
    other = {"meetingId": "m2", "sessionId": "s2"}
    mine, theirs = [], []
    for step in ("starting", "started", "stopping", "stopped", "started", "failed"):
        mine.append(engine.feed({"webhookType": f"recording-{step}", "data": MEETING}).seq)
        theirs.append(engine.feed({"webhookType": f"recording-{step}", "data": other}).seq)
    once = engine.feed({"webhookType": "hls-starting", "data": MEETING}).seq

    def seqs(status: ResourceStatus | None) -> list[int]:
        assert status is not None
        return [h.seq for h in status.history]

    assert mine[-limit:] == seqs(engine.status("recording", "m1", "s1"))
    assert [mine[-limit:], theirs[-limit:], [once]] == [
        seqs(s) for s in engine.resources(lifecycle="recording") + engine.resources(lifecycle="hls")
    ]
    assert mine[:3][-limit:] == seqs(engine.status("recording", "m1", "s1", at=mine[2]))


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_reopening_keeps_everything(make: Callable[..., Engine], store_url: str) -> None:
    """A store closed and opened again has every event and state."""
    engine = make()
    for p in load_examples():
        engine.feed(p)
    before = (states(engine), [summary(a) for a in engine.anomalies()], engine.events_fed)
    engine.close()
    again = Engine.open(store_url)
    try:
        after = (states(again), [summary(a) for a in again.anomalies()], again.events_fed)
        assert before == after
        assert 42 == again.feed(load_examples()[0]).seq
    finally:
        again.close()


# -- store specific ------------------------------------------------------------------


def test_an_older_database_is_migrated(tmp_path: Path) -> None:
    """A database of schema version 1 with data opens, migrated, its data intact."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE lifecycle_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO lifecycle_meta VALUES ('schema_version', '1')")
    for step in MIGRATIONS[0][1]:  # version 1 as it was released, in SQLite's words
        if isinstance(step, str):
            conn.execute(step.format(blob="BLOB", real="REAL", bigint="INTEGER"))
    conn.execute(
        "INSERT INTO events (seq, received_at, payload, payload_kind, outcome, lifecycle, "
        "resource_key, webhook_type, before_state, after_state, missing, warnings, reason) "
        "VALUES (1, 10.0, ?, 'bytes', 'gap', 'recording', '[\"m1\",\"s1\"]', "
        "'recording-started', 'idle', 'started', '[\"starting\"]', '[]', NULL)",
        (b'{"webhookType":"recording-started","data":{"meetingId":"m1","sessionId":"s1"}}',),
    )
    conn.execute(
        "INSERT INTO resources (lifecycle, resource_key, state, entered_at, data, cycle_id, "
        "first_seq, last_seq) VALUES ('recording', '[\"m1\",\"s1\"]', 'started', 10.0, "
        '\'{"meetingId":"m1","sessionId":"s1"}\', NULL, 1, 1)'
    )
    conn.close()
    engine = Engine.open(path)
    try:
        assert [Outcome.GAP] == [a.outcome for a in engine.anomalies(meeting_id="m1")]
        assert ["recording"] == [r.lifecycle for r in engine.resources(session_id="s1")]
        assert [] == engine.rebuild()
        version = (
            sqlite3.connect(path)
            .execute("SELECT value FROM lifecycle_meta WHERE name = 'schema_version'")
            .fetchone()
        )
        assert (str(SCHEMA_VERSION),) == version
    finally:
        engine.close()


def test_bad_urls_are_named(tmp_path: Path) -> None:
    """Unsupported schemes and missing folders get an error naming them."""
    with pytest.raises(ValueError, match="unsupported database URL 'mysql://x'"):
        Engine.open("mysql://x")
    with pytest.raises(StoreUnavailable, match="does not exist"):
        Engine.open(tmp_path / "no" / "such" / "dir.db")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgres_is_reachable_in_ci(store_url: str) -> None:
    """The PostgreSQL tests really run where a server is configured."""
    assert store_url == postgres_or_skip()


@across
def test_mappings_with_values_json_lacks(make: Callable[..., Engine]) -> None:
    """A mapping payload holding a Decimal or a set is fed, stored and rebuilt like JSON."""
    engine = make()
    payload = {
        "webhookType": "recording-stopped",
        "tags": {"x"},
        "data": {**MEETING, "fileUrl": "u", "size": Decimal("1.5")},
    }
    result = engine.feed(payload)
    assert (Outcome.GAP, "stopped") == (result.outcome, result.after)
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert "u" == status.data["fileUrl"]
    assert [] == engine.rebuild()  # every engine keeps a log: replayed as it was fed
    assert "stopped" == getattr(engine.status("recording", "m1", "s1", at=1), "state", None)


@across
@given(stream=vs.streams(), size=st.integers(1, 7))
@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_pages_put_together_give_the_whole_list(
    store_url: str | None,
    stream: list[Any],
    size: int,
) -> None:
    """Paging resources (limit, offset) and anomalies (after, limit) loses and repeats none."""
    with fresh(store_url, clock=Clock(tick=1.0)) as engine:
        engine.feed_many(stream)
        check_pages(engine, size)


def check_pages(engine: Engine, size: int) -> None:
    whole = [(s.lifecycle, s.key) for s in engine.resources()]
    pages = [
        [(s.lifecycle, s.key) for s in engine.resources(limit=size, offset=o)]
        for o in range(0, len(whole) + size, size)
    ]
    assert whole == [k for page in pages for k in page]
    assert all(len(p) <= size for p in pages)
    anomalies, after = [], 0
    while page := engine.anomalies(after=after, limit=size):
        anomalies += [a.seq for a in page]
        after = page[-1].seq
    assert [a.seq for a in engine.anomalies()] == anomalies
    counted = Counter((s.lifecycle, s.state) for s in engine.resources())
    assert counted == Counter(
        {(lc, state): n for lc, per in engine.state_counts().items() for state, n in per.items()}
    )


@across
def test_page_arguments_are_checked(make: Callable[..., Engine]) -> None:
    """A negative limit, offset or after is a ValueError naming it."""
    engine = make()
    with pytest.raises(ValueError, match="limit"):
        engine.resources(limit=-1)
    with pytest.raises(ValueError, match="offset"):
        engine.resources(offset=-2)
    with pytest.raises(ValueError, match="after"):
        engine.anomalies(after=-1)


REJOIN = [
    {"webhookType": "participant-joined", "data": {**MEETING, "participantId": "p1"}},
    {"webhookType": "participant-left", "data": {**MEETING, "participantId": "p1"}},
]


@across
def test_redelivery_window(make: Callable[..., Engine], store_url: str | None) -> None:
    """A byte-identical body within the window is a redelivery: a duplicate changing nothing."""
    clock = Clock(tick=1.0)  # one second a feed
    engine = make(clock=clock, redelivery_window=10)
    joined, left = (orjson.dumps(p) for p in REJOIN)
    engine.feed(joined)
    engine.feed(left)
    again = engine.feed(joined)  # a retry of the join, 2 s later
    assert (again.outcome, again.before, again.after) == (Outcome.DUPLICATE, "left", "left")
    assert again.warnings == ("redelivery",)
    assert engine.status("participant", "m1", "s1", "p1").state == "left"  # type: ignore[union-attr]
    clock.now += 60  # a genuine rejoin, out of the window, is applied
    assert engine.feed(joined).outcome is Outcome.APPLIED
    assert [a.seq for a in engine.anomalies()] == [again.seq]
    if store_url is not None:
        assert engine.rebuild() == []  # a replay of the log records it the same way
        assert engine.status("participant", "m1", "s1", "p1", at=3).state == "left"  # type: ignore[union-attr]


@across
def test_without_a_window_an_identical_body_is_classified_as_usual(
    make: Callable[..., Engine],
) -> None:
    """Off by default: the same join after a leave is a rejoin."""
    engine = make(clock=Clock(tick=1.0))
    results = engine.feed_many([orjson.dumps(p) for p in [*REJOIN, REJOIN[0]]])
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 3
    with pytest.raises(ValueError, match="redelivery_window"):
        Engine(redelivery_window=0)


@across
@given(stream=vs.streams())
@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_redeliveries_change_nothing(store_url: str | None, stream: list[Any]) -> None:
    """With a window over the whole stream, every repeated body changes nothing.

    The stream, each payload fed twice, ends in the states of the stream with every
    body seen before left out; each left-out copy is a duplicate flagged redelivery.
    """
    once, seen = Engine(clock=lambda: 7.0), set()
    with fresh(store_url, clock=lambda: 7.0, redelivery_window=5) as twice:
        for p in stream:
            body = encode_payload(p)[0]
            results = [twice.feed(p), twice.feed(p)]
            if body not in seen:
                seen.add(body)
                assert summary(once.feed(p))[1:] == summary(results.pop(0))[1:]
            for again in results:
                if again.lifecycle is not None:
                    assert again.outcome is Outcome.DUPLICATE
                    assert again.before == again.after
                    assert again.warnings[-1] == "redelivery"
        assert states(once) == states(twice)
        if store_url is not None:
            assert twice.rebuild() == []


@contextmanager
def fresh(store_url: str | None, **options: Any) -> Iterator[Engine]:
    """A new, empty engine of the store under test (one per hypothesis example)."""
    if store_url is None:
        engine = Engine(**options)
    elif store_url.startswith("sqlite"):
        engine = Engine.open("sqlite://", **options)
    else:
        reset_postgres(store_url)
        engine = Engine.open(store_url, **options)
    try:
        yield engine
    finally:
        engine.close()


@across
def test_nul_characters_never_reach_the_database(make: Callable[..., Engine]) -> None:
    """NUL in a key field or a type is malformed; in other fields or filters it is harmless."""
    engine = make()
    outcomes = [
        engine.feed(b).outcome.value
        for b in [
            b'{"webhookType":"session-started","data":{"meetingId":"a\\u0000","sessionId":"s"}}',
            b'{"webhookType":"nul\\u0000type","data":{"meetingId":"a\\u0000"}}',
            b'{"webhookType":"sip-call","data":{"meetingId":"a\\u0000","sessionId":"\\u0000"}}',
            b'{"webhookType":"session-started","data":{"meetingId":"a","sessionId":"s","x":"\\u0000"}}',
        ]
    ]
    assert ["malformed", "malformed", "unknown_type", "applied"] == outcomes
    assert "NUL" in (engine.anomalies()[0].reason or "")
    assert [] == engine.resources(meeting_id="a\x00")
    assert [] == engine.anomalies(session_id="\x00")
    assert "\x00" == engine.status("session", "a", "s").data["x"]  # type: ignore[union-attr]
