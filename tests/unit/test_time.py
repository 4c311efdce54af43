"""Time: which resources are overdue, and reconciling them with what the provider says."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle import (
    LIFECYCLES,
    RECONCILED,
    Engine,
    InvalidArgument,
    Outcome,
    ResourceStatus,
)
from lifecycle import strategies as vs
from lifecycle.reconcile import Answer

from support import Clock

IDS = {"meetingId": "m1", "sessionId": "s1"}


def hook(webhook_type: str, **data: Any) -> dict[str, Any]:
    return {"webhookType": webhook_type, "data": {**IDS, **data}}


def keys(engine: Engine, now: float) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(o.deadline, o.status.lifecycle, o.status.key) for o in engine.overdue(now)]


def test_a_recording_stuck_in_stopping_is_overdue_at_its_deadline_and_not_before() -> None:
    clock = Clock(1000.0)
    engine = Engine(clock=clock)
    engine.feed(hook("recording-started"))
    engine.feed(hook("recording-stopping"))
    assert [] == engine.overdue(1000 + 899.9)
    (late,) = engine.overdue(1000 + 900)
    assert ("recording.stopping", 900.0) == (late.deadline, late.seconds)
    assert 1900.0 == late.due_at.timestamp()
    assert ("stopping", ("m1", "s1")) == (late.status.state, late.status.key)
    clock.now = 1950.0
    engine.feed(hook("recording-stopped"))  # it moved on: nothing is overdue any more
    assert [] == engine.overdue(10**9)


def test_the_end_of_its_session_makes_every_unfinished_resource_due() -> None:
    """Session ended at 5,000: a participant still joined is overdue from 5,120, a
    recording still started (no deadline of its own) from 5,900; a post transcription
    started afterwards is not."""
    clock = Clock(1000.0)
    engine = Engine(clock=clock)
    engine.feed(hook("session-started"))
    engine.feed(hook("participant-joined", participantId="p1"))
    engine.feed(hook("recording-started"))
    clock.now = 5000.0
    engine.feed(hook("session-ended"))
    engine.feed(hook("transcription-started", id="t1", type="post"))
    assert [] == keys(engine, 5119)
    assert ["recording"] == [o.status.lifecycle for o in engine.overdue(5900, "recording")]
    with pytest.raises(InvalidArgument, match="unknown lifecycle 'nope'"):
        engine.overdue(5900, "nope")
    assert [("participant.session_end", "participant", ("m1", "s1", "p1"))] == keys(engine, 5120)
    assert [
        ("participant.session_end", "participant", ("m1", "s1", "p1")),
        ("recording.session_end", "recording", ("m1", "s1")),
    ] == keys(engine, 5900)


def test_deadlines_are_configured_per_engine() -> None:
    clock = Clock(0.0)
    engine = Engine(clock=clock, deadlines={"recording.stopping": "1m", "hls.started": None})
    engine.feed(hook("recording-stopping"))
    engine.feed(hook("hls-started"))
    assert [("recording.stopping", "recording", ("m1", "s1"))] == keys(engine, 60)
    assert [] == [k for k in keys(engine, 10**6) if k[1] == "hls"]
    with pytest.raises(InvalidArgument, match=r"no deadline 'recording\.stopped'"):
        Engine(deadlines={"recording.stopped": 5})


@settings(max_examples=60)
@given(
    stream=vs.session_events(),
    times=st.lists(st.floats(0, 200_000), min_size=2, max_size=4),
)
def test_overdue_grows_with_time_and_names_only_unfinished_resources(
    stream: list[Any], times: list[float]
) -> None:
    """For any stream fed over time and any two later moments: every overdue resource is
    in a state that is not final and was due by then; what is overdue at a moment stays
    overdue at every later one (nothing fed in between)."""
    clock = Clock(0.0, tick=10.0)
    engine = Engine(clock=clock)
    for payload in stream:
        engine.feed(payload)
    start = clock.now
    earlier: set[tuple[str, tuple[str, ...]]] = set()
    for t in sorted(start + x for x in times):
        found = engine.overdue(t)
        for o in found:
            assert o.status.state not in LIFECYCLES[o.status.lifecycle].final_states
            assert o.due_at.timestamp() <= t
        now = {(o.status.lifecycle, o.status.key) for o in found}
        assert earlier <= now
        earlier = now


class Fake:
    """A reconciler that answers from a table, and notes what it was asked."""

    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = answers
        self.asked: list[ResourceStatus] = []

    def ask(self, status: ResourceStatus) -> Answer:
        self.asked.append(status)
        return self.answers[status.lifecycle]


STOPPED = Answer(
    hook("recording-stopped", fileUrl="https://files/rec.mp4"),
    "recording stopped",
    {"exchanges": [{"method": "GET", "path": "/v2/recordings?roomId=m1", "status": 200}]},
)


def test_reconcile_feeds_what_the_answer_implies_and_asks_only_about_overdue_ones() -> None:
    clock = Clock(1000.0)
    engine = Engine(clock=clock)
    engine.feed(hook("recording-stopping"))
    engine.feed(hook("hls-started"))  # 180 s of its own
    engine.feed(hook("participant-joined", participantId="p1"))  # no deadline
    still = Answer(None, "still running", {"exchanges": []})
    fake = Fake({"recording": STOPPED, "hls": still})
    clock.now = 2000.0
    done = engine.reconcile(fake)
    assert ["hls", "recording"] == sorted(s.lifecycle for s in fake.asked)
    by = {r.overdue.status.lifecycle: r for r in done}
    # an answer that implies nothing changes nothing; it is logged, once in the visit
    note = by["hls"].result
    assert note is not None
    assert (Outcome.DUPLICATE, None, "started", (RECONCILED,), "still running") == (
        note.outcome,
        note.webhook_type,
        note.after,
        note.warnings,
        note.reason,
    )
    assert "started" == engine.status("hls", "m1", "s1").state  # type: ignore[union-attr]
    result = by["recording"].result
    assert result is not None
    assert (Outcome.APPLIED, "stopped", (RECONCILED,)) == (
        result.outcome,
        result.after,
        result.warnings,
    )
    assert "https://files/rec.mp4" == engine.status("recording", "m1", "s1").data["fileUrl"]  # type: ignore[union-attr]
    payload = result.payload
    assert isinstance(payload, dict)
    assert {"reason": "recording stopped", "evidence": STOPPED.evidence} == payload[RECONCILED]
    assert ["hls"] == [o.status.lifecycle for o in engine.overdue(2000.0)]
    (again,) = engine.reconcile(fake)  # asked again, not logged again
    assert again.result is None
    assert again.answer is still
    assert [note] == [a for a in engine.anomalies(lifecycle="hls") if RECONCILED in a.warnings]
    # the webhook that was lost arrives after all: a duplicate; a late stopping: out of order
    assert Outcome.DUPLICATE == engine.feed(hook("recording-stopped")).outcome
    assert Outcome.OUT_OF_ORDER == engine.feed(hook("recording-stopping")).outcome
    assert [] == engine.rebuild()
