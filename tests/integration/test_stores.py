"""One engine API, three stores: memory, SQLite and PostgreSQL give the same results."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lifecycle import (
    AFTER_SESSION_END,
    LIFECYCLES,
    SCHEMA_VERSION,
    Engine,
    FeedResult,
    InvalidEvent,
    LifecycleViolation,
    LogPruned,
    Outcome,
    ResourceStatus,
    StoreUnavailable,
    UnknownEvent,
    dump_event,
    parse_event,
)
from lifecycle import strategies as vs
from lifecycle._convert import encode_payload
from lifecycle.stores import open_store
from lifecycle.stores._sql import MIGRATIONS

from support import (
    STORES,
    Clock,
    load_examples,
    postgres_or_skip,
    read_only_folder,
    reset_postgres,
)

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


# -- an independent expectation: the rule computed from the definitions --------------

Ref = tuple[str, tuple[str, ...]]


def forward_paths(lifecycle: str, start: str) -> dict[str, tuple[str, ...]]:
    """The states reachable from ``start`` along forward edges, with the states skipped
    on the shortest path (the definition's order of edges breaks ties)."""
    d = LIFECYCLES[lifecycle].definition
    paths: dict[str, tuple[str, ...]] = {start: ()}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for a, b in d.forward:
            if a == here and b not in paths:
                paths[b] = paths[here] + ((here,) if here != start else ())
                queue.append(b)
    return paths


class Model:
    """What an engine must answer, computed from the lifecycle definitions and
    ``parse_event`` alone: the expectation of the in-memory store, which cannot be its
    own oracle. It follows docs/classification.md: the five rules, the recorder-id rule
    and the ``after_session_end`` warning (no redelivery window)."""

    def __init__(self) -> None:
        self.seq = 0
        self.state: dict[Ref, str] = {}
        self.cycle: dict[Ref, str] = {}
        self.results: list[tuple[Any, ...]] = []

    def feed(self, payload: Any) -> tuple[Any, ...]:
        """The result of ``payload``, as :func:`verdict` reads one."""
        self.seq += 1
        try:
            event = parse_event(payload)
        except InvalidEvent:
            return self._result(Outcome.MALFORMED, None, None, None, None, (), ())
        if isinstance(event, UnknownEvent):
            return self._result(Outcome.UNKNOWN_TYPE, None, None, None, None, (), ())
        data = dump_event(event)["data"]
        lc = LIFECYCLES[event.lifecycle]
        d = lc.definition
        ref = (d.name, tuple(data[f] for f in d.key_fields))
        before, target = self.state.get(ref, "idle"), d.webhooks[event.webhook_type]
        outcome, missing = self._rule(d.name, before, target)
        cycle_id, known = data.get("id"), self.cycle.get(ref)
        if d.restart and isinstance(cycle_id, str) and known is not None:
            late = cycle_id == known if (before, target) in d.restart else cycle_id != known
            if late:
                outcome, missing = Outcome.OUT_OF_ORDER, ()
        warnings = tuple(event.warnings)
        session = (data.get("meetingId"), data.get("sessionId"))
        if (
            d.session_scoped
            and target == lc.entry_state
            and all(isinstance(v, str) for v in session)
            and self.state.get(("session", session)) == "ended"
        ):
            warnings += (AFTER_SESSION_END,)
        changed = outcome in (Outcome.APPLIED, Outcome.GAP)
        if changed:
            self.state[ref] = target
        if d.restart and isinstance(cycle_id, str) and outcome not in LATE_OR_ILLEGAL:
            self.cycle[ref] = cycle_id
        after = target if changed else before
        return self._result(outcome, *ref, before, after, missing, warnings)

    def _rule(self, lifecycle: str, state: str, target: str) -> tuple[Outcome, tuple[str, ...]]:
        d = LIFECYCLES[lifecycle].definition
        if (state, target) in d.forward or (state, target) in d.restart:
            return Outcome.APPLIED, ()
        if state == target:
            return Outcome.DUPLICATE, ()
        ahead = forward_paths(lifecycle, state)
        if target in ahead:
            return Outcome.GAP, ahead[target]
        if state in forward_paths(lifecycle, target):
            return Outcome.OUT_OF_ORDER, ()
        return Outcome.ILLEGAL, ()

    def _result(self, outcome: Outcome, *rest: Any) -> tuple[Any, ...]:
        result = (self.seq, outcome, *rest)
        self.results.append(result)
        return result

    def states(self) -> list[tuple[str, tuple[str, ...], str]]:
        """Every resource's lifecycle, key and state, in the engine's order."""
        order = list(LIFECYCLES)
        first = {ref: i for i, ref in enumerate(self.state)}  # dicts keep first insertion
        refs = sorted(self.state, key=lambda ref: (order.index(ref[0]), first[ref]))
        return [(name, key, self.state[(name, key)]) for name, key in refs]

    def anomalies(self) -> list[tuple[Any, ...]]:
        """The results that are not a clean ``applied``, as :func:`verdict` reads them."""
        return [r for r in self.results if r[1] is not Outcome.APPLIED or r[-1]]


LATE_OR_ILLEGAL = (Outcome.OUT_OF_ORDER, Outcome.ILLEGAL)


def verdict(r: FeedResult) -> tuple[Any, ...]:
    """What the model predicts of a result: its summary without type, reason or clock."""
    return (r.seq, r.outcome, r.lifecycle, r.key, r.before, r.after, r.missing, r.warnings)


# -- streams that reach every corner of the rule ------------------------------------

RECORDERS: dict[str, dict[str, str]] = {
    "recording": MEETING,
    "participant-track-recording": {**MEETING, "participantId": "p1", "kind": "video"},
    "participant-recording": {**MEETING, "participantId": "p1"},
    "livestream": MEETING,
    "hls": MEETING,
}
"""The recorders of the meeting: lifecycles that restart, each cycle with its own id."""


@st.composite
def interleavings(draw: st.DrawFn, parts: list[list[Any]]) -> list[Any]:
    """The items of ``parts`` in one list, each part's in its own order."""
    pending = [list(p) for p in parts if p]
    out = []
    while pending:
        i = draw(st.integers(0, len(pending) - 1))
        out.append(pending[i].pop(0))
        if not pending[i]:
            pending.pop(i)
    return out


@st.composite
def recorder_cycles(draw: st.DrawFn, name: str) -> list[dict[str, Any]]:
    """One recorder of the meeting, cycle after cycle: each walks forward from its start to
    a final state (the last one may stop anywhere), some webhooks of its middle missing.
    Each cycle has an id, sometimes the one of the cycle before (a late redelivery of a
    whole cycle), or none has."""
    d = LIFECYCLES[name].definition
    ahead = {s: [b for a, b in d.forward if a == s] for s in d.states}
    types = {s: sorted(w for w, t in d.webhooks.items() if t == s) for s in d.states}
    with_ids = draw(st.booleans())
    cycles = draw(st.integers(2, 5))
    out: list[dict[str, Any]] = []
    cycle_id = f"{name}-0"
    for n in range(cycles):
        if n and draw(st.integers(0, 3)) > 0:
            cycle_id = f"{name}-{n}"
        state = "idle"
        while ahead[state]:
            state, entered = draw(st.sampled_from(ahead[state])), state == "idle"
            if not entered and ahead[state] and draw(st.integers(0, 4)) == 0:
                continue  # a webhook of the middle of a cycle that never comes
            payload = draw(vs.payloads(draw(st.sampled_from(types[state])), RECORDERS[name]))
            if with_ids:
                payload["data"]["id"] = cycle_id
            out.append(payload)
            if n == cycles - 1 and draw(st.integers(0, 4)) == 0:
                break
    return out


@st.composite
def rich_streams(draw: st.DrawFn) -> list[Any]:
    """A meeting session with recorders that restart and participants that rejoin, its
    end anywhere, the whole perturbed (lost, redelivered, reordered events) and mixed
    with :func:`lifecycle.strategies.streams` (garbage, other sessions) half the time."""
    names = draw(st.lists(st.sampled_from(sorted(RECORDERS)), min_size=2, max_size=3, unique=True))
    walks = [draw(recorder_cycles(name)) for name in names]
    for i in range(draw(st.integers(0, 2))):
        who = {**MEETING, "participantId": f"p{i}"}
        walks.append(draw(vs.lifecycle_events("participant", who)))
    body = draw(interleavings(walks))
    end = draw(st.integers(0, len(body)))
    ended = [draw(vs.payloads("session-ended", MEETING))] if draw(st.booleans()) else []
    session = [draw(vs.payloads("session-started", MEETING)), *body[:end], *ended, *body[end:]]
    noise = draw(vs.streams()) if draw(st.booleans()) else []
    lossy = draw(st.booleans())  # perturbed() may lose most of a stream: not always
    return draw(interleavings([draw(vs.perturbed(st.just(session), drop=lossy)), noise]))


SIZES = ((10, "<10"), (20, "10-19"), (40, "20-39"), (sys.maxsize, "40+"))


def label(results: list[FeedResult]) -> None:
    """Tell hypothesis what a stream reached (``--hypothesis-show-statistics``)."""
    size = len(results)
    event(f"events: {next(b for n, b in SIZES if size < n)}")
    reached = set()
    for r in results:
        if r.lifecycle is None or r.before is None or r.webhook_type is None:
            continue
        cell = LIFECYCLES[r.lifecycle].table[r.before][r.webhook_type]
        if r.outcome is Outcome.ILLEGAL:
            reached.add("illegal")
        if r.outcome is Outcome.GAP and r.before != "idle":
            reached.add("gap from a non-idle state")
        if cell.restart and r.changed and isinstance(r.data.get("id"), str):
            reached.add("restart with an id")
        if r.outcome is Outcome.OUT_OF_ORDER and cell.outcome is not Outcome.OUT_OF_ORDER:
            reached.add(
                "start repeating the finished cycle's id"
                if cell.restart
                else "late event of an earlier cycle (by id)"
            )
        if AFTER_SESSION_END in r.warnings:
            reached.add("after_session_end")
    for name in sorted(reached):
        event(name)


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
    """The 41 examples give, on every store, the rule's results and states, and the
    in-memory engine's to the letter."""
    engine, memory, model = make(clock=lambda: 5.0), Engine(clock=lambda: 5.0), Model()
    for p in load_examples():
        result = engine.feed(p)
        assert model.feed(p) == verdict(result)
        assert summary(memory.feed(p)) == summary(result)
    assert model.states() == states(engine)
    assert model.anomalies() == [verdict(a) for a in engine.anomalies()]
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
@given(stream=rich_streams())
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_stream_gives_the_same_results_on_every_store(
    store_url: str | None, stream: list[Any]
) -> None:
    """For any stream, the store gives the rule's outcomes and final states, and the
    in-memory engine's results to the letter."""
    model, memory = Model(), Engine(clock=lambda: 1.0)
    with fresh(store_url, clock=lambda: 1.0) as engine:
        results = [engine.feed(p) for p in stream]
        label(results)
        assert [model.feed(p) for p in stream] == [verdict(r) for r in results]
        assert model.states() == states(engine)
        assert [summary(memory.feed(p)) for p in stream] == [summary(r) for r in results]
        assert states(memory) == states(engine)
        assert [] == engine.rebuild()


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


@across
@pytest.mark.parametrize("lifecycle", sorted(RECORDERS))
def test_a_restart_with_a_new_id_survives_reopening(
    make: Callable[..., Engine], store_url: str | None, lifecycle: str
) -> None:
    """A recorder restarted with a new id: the old cycle's late events and a repeat of its
    start are out of order, the data starts afresh, before and after the store reopens."""
    ids = RECORDERS[lifecycle]
    key = tuple(ids.values())

    def feed(step: str, cycle: str, **data: str) -> tuple[Outcome, str | None]:
        r = engine.feed(
            {"webhookType": f"{lifecycle}-{step}", "data": {**ids, "id": cycle, **data}}
        )
        return r.outcome, r.after

    def reopened() -> Engine:
        """The engine on the same store, closed and opened again (in memory: the same)."""
        if store_url is None:
            return engine
        engine.close()
        return make(clock=clock)

    clock = Clock(tick=1.0)
    engine = make(clock=clock)
    applied, late = Outcome.APPLIED, Outcome.OUT_OF_ORDER
    assert [
        (applied, "starting"),
        (applied, "started"),
        (applied, "stopping"),
        (applied, "stopped"),
    ] == [
        feed("starting", "a"),
        feed("started", "a", note="first"),
        feed("stopping", "a"),
        feed("stopped", "a", url="a.mp4"),
    ]
    stopped_at = engine.events_fed
    engine = reopened()
    assert (late, "stopped") == feed("starting", "a")  # the finished cycle's start, again
    assert (applied, "starting") == feed("starting", "b")  # a new cycle
    engine = reopened()
    old = [feed(step, "a") for step in ("started", "stopping", "stopped", "failed", "starting")]
    assert [(late, "starting")] * 5 == old
    assert (applied, "started") == feed("started", "b")
    engine = reopened()
    assert (late, "started") == feed("stopped", "a")
    status = engine.status(lifecycle, *key)
    assert status is not None
    assert ("started", {**ids, "id": "b"}) == (status.state, dict(status.data))
    then = engine.status(lifecycle, *key, at=stopped_at)
    assert then is not None
    assert ("stopped", {**ids, "id": "a", "note": "first", "url": "a.mp4"}) == (
        then.state,
        dict(then.data),
    )
    assert [] == engine.rebuild()
    assert [
        (applied, "stopping"),
        (applied, "stopped"),
        (late, "stopped"),
        (applied, "starting"),
    ] == [
        feed("stopping", "b"),
        feed("stopped", "b"),
        feed("starting", "b"),
        feed("starting", "c"),
    ]
    engine = reopened()
    assert (late, "starting") == feed("started", "b")
    assert [] == engine.rebuild()


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_reopening_keeps_everything(make: Callable[..., Engine], store_url: str) -> None:
    """applied store closed and opened again has every event and state."""
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
    """applied database of schema version 1 with data opens, migrated, its data intact."""
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


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_read_only_opening_reads_what_was_written(store_url: str | None) -> None:
    """open_store(url, read_only=True) reads a filled database (memory opens as usual);
    a read-only SQLite or PostgreSQL store refuses to write, and a read-only SQLite store
    leaves no file behind."""
    url = store_url or "memory://"
    with closing(Engine.open(url)) as writer:
        writer.feed_many(load_examples())
        expected = (states(writer), [summary(a) for a in writer.anomalies()])
    files = sorted(Path(urlsplit(url).path[1:]).parent.iterdir()) if "sqlite" in url else []
    with closing(Engine(open_store(url, read_only=True))) as reader:
        if url != "memory://":
            assert expected == (states(reader), [summary(a) for a in reader.anomalies()])
        if url != "memory://":
            with pytest.raises(StoreUnavailable, match=r"readonly|read-only"):
                reader.feed(load_examples()[0])
    if "sqlite" in url:
        assert files == sorted(Path(urlsplit(url).path[1:]).parent.iterdir())


def test_read_only_opening_refuses_a_missing_or_older_sqlite_file(tmp_path: Path) -> None:
    """A missing file is an error naming it, and is not created; a database of another
    schema version is an error, and is not migrated."""
    with pytest.raises(StoreUnavailable, match=r"database .*missing\.db does not exist"):
        open_store(tmp_path / "missing.db", read_only=True)
    assert [] == list(tmp_path.iterdir())
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    conn.execute("CREATE TABLE lifecycle_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO lifecycle_meta VALUES ('schema_version', '1')")
    conn.close()
    content = old.read_bytes()
    with pytest.raises(StoreUnavailable, match="schema version 1, this release reads"):
        open_store(f"sqlite:///{old}", read_only=True)
    assert (content, [old]) == (old.read_bytes(), list(tmp_path.iterdir()))


READ = (
    "import sys\n"
    "from lifecycle import Engine\n"
    "from lifecycle.stores import open_store\n"
    "engine = Engine(open_store(sys.argv[1], read_only=True))\n"
    "print(engine.events_fed, len(engine.resources()))\n"
)


def read_as(prefix: list[str], folder: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-c", READ, str(path)],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_read_only_opening_in_a_folder_one_may_not_write() -> None:
    """In a folder the reader may not write: a closed WAL database is read (no -shm
    can be made), one a writer holds open is read with the writer's last commit, and a
    missing one is an error saying so."""
    with read_only_folder() as (folder, prefix):
        path = folder / "lifecycle.db"
        with closing(Engine.open(path)) as engine:
            engine.feed_many(load_examples())
        path.chmod(0o444 if not prefix else 0o644)
        if not prefix:
            folder.chmod(0o555)
        assert ("41 11\n", "") == (read_as(prefix, folder, path).stdout, "")
        missing = read_as(prefix, folder, folder / "missing.db")
        assert "database" in missing.stderr
        assert "missing.db does not exist" in missing.stderr
        if prefix:  # only root may still write here: a writer holding the file open
            path.chmod(0o644)
            with closing(Engine.open(path)) as writer:
                writer.feed(load_examples()[0])
                assert Path(f"{path}-shm").exists()
                result = read_as(prefix, folder, path)
                assert ("42 11\n", "") == (result.stdout, result.stderr)


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
@given(stream=rich_streams(), size=st.integers(1, 7))
@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_pages_put_together_give_the_whole_list(
    store_url: str | None,
    stream: list[Any],
    size: int,
) -> None:
    """Paging resources (limit, offset) and anomalies (after, limit) loses and repeats none."""
    with fresh(store_url, clock=Clock(tick=1.0)) as engine:
        label(engine.feed_many(stream))
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
def test_a_redelivery_within_one_batch_is_caught(make: Callable[..., Engine]) -> None:
    """The window holds inside a batch too: a body fed twice in one feed_many is a
    redelivery the second time, as it is when fed in two calls."""
    engine = make(clock=Clock(tick=1.0), redelivery_window=10)
    joined, left = (orjson.dumps(p) for p in REJOIN)
    batch = engine.feed_many([joined, left, joined])
    assert [(r.outcome, r.warnings) for r in batch] == [
        (Outcome.APPLIED, ()),
        (Outcome.APPLIED, ()),
        (Outcome.DUPLICATE, ("redelivery",)),
    ]
    assert engine.status("participant", "m1", "s1", "p1").state == "left"  # type: ignore[union-attr]
    assert engine.rebuild() == []


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
@given(stream=rich_streams())
@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_redeliveries_change_nothing(store_url: str | None, stream: list[Any]) -> None:
    """With a window over the whole stream, every repeated body changes nothing.

    The stream, each payload fed twice, ends in the states of the stream with every
    body seen before left out; each left-out copy is a duplicate flagged redelivery.
    """
    once, seen, firsts = Engine(clock=lambda: 7.0), set(), []
    with fresh(store_url, clock=lambda: 7.0, redelivery_window=5) as twice:
        for p in stream:
            body = encode_payload(p)[0]
            results = [twice.feed(p), twice.feed(p)]
            if body not in seen:
                seen.add(body)
                firsts.append(once.feed(p))
                assert summary(firsts[-1])[1:] == summary(results.pop(0))[1:]
            for again in results:
                if again.lifecycle is not None:
                    assert again.outcome is Outcome.DUPLICATE
                    assert again.before == again.after
                    assert again.warnings[-1] == "redelivery"
        label(firsts)
        assert states(once) == states(twice)
        assert [] == twice.rebuild()


@contextmanager
def fresh(store_url: str | None, **options: Any) -> Iterator[Engine]:
    """A new, empty engine of the store under test (one per hypothesis example): the
    SQLite file of the test removed first, the PostgreSQL tables dropped."""
    if store_url is None:
        engine = Engine(**options)
    else:
        if store_url.startswith("sqlite"):
            path = Path(store_url.removeprefix("sqlite:///"))
            for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                name.unlink(missing_ok=True)
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


def test_engine_open_read_only_reads_and_never_writes(tmp_path: Path) -> None:
    """Engine.open(read_only=True) reads what was written; a write raises and changes
    nothing; a missing file is not created."""
    path = tmp_path / "ro.db"
    with Engine.open(str(path)) as engine:
        engine.feed_many(load_examples()[:5])
    with Engine.open(str(path), read_only=True) as reader:
        assert 5 == reader.events_fed
        with pytest.raises(StoreUnavailable):
            reader.feed(load_examples()[5])
        assert 5 == reader.events_fed
    with pytest.raises(StoreUnavailable, match="does not exist"):
        Engine.open(str(tmp_path / "missing.db"), read_only=True)
    assert not (tmp_path / "missing.db").exists()


def test_read_only_postgresql_neither_creates_nor_migrates() -> None:
    """An empty PostgreSQL database opened read-only: an error naming what is missing,
    and no table made (the queries of status and anomalies created the schema)."""
    url = postgres_or_skip()
    reset_postgres(url)
    with pytest.raises(StoreUnavailable, match="no lifecycle tables"):
        open_store(url, read_only=True)
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('lifecycle_meta')").fetchone() == (None,)
