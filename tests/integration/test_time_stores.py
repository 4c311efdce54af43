"""Overdue resources and reconciliation give the same answers on every store, and
survive reopening the database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle import RECONCILED, Engine, Outcome, ResourceStatus
from lifecycle import strategies as vs
from lifecycle.reconcile import Answer

from support import (
    STORES,
    Clock,
    Step,
    database_urls,
    fed_and_swept,
    postgres_or_skip,
    reset_postgres,
    run,
)

IDS = {"meetingId": "m1", "sessionId": "s1"}


def hook(webhook_type: str, **data: Any) -> dict[str, Any]:
    return {"webhookType": webhook_type, "data": {**IDS, **data}}


def open_engine(url: str | None, clock: Clock) -> Engine:
    return Engine(clock=clock) if url is None else Engine.open(url, clock=clock)


def summary(engine: Engine, now: float) -> list[tuple[Any, ...]]:
    return [
        (o.deadline, o.seconds, o.due_at, o.status.lifecycle, o.status.key, o.status.state)
        for o in engine.overdue(now)
    ]


class Stopper:
    """Answers that every recording stopped; nothing for the others."""

    def ask(self, status: ResourceStatus) -> Answer:
        if status.lifecycle != "recording":
            return Answer(None, "still running")
        return Answer(hook("recording-stopped", fileUrl="https://f/x.mp4"), "recording stopped")


def stuck(engine: Engine, clock: Clock) -> Engine:
    """A session with a participant still joined and a recording stuck in stopping at
    1000 s, that ended at 2000 s: the recording is due at 1900, the participant at 2120."""
    engine.feed(hook("session-started"))
    engine.feed(hook("participant-joined", participantId="p1"))
    engine.feed(hook("recording-stopping"))
    clock.now = 2000.0
    engine.feed(hook("session-ended"))
    return engine


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_overdue_and_reconcile_on_every_store(store_url: str | None) -> None:
    clock = Clock(1000.0)
    engine = stuck(open_engine(store_url, clock), clock)
    assert [] == summary(engine, 1899)
    expected = [("recording.stopping", 900.0, "recording", ("m1", "s1"), "stopping")]
    assert expected == [(d, s, lc, k, st) for d, s, _, lc, k, st in summary(engine, 1900)]
    assert ["participant", "recording"] == sorted(x[3] for x in summary(engine, 2120))
    if store_url is not None:  # the database remembers: a new engine sees the same
        again = Engine.open(store_url, clock=clock)
        assert summary(engine, 2120) == summary(again, 2120)
        again.close()
    done = engine.reconcile(Stopper(), now=2120)
    fed = [r.result for r in done if r.result is not None]
    assert [
        (Outcome.APPLIED, "stopped", (RECONCILED,)),
        (Outcome.DUPLICATE, "joined", (RECONCILED,)),  # still running: logged, once
    ] == [(r.outcome, r.after, r.warnings) for r in fed]
    assert [None] == [r.result for r in engine.reconcile(Stopper(), now=2120)]
    assert ["participant"] == [x[3] for x in summary(engine, 2120)]
    assert [] == engine.rebuild()
    logged = engine.log(after=fed[0].seq - 1)[0]
    assert (RECONCILED,) == logged.warnings  # the warning comes back from the stored payload
    engine.close()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=vs.session_events(), later=st.floats(0, 100_000))
def test_every_store_finds_what_memory_finds(
    stream: list[Any], later: float, tmp_path_factory: pytest.TempPathFactory
) -> None:
    urls = database_urls(tmp_path_factory.mktemp("t"))
    memory_clock = Clock(0.0, tick=5.0)
    memory = Engine(clock=memory_clock)
    for payload in stream:
        memory.feed(payload)
    for url in urls:
        clock = Clock(0.0, tick=5.0)
        with Engine.open(url, clock=clock) as engine:
            for payload in stream:
                engine.feed(payload)
            assert summary(memory, memory_clock.now + later) == summary(engine, clock.now + later)


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_a_sweep_flags_once_and_the_database_remembers(store_url: str | None) -> None:
    clock = Clock(1000.0)
    engine = stuck(open_engine(store_url, clock), clock)
    (flag,) = engine.sweep(1900.0)
    assert ("recording", "stopping", Outcome.OVERDUE, 5) == (
        flag.lifecycle,
        flag.before,
        flag.outcome,
        flag.seq,
    )
    (joined,) = engine.sweep(2120.0)
    assert ("participant", 6) == (joined.lifecycle, joined.seq)
    assert [flag, joined] == engine.anomalies(outcome="overdue")
    assert [flag, joined] == engine.anomalies(outcome="overdue", meeting_id="m1")
    overdue = [(s.lifecycle, s.state) for s in engine.resources(overdue=True)]
    assert [("participant", "joined"), ("recording", "stopping")] == overdue
    if store_url is not None:  # a new engine (a restart) neither loses nor re-fires a flag
        engine.close()
        engine = Engine.open(store_url, clock=clock)
        assert overdue == [(s.lifecycle, s.state) for s in engine.resources(overdue=True)]
    assert [] == engine.sweep(10**6)
    assert [] == engine.rebuild()
    assert [] == engine.sweep(10**6)
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert ("", Outcome.OVERDUE) == (status.history[-1].webhook_type, status.history[-1].outcome)
    clock.now = 3000.0
    engine.feed(hook("recording-stopped"))  # it moves on: no longer flagged
    assert ["participant"] == [s.lifecycle for s in engine.resources(overdue=True)]
    engine.close()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=fed_and_swept())
def test_every_store_sweeps_as_memory_does(
    ops: list[Step], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same stream and sweeps give the same entries (numbers and all), the same
    flagged resources, and the same again after a rebuild and a reopening."""
    urls = database_urls(tmp_path_factory.mktemp("t"))
    memory_clock = Clock(0.0, tick=7.0)
    memory = Engine(clock=memory_clock)
    expected = run(memory, memory_clock, ops)
    flagged = memory.resources(overdue=True)
    for url in urls:
        clock = Clock(0.0, tick=7.0)
        with Engine.open(url, clock=clock) as engine:
            assert expected == run(engine, clock, ops)
            assert flagged == engine.resources(overdue=True)
            assert [] == engine.rebuild()
        with Engine.open(url, clock=clock) as engine:
            assert flagged == engine.resources(overdue=True)
            assert [] == engine.sweep(clock.now)


def test_receivers_sweeping_one_postgresql_at_once_flag_each_visit_once() -> None:
    """Four engines on one PostgreSQL sweep at the same moment, while a fifth moves some
    of the stuck recordings on: every visit is flagged once, and none that moved on."""
    import threading

    url = postgres_or_skip()
    reset_postgres(url)
    clock = Clock(1000.0)
    with Engine.open(url, clock=clock) as engine:
        engine.feed_many(
            {"webhookType": "recording-stopping", "data": {"meetingId": f"m{i}", "sessionId": "s"}}
            for i in range(200)
        )
    engines = [Engine.open(url, clock=clock) for _ in range(5)]
    start = threading.Barrier(5)
    made: list[list[Any]] = [[] for _ in range(4)]

    def sweep(i: int) -> None:
        start.wait()
        for _ in range(3):
            made[i] += engines[i].sweep(5000.0)

    def move_on() -> None:
        start.wait()
        for i in range(0, 200, 10):
            stopped = {"meetingId": f"m{i}", "sessionId": "s", "fileUrl": "https://f/x.mp4"}
            engines[4].feed({"webhookType": "recording-stopped", "data": stopped})

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=move_on))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    flagged = [r.key or () for entries in made for r in entries]
    assert len(flagged) == len(set(flagged))
    logged = engines[0].anomalies(outcome="overdue")
    assert sorted(flagged) == sorted(r.key or () for r in logged)
    still = {s.key for s in engines[0].resources("recording", state="stopping")}
    assert still <= set(flagged)  # every stuck one was flagged ...
    assert len(still) == 180
    assert {s.key for s in engines[0].resources(overdue=True)} == still  # ... moved on: cleared
    assert [] == engines[0].rebuild()
    for e in engines:
        e.close()
