"""Sweeping: each visit to a state past its deadline is flagged once, in the log."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given

from lifecycle import LIFECYCLES, Engine, FeedResult, Outcome

from support import Clock, Step, fed_and_swept, run

IDS = {"meetingId": "m1", "sessionId": "s1"}


def hook(webhook_type: str, **data: Any) -> dict[str, Any]:
    return {"webhookType": webhook_type, "data": {**IDS, **data}}


def test_a_recording_stuck_in_stopping_is_flagged_once_and_cleared_when_it_moves_on() -> None:
    clock = Clock(1000.0)
    engine = Engine(clock=clock)
    told: list[FeedResult] = []
    engine.subscribe(told.append, lifecycle="recording")
    engine.feed(hook("recording-started"))
    engine.feed(hook("recording-stopping"))
    told.clear()
    assert [] == engine.sweep(1899.0)
    (flag,) = engine.sweep(1900.0)
    assert (3, Outcome.OVERDUE, "recording", ("m1", "s1"), None) == flag[:5]
    assert ("stopping", "stopping", 1900.0) == (flag.before, flag.after, flag.timestamp)
    assert flag.reason is not None
    assert "recording.stopping" in flag.reason
    facts = orjson.loads(flag.payload)  # type: ignore[arg-type]
    assert {"deadline": "recording.stopping", "seconds": 900.0} == {
        k: facts["overdue"][k] for k in ("deadline", "seconds")
    }
    assert {"lifecycle": "recording", "key": ["m1", "s1"], "state": "stopping"} == {
        k: facts["resource"][k] for k in ("lifecycle", "key", "state")
    }
    assert IDS.items() <= flag.data.items()
    assert flag.event is None  # no webhook made it
    assert [flag] == told
    assert [flag] == engine.anomalies(outcome="overdue")
    assert [flag] == engine.log(after=2)
    (status,) = engine.resources(overdue=True)
    assert ("recording", "stopping") == (status.lifecycle, status.state)
    assert ("", Outcome.OVERDUE) == (status.history[-1].webhook_type, status.history[-1].outcome)
    assert [True] == [o.flagged for o in engine.overdue(2000.0)]
    assert [] == engine.sweep(5000.0)  # the same visit is not flagged again
    assert [] == engine.rebuild()
    assert [] == engine.sweep(5000.0)  # nor after a rebuild
    clock.now = 6000.0
    engine.feed(hook("recording-stopped"))
    assert [] == engine.resources(overdue=True)
    assert [] == engine.sweep(10**9)
    clock.now = 7000.0
    engine.feed(hook("recording-starting"))  # a new visit: flagged in its turn
    (again,) = engine.sweep(7120.0)
    assert ("starting", 6) == (again.before, again.seq)


def test_the_end_of_the_session_flags_what_it_left_unfinished() -> None:
    clock = Clock(1000.0)
    engine = Engine(clock=clock, deadlines={"participant.session_end": 60})
    engine.feed(hook("session-started"))
    engine.feed(hook("participant-joined", participantId="p1"))
    engine.feed(hook("participant-joined", participantId="p2"))
    clock.now = 1500.0
    engine.feed(hook("participant-left", participantId="p2"))
    clock.now = 2000.0
    engine.feed(hook("session-ended"))
    assert [] == engine.sweep(2059.0)
    (flag,) = engine.sweep(2060.0)
    assert (("m1", "s1", "p1"), "joined") == (flag.key, flag.before)
    assert flag.reason is not None
    assert "participant.session_end" in flag.reason
    assert [("participant", ("m1", "s1", "p1"))] == [
        (s.lifecycle, s.key) for s in engine.resources(overdue=True)
    ]


def test_status_at_a_time_before_the_flag_shows_it_unflagged() -> None:
    clock = Clock(1000.0)
    engine = Engine(clock=clock)
    engine.feed(hook("recording-stopping"))
    (flag,) = engine.sweep(2000.0)
    before = engine.status("recording", "m1", "s1", at=flag.seq - 1)
    after = engine.status("recording", "m1", "s1", at=flag.seq)
    assert before is not None
    assert after is not None
    assert [Outcome.GAP] == [h.outcome for h in before.history]
    assert [Outcome.GAP, Outcome.OVERDUE] == [h.outcome for h in after.history]


@given(ops=fed_and_swept())
def test_each_visit_is_flagged_once_at_the_first_sweep_after_its_deadline(ops: list[Step]) -> None:
    """For any stream and any sweeps among it: a sweep flags exactly the visits due by
    then that no sweep flagged, each at most once, never in a final state; and what
    it flagged was not yet due (or not yet begun) at the sweep before."""
    clock = Clock(0.0, tick=7.0)
    engine = Engine(clock=clock)
    flagged: set[tuple[str, tuple[str, ...], float]] = set()
    previous = float("-inf")
    for op, arg in ops:
        if op == "feed":
            engine.feed(arg)
            continue
        t = clock.advance(arg)
        due = {
            (o.status.lifecycle, o.status.key, o.status.entered_at.timestamp()): o
            for o in engine.overdue(t)
        }
        made = engine.sweep(t)
        visits = []
        for r in made:
            assert r.outcome is Outcome.OVERDUE
            assert r.lifecycle is not None
            assert r.key is not None
            assert r.before not in LIFECYCLES[r.lifecycle].final_states
            status = engine.status(r.lifecycle, *r.key)
            assert status is not None
            visit = (r.lifecycle, r.key, status.entered_at.timestamp())
            assert visit not in flagged
            o = due[visit]
            assert o.due_at.timestamp() <= t
            assert max(o.due_at.timestamp(), visit[2]) > previous
            visits.append(visit)
        assert set(visits) == set(due) - flagged
        assert len(visits) == len(set(visits))
        flagged |= set(visits)
        previous = t
    assert [] == engine.sweep(clock.now)


@given(ops=fed_and_swept())
def test_rebuild_keeps_the_flags_and_the_log(ops: list[Step]) -> None:
    clock = Clock(0.0, tick=7.0)
    engine = Engine(clock=clock)
    run(engine, clock, ops)
    flagged = engine.resources(overdue=True)
    entries = engine.anomalies(outcome="overdue")
    assert [] == engine.rebuild()
    assert flagged == engine.resources(overdue=True)
    assert entries == engine.anomalies(outcome="overdue")
    assert [] == engine.sweep(clock.now)
