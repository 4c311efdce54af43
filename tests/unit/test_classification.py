"""Classification of every event against the state of its resource, through a real Engine.

The expected outcomes, states and gap lists below are written by hand from the rules:
an edge is applied (a restart edge too), the same state is a duplicate, a state ahead
along forward edges is a gap (missing the skipped states of the shortest forward path),
a state behind is out of order, anything else is illegal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import (
    AFTER_SESSION_END,
    Engine,
    HistoryEntry,
    InvalidEvent,
    Outcome,
    UnknownEvent,
    parse_event,
)
from lifecycle._convert import MAX_DEPTH, MAX_KEY_LENGTH

from support import Clock

A, D, G = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.GAP
OOO, ILL = Outcome.OUT_OF_ORDER, Outcome.ILLEGAL

# the key data of one resource of each lifecycle, and its key in key_fields order
KEYS: dict[str, dict[str, str]] = {
    "session": {"meetingId": "m1", "sessionId": "s1"},
    "participant": {"meetingId": "m1", "sessionId": "s1", "participantId": "p1"},
    "recording": {"meetingId": "m1", "sessionId": "s1"},
    "participant-track-recording": {
        "meetingId": "m1",
        "sessionId": "s1",
        "participantId": "p1",
        "kind": "video",
    },
    "participant-recording": {"meetingId": "m1", "sessionId": "s1", "participantId": "p1"},
    "livestream": {"meetingId": "m1", "sessionId": "s1"},
    "hls": {"meetingId": "m1", "sessionId": "s1"},
    "transcription": {"id": "t1"},
    "merge-recording": {"id": "mr1"},
    "resource": {"id": "r1"},
    "ai-deployment-session": {"sessionId": "ai1"},
}
KEY_VALUES: dict[str, tuple[str, ...]] = {
    "session": ("m1", "s1"),
    "participant": ("m1", "s1", "p1"),
    "recording": ("m1", "s1"),
    "participant-track-recording": ("m1", "s1", "p1", "video"),
    "participant-recording": ("m1", "s1", "p1"),
    "livestream": ("m1", "s1"),
    "hls": ("m1", "s1"),
    "transcription": ("t1",),
    "merge-recording": ("mr1",),
    "resource": ("r1",),
    "ai-deployment-session": ("ai1",),
}


class Case(NamedTuple):
    """One row: feed ``prefix`` to reach ``before``, then ``event``."""

    rule: str
    lifecycle: str
    prefix: tuple[str, ...]
    event: str
    outcome: Outcome
    before: str
    after: str
    missing: tuple[str, ...]


# (rule, state before, event suffix, outcome, state after, missing)
Cell = tuple[str, str, str, Outcome, str, tuple[str, ...]]

RECORDER_PATHS: dict[str, tuple[str, ...]] = {
    "idle": (),
    "starting": ("starting",),
    "started": ("starting", "started"),
    "stopping": ("starting", "started", "stopping"),
    "stopped": ("starting", "started", "stopping", "stopped"),
    "failed": ("starting", "failed"),
}
RECORDER_CELLS: list[Cell] = [
    ("applied", "idle", "starting", A, "starting", ()),
    ("applied", "starting", "started", A, "started", ()),
    ("applied", "started", "stopping", A, "stopping", ()),
    ("applied", "stopping", "stopped", A, "stopped", ()),
    ("applied", "starting", "failed", A, "failed", ()),
    ("applied", "started", "failed", A, "failed", ()),
    ("applied", "stopping", "failed", A, "failed", ()),
    ("duplicate", "starting", "starting", D, "starting", ()),
    ("duplicate", "started", "started", D, "started", ()),
    ("duplicate", "stopping", "stopping", D, "stopping", ()),
    ("duplicate", "stopped", "stopped", D, "stopped", ()),
    ("duplicate", "failed", "failed", D, "failed", ()),
    ("gap", "idle", "started", G, "started", ("starting",)),
    ("gap", "idle", "stopping", G, "stopping", ("starting", "started")),
    ("gap", "idle", "stopped", G, "stopped", ("starting", "started", "stopping")),
    ("gap", "idle", "failed", G, "failed", ("starting",)),
    ("gap", "starting", "stopping", G, "stopping", ("started",)),
    ("gap", "starting", "stopped", G, "stopped", ("started", "stopping")),
    ("gap", "started", "stopped", G, "stopped", ("stopping",)),
    ("out_of_order", "started", "starting", OOO, "started", ()),
    ("out_of_order", "stopping", "starting", OOO, "stopping", ()),
    ("out_of_order", "stopping", "started", OOO, "stopping", ()),
    ("out_of_order", "stopped", "started", OOO, "stopped", ()),
    ("out_of_order", "stopped", "stopping", OOO, "stopped", ()),
    ("out_of_order", "failed", "started", OOO, "failed", ()),
    ("out_of_order", "failed", "stopping", OOO, "failed", ()),
    ("illegal", "stopped", "failed", ILL, "stopped", ()),
    ("illegal", "failed", "stopped", ILL, "failed", ()),
]
RESTART_CELLS: list[Cell] = [
    ("restart", "stopped", "starting", A, "starting", ()),
    ("restart", "failed", "starting", A, "starting", ()),
]
NO_RESTART_CELLS: list[Cell] = [
    ("out_of_order", "stopped", "starting", OOO, "stopped", ()),
    ("out_of_order", "failed", "starting", OOO, "failed", ()),
]

HLS_PATHS: dict[str, tuple[str, ...]] = {
    "idle": (),
    "starting": ("starting",),
    "started": ("starting", "started"),
    "playable": ("starting", "started", "playable"),
    "stopping": ("starting", "started", "playable", "stopping"),
    "stopped": ("starting", "started", "playable", "stopping", "stopped"),
    "failed": ("starting", "failed"),
}
HLS_CELLS: list[Cell] = [
    ("applied", "idle", "starting", A, "starting", ()),
    ("applied", "starting", "started", A, "started", ()),
    ("applied", "started", "playable", A, "playable", ()),
    ("applied", "started", "stopping", A, "stopping", ()),
    ("applied", "playable", "stopping", A, "stopping", ()),
    ("applied", "stopping", "stopped", A, "stopped", ()),
    ("applied", "starting", "failed", A, "failed", ()),
    ("applied", "started", "failed", A, "failed", ()),
    ("applied", "playable", "failed", A, "failed", ()),
    ("applied", "stopping", "failed", A, "failed", ()),
    ("restart", "stopped", "starting", A, "starting", ()),
    ("restart", "failed", "starting", A, "starting", ()),
    ("duplicate", "starting", "starting", D, "starting", ()),
    ("duplicate", "started", "started", D, "started", ()),
    ("duplicate", "playable", "playable", D, "playable", ()),
    ("duplicate", "stopping", "stopping", D, "stopping", ()),
    ("duplicate", "stopped", "stopped", D, "stopped", ()),
    ("duplicate", "failed", "failed", D, "failed", ()),
    ("gap", "idle", "started", G, "started", ("starting",)),
    ("gap", "idle", "playable", G, "playable", ("starting", "started")),
    ("gap", "idle", "stopping", G, "stopping", ("starting", "started")),
    ("gap", "idle", "stopped", G, "stopped", ("starting", "started", "stopping")),
    ("gap", "idle", "failed", G, "failed", ("starting",)),
    ("gap", "starting", "playable", G, "playable", ("started",)),
    ("gap", "starting", "stopping", G, "stopping", ("started",)),
    ("gap", "starting", "stopped", G, "stopped", ("started", "stopping")),
    ("gap", "started", "stopped", G, "stopped", ("stopping",)),
    ("gap", "playable", "stopped", G, "stopped", ("stopping",)),
    ("out_of_order", "started", "starting", OOO, "started", ()),
    ("out_of_order", "playable", "starting", OOO, "playable", ()),
    ("out_of_order", "playable", "started", OOO, "playable", ()),
    ("out_of_order", "stopping", "starting", OOO, "stopping", ()),
    ("out_of_order", "stopping", "started", OOO, "stopping", ()),
    ("out_of_order", "stopping", "playable", OOO, "stopping", ()),
    ("out_of_order", "stopped", "started", OOO, "stopped", ()),
    ("out_of_order", "stopped", "playable", OOO, "stopped", ()),
    ("out_of_order", "stopped", "stopping", OOO, "stopped", ()),
    ("out_of_order", "failed", "started", OOO, "failed", ()),
    ("out_of_order", "failed", "playable", OOO, "failed", ()),
    ("out_of_order", "failed", "stopping", OOO, "failed", ()),
    ("illegal", "stopped", "failed", ILL, "stopped", ()),
    ("illegal", "failed", "stopped", ILL, "failed", ()),
]

SESSION_PATHS = {"idle": (), "started": ("started",), "ended": ("started", "ended")}
SESSION_CELLS: list[Cell] = [
    ("applied", "idle", "started", A, "started", ()),
    ("applied", "started", "ended", A, "ended", ()),
    ("duplicate", "started", "started", D, "started", ()),
    ("duplicate", "ended", "ended", D, "ended", ()),
    ("gap", "idle", "ended", G, "ended", ("started",)),
    ("out_of_order", "ended", "started", OOO, "ended", ()),
]

PARTICIPANT_PATHS = {"idle": (), "joined": ("joined",), "left": ("joined", "left")}
PARTICIPANT_CELLS: list[Cell] = [
    ("applied", "idle", "joined", A, "joined", ()),
    ("applied", "joined", "left", A, "left", ()),
    ("restart", "left", "joined", A, "joined", ()),
    ("duplicate", "joined", "joined", D, "joined", ()),
    ("duplicate", "left", "left", D, "left", ()),
    ("gap", "idle", "left", G, "left", ("joined",)),
]

TRANSCRIPTION_PATHS = {
    "idle": (),
    "started": ("started",),
    "stopped": ("started", "stopped"),
    "failed": ("failed",),
}
TRANSCRIPTION_CELLS: list[Cell] = [
    ("applied", "idle", "started", A, "started", ()),
    ("applied", "idle", "failed", A, "failed", ()),
    ("applied", "started", "stopped", A, "stopped", ()),
    ("applied", "started", "completed", A, "stopped", ()),
    ("applied", "started", "failed", A, "failed", ()),
    ("duplicate", "started", "started", D, "started", ()),
    ("duplicate", "stopped", "stopped", D, "stopped", ()),
    ("duplicate", "stopped", "completed", D, "stopped", ()),
    ("duplicate", "failed", "failed", D, "failed", ()),
    ("gap", "idle", "stopped", G, "stopped", ("started",)),
    ("gap", "idle", "completed", G, "stopped", ("started",)),
    ("out_of_order", "stopped", "started", OOO, "stopped", ()),
    ("out_of_order", "failed", "started", OOO, "failed", ()),
    ("illegal", "stopped", "failed", ILL, "stopped", ()),
    ("illegal", "failed", "stopped", ILL, "failed", ()),
    ("illegal", "failed", "completed", ILL, "failed", ()),
]

MERGE_PATHS = {"idle": (), "completed": ("completed",), "failed": ("failed",)}
MERGE_CELLS: list[Cell] = [
    ("applied", "idle", "completed", A, "completed", ()),
    ("applied", "idle", "failed", A, "failed", ()),
    ("duplicate", "completed", "completed", D, "completed", ()),
    ("duplicate", "failed", "failed", D, "failed", ()),
    ("illegal", "completed", "failed", ILL, "completed", ()),
    ("illegal", "failed", "completed", ILL, "failed", ()),
]

RESOURCE_PATHS = {"idle": (), "acquired": ("acquired",)}
RESOURCE_CELLS: list[Cell] = [
    ("applied", "idle", "acquired", A, "acquired", ()),
    ("duplicate", "acquired", "acquired", D, "acquired", ()),
]


def _rows(
    lifecycle: str, prefix: str, paths: dict[str, tuple[str, ...]], cells: list[Cell]
) -> list[Case]:
    """Cases of one lifecycle whose webhook types are ``{prefix}-{state}``."""
    return [
        Case(
            rule,
            lifecycle,
            tuple(f"{prefix}-{p}" for p in paths[before]),
            f"{prefix}-{event}",
            outcome,
            before,
            after,
            missing,
        )
        for rule, before, event, outcome, after, missing in cells
    ]


AI = "ai-deployment-session"
CASES: list[Case] = [
    *_rows("session", "session", SESSION_PATHS, SESSION_CELLS),
    *_rows("participant", "participant", PARTICIPANT_PATHS, PARTICIPANT_CELLS),
    *[
        case
        for name in (
            "recording",
            "participant-track-recording",
            "participant-recording",
            "livestream",
        )
        for case in _rows(name, name, RECORDER_PATHS, RECORDER_CELLS + RESTART_CELLS)
    ],
    *_rows("hls", "hls", HLS_PATHS, HLS_CELLS),
    *_rows("transcription", "transcription", TRANSCRIPTION_PATHS, TRANSCRIPTION_CELLS),
    *_rows("merge-recording", "merge-recording", MERGE_PATHS, MERGE_CELLS),
    *_rows("resource", "resource", RESOURCE_PATHS, RESOURCE_CELLS),
    *_rows(AI, AI, RECORDER_PATHS, RECORDER_CELLS + NO_RESTART_CELLS),
    *_rows(AI, "agent-session", RECORDER_PATHS, RECORDER_CELLS + NO_RESTART_CELLS),
    # paths through another route or another alias
    Case(
        "applied",
        "hls",
        ("hls-starting", "hls-started", "hls-stopping"),
        "hls-stopped",
        A,
        "stopping",
        "stopped",
        (),
    ),
    Case(
        "duplicate",
        "hls",
        ("hls-starting", "hls-started", "hls-stopping"),
        "hls-stopping",
        D,
        "stopping",
        "stopping",
        (),
    ),
    Case(
        "out_of_order",
        "hls",
        ("hls-starting", "hls-started", "hls-stopping"),
        "hls-playable",
        OOO,
        "stopping",
        "stopping",
        (),
    ),
    Case(
        "applied",
        "participant",
        ("participant-joined", "participant-left", "participant-joined"),
        "participant-left",
        A,
        "joined",
        "left",
        (),
    ),
    Case(
        "restart",
        "recording",
        ("recording-starting", "recording-failed", "recording-starting"),
        "recording-started",
        A,
        "starting",
        "started",
        (),
    ),
    Case(
        "duplicate",
        "transcription",
        ("transcription-started", "transcription-completed"),
        "transcription-stopped",
        D,
        "stopped",
        "stopped",
        (),
    ),
    Case(
        "applied",
        AI,
        ("agent-session-starting",),
        "ai-deployment-session-started",
        A,
        "starting",
        "started",
        (),
    ),
    Case(
        "duplicate",
        AI,
        ("ai-deployment-session-starting", "agent-session-started"),
        "ai-deployment-session-started",
        D,
        "started",
        "started",
        (),
    ),
    Case(
        "gap",
        AI,
        ("agent-session-starting",),
        "ai-deployment-session-stopped",
        G,
        "starting",
        "stopped",
        ("started", "stopping"),
    ),
    Case(
        "illegal",
        AI,
        ("ai-deployment-session-starting", "agent-session-failed"),
        "ai-deployment-session-stopped",
        ILL,
        "failed",
        "failed",
        (),
    ),
]

ALL_RULES = {"applied", "restart", "duplicate", "gap", "out_of_order", "illegal"}
RULES_OF: dict[str, set[str]] = {
    # participant: left -> joined is a restart, so nothing can be out of order or illegal
    "session": {"applied", "duplicate", "gap", "out_of_order"},
    "participant": {"applied", "restart", "duplicate", "gap"},
    "recording": ALL_RULES,
    "participant-track-recording": ALL_RULES,
    "participant-recording": ALL_RULES,
    "livestream": ALL_RULES,
    "hls": ALL_RULES,
    "transcription": ALL_RULES - {"restart"},
    "merge-recording": {"applied", "duplicate", "illegal"},
    "resource": {"applied", "duplicate"},
    AI: ALL_RULES - {"restart"},
}


def payload(lifecycle: str, webhook_type: str, **data: Any) -> dict[str, Any]:
    """A payload of ``webhook_type`` for the test resource of ``lifecycle``."""
    return {"webhookType": webhook_type, "data": {**KEYS[lifecycle], **data}}


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def test_table_covers_every_lifecycle_and_rule() -> None:
    """The table below exercises every rule possible in every lifecycle."""
    covered: dict[str, set[str]] = {}
    for case in CASES:
        covered.setdefault(case.lifecycle, set()).add(case.rule)
    assert RULES_OF == covered


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}:{c.before}+{c.event}" for c in CASES])
def test_classification(case: Case) -> None:
    """An event on a resource in state ``before`` gets the outcome, state and gap list."""
    clock = Clock(1_000.0)
    engine = Engine(clock=clock)
    for i, w in enumerate(case.prefix):
        clock.now = 1_000.0 + i
        assert Outcome.APPLIED == engine.feed(payload(case.lifecycle, w)).outcome, w
    key = KEY_VALUES[case.lifecycle]
    previous = engine.status(case.lifecycle, *key)
    assert (None if case.before == "idle" else case.before) == (
        previous.state if previous is not None else None
    )

    clock.now = 5_000.0
    result = engine.feed(payload(case.lifecycle, case.event))

    assert case.outcome == result.outcome
    assert case.before == result.before
    assert case.after == result.after
    assert case.missing == result.missing
    assert (case.lifecycle, key, case.event) == (result.lifecycle, result.key, result.webhook_type)
    assert (case.outcome in (A, G)) == result.changed
    assert len(case.prefix) + 1 == result.seq
    status = engine.status(case.lifecycle, *key)
    assert status is not None
    assert case.after == status.state
    if result.changed:
        assert _at(5_000.0) == status.entered_at
    else:
        assert previous is not None
        assert previous.entered_at == status.entered_at
    assert HistoryEntry(result.seq, case.event, case.outcome, _at(5_000.0)) == status.history[-1]
    assert len(case.prefix) + 1 == len(status.history)
    assert (case.outcome is not A) == (result in engine.anomalies())


# -- restarts and the ids of finished cycles ---------------------------------------------------

RESTARTABLE = [
    "recording",
    "participant-track-recording",
    "participant-recording",
    "livestream",
    "hls",
]
FINISHED: dict[str, tuple[str, ...]] = {
    "stopped": ("starting", "started", "stopping", "stopped"),
    "failed": ("starting", "failed"),
}


def _finish_cycle(engine: Engine, lifecycle: str, final: str, cycle_id: str) -> None:
    for state in FINISHED[final]:
        extra = {"message": "old cycle"} if state == final else {}
        result = engine.feed(payload(lifecycle, f"{lifecycle}-{state}", id=cycle_id, **extra))
        assert Outcome.APPLIED == result.outcome


@pytest.mark.parametrize("final", list(FINISHED))
@pytest.mark.parametrize("lifecycle", RESTARTABLE)
def test_start_repeating_the_finished_cycle_id_is_out_of_order(lifecycle: str, final: str) -> None:
    """A start with the id of the cycle that already finished is a late copy, not a restart."""
    engine = Engine()
    _finish_cycle(engine, lifecycle, final, "cycle-1")
    result = engine.feed(payload(lifecycle, f"{lifecycle}-starting", id="cycle-1"))
    assert Outcome.OUT_OF_ORDER == result.outcome
    assert (final, final) == (result.before, result.after)
    status = engine.status(lifecycle, *KEY_VALUES[lifecycle])
    assert status is not None
    assert final == status.state
    assert "old cycle" == status.data["message"]
    assert (
        HistoryEntry(result.seq, f"{lifecycle}-starting", OOO, result.received_at)
        == status.history[-1]
    )
    assert [result] == engine.anomalies(lifecycle=lifecycle)


@pytest.mark.parametrize("new_id", ["cycle-2", None])
@pytest.mark.parametrize("final", list(FINISHED))
@pytest.mark.parametrize("lifecycle", RESTARTABLE)
def test_start_with_a_new_id_restarts(lifecycle: str, final: str, new_id: str | None) -> None:
    """A start with a new id (or none) after a finished cycle is an applied restart."""
    engine = Engine()
    _finish_cycle(engine, lifecycle, final, "cycle-1")
    extra = {} if new_id is None else {"id": new_id}
    result = engine.feed(payload(lifecycle, f"{lifecycle}-starting", **extra))
    assert Outcome.APPLIED == result.outcome
    assert (final, "starting") == (result.before, result.after)
    status = engine.status(lifecycle, *KEY_VALUES[lifecycle])
    assert status is not None
    assert "starting" == status.state
    assert {**KEYS[lifecycle], **extra} == status.data  # reset: nothing of the old cycle
    assert [] == engine.anomalies()


def test_the_new_cycle_id_is_remembered() -> None:
    """After a restart with a new id, repeating that id after the new cycle is out of order."""
    engine = Engine()
    _finish_cycle(engine, "recording", "stopped", "cycle-1")
    _finish_cycle(engine, "recording", "failed", "cycle-2")
    result = engine.feed(payload("recording", "recording-starting", id="cycle-2"))
    assert (Outcome.OUT_OF_ORDER, "failed") == (result.outcome, result.after)
    result = engine.feed(payload("recording", "recording-starting", id="cycle-3"))
    assert (Outcome.APPLIED, "starting") == (result.outcome, result.after)


def test_participant_rejoin_resets_data() -> None:
    """A rejoin is an applied restart and starts the participant's data afresh."""
    engine = Engine()
    engine.feed(payload("participant", "participant-joined", participantName="John"))
    engine.feed(payload("participant", "participant-left", reason="network"))
    result = engine.feed(payload("participant", "participant-joined"))
    assert (Outcome.APPLIED, "left", "joined") == (result.outcome, result.before, result.after)
    status = engine.status("participant", "m1", "s1", "p1")
    assert status is not None
    assert KEYS["participant"] == status.data


# -- starts after the end of the meeting session ---------------------------------------------

SESSION_DATA = {"meetingId": "m1", "sessionId": "s1"}

STARTS_AFTER_END: list[tuple[str, dict[str, str]]] = [
    ("recording-starting", {}),
    ("participant-track-recording-starting", {"participantId": "p1", "kind": "audio"}),
    ("participant-recording-starting", {"participantId": "p1"}),
    ("livestream-starting", {}),
    ("hls-starting", {}),
    ("participant-joined", {"participantId": "p1"}),
    ("transcription-started", {"id": "t1"}),
    ("transcription-started", {"id": "t1", "type": "realtime"}),
]


def _ended_session(engine: Engine, *, via_gap: bool = False) -> None:
    if not via_gap:
        engine.feed({"webhookType": "session-started", "data": SESSION_DATA})
    assert "ended" == engine.feed({"webhookType": "session-ended", "data": SESSION_DATA}).after


@pytest.mark.parametrize("via_gap", [False, True])
@pytest.mark.parametrize(
    ("webhook_type", "data"), STARTS_AFTER_END, ids=[w for w, _ in STARTS_AFTER_END]
)
def test_start_after_session_end_is_flagged(
    webhook_type: str, data: dict[str, str], via_gap: bool
) -> None:
    """A session-scoped start event of an ended meeting session warns after_session_end."""
    engine = Engine()
    _ended_session(engine, via_gap=via_gap)
    result = engine.feed({"webhookType": webhook_type, "data": {**SESSION_DATA, **data}})
    assert Outcome.APPLIED == result.outcome
    assert (AFTER_SESSION_END,) == result.warnings
    assert "after_session_end" == AFTER_SESSION_END
    assert [result] == engine.anomalies(outcome="applied")


def test_rejoin_after_session_end_is_flagged() -> None:
    """A participant rejoining after the session ended is a restart with the warning."""
    engine = Engine()
    engine.feed(payload("participant", "participant-joined"))
    engine.feed(payload("participant", "participant-left"))
    _ended_session(engine)
    result = engine.feed(payload("participant", "participant-joined"))
    assert (Outcome.APPLIED, "joined", (AFTER_SESSION_END,)) == (
        result.outcome,
        result.after,
        result.warnings,
    )


NOT_FLAGGED: list[tuple[str, dict[str, str]]] = [
    # not a start event
    ("recording-started", {}),
    ("recording-stopped", {}),
    ("hls-playable", {}),
    ("livestream-failed", {}),
    ("participant-left", {"participantId": "p1"}),
    ("transcription-stopped", {"id": "t1"}),
    ("transcription-failed", {"id": "t1"}),
    # not session scoped
    ("merge-recording-completed", {"id": "mr1"}),
    ("merge-recording-failed", {"id": "mr1"}),
    ("resource-acquired", {"id": "r1"}),
    ("ai-deployment-session-starting", {}),
    ("agent-session-starting", {}),
    # after the session by design: a post transcription is made of the finished meeting
    ("transcription-started", {"id": "t1", "type": "post"}),
]


@pytest.mark.parametrize(("webhook_type", "data"), NOT_FLAGGED, ids=[w for w, _ in NOT_FLAGGED])
def test_other_events_after_session_end_are_not_flagged(
    webhook_type: str, data: dict[str, str]
) -> None:
    """Only start events of session-scoped lifecycles get after_session_end."""
    engine = Engine()
    _ended_session(engine)
    result = engine.feed({"webhookType": webhook_type, "data": {**SESSION_DATA, **data}})
    assert result.outcome in (A, G)
    assert () == result.warnings


@pytest.mark.parametrize(
    ("session_events", "start_data"),
    [
        ((), SESSION_DATA),
        (("session-started",), SESSION_DATA),
        (("session-started", "session-ended"), {"meetingId": "m1", "sessionId": "s2"}),
        (("session-started", "session-ended"), {"meetingId": "m2", "sessionId": "s1"}),
    ],
    ids=["no-session", "session-running", "other-session", "other-meeting"],
)
def test_start_of_a_live_or_other_session_is_not_flagged(
    session_events: tuple[str, ...], start_data: dict[str, str]
) -> None:
    """The warning needs the same meetingId and sessionId, and a session in ``ended``."""
    engine = Engine()
    for w in session_events:
        engine.feed({"webhookType": w, "data": SESSION_DATA})
    result = engine.feed({"webhookType": "recording-starting", "data": start_data})
    assert (Outcome.APPLIED, ()) == (result.outcome, result.warnings)
    assert [] == engine.anomalies(lifecycle="recording")


# -- unknown types and malformed payloads ----------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason", "webhook_type"),
    [
        (b"{oops", "not JSON", None),
        ("[1, 2]", "not a JSON object", None),
        (b"17", "not a JSON object", None),
        ({"data": {"meetingId": "m1"}}, "no webhookType", None),
        ({"webhookType": 3, "data": {}}, "webhookType must be a string", None),
        ({"webhookType": "recording-started"}, "data is missing", "recording-started"),
        (
            {"webhookType": "recording-started", "data": []},
            "data must be an object",
            "recording-started",
        ),
        (
            {"webhookType": "recording-started", "data": {"meetingId": "m1"}},
            "data.sessionId is missing",
            "recording-started",
        ),
        (
            '{"webhookType": "participant-joined", "data": {"meetingId": "m1", "sessionId": "s1",'
            ' "participantId": ""}}',
            "data.participantId is empty",
            "participant-joined",
        ),
        (
            {"type": "hls-started", "data": {"meetingId": "m1", "sessionId": 9}},
            "data.sessionId must be a string",
            "hls-started",
        ),
        (
            {"webhookType": "transcription-started", "data": {"meetingId": "m1"}},
            "data.id",
            "transcription-started",
        ),
    ],
)
def test_malformed_payloads(
    bad: dict[str, Any] | str | bytes, reason: str, webhook_type: str | None
) -> None:
    """A payload that is not a valid webhook is malformed, with its reason, and changes nothing."""
    engine = Engine()
    result = engine.feed(bad)
    assert Outcome.MALFORMED == result.outcome
    assert reason in (result.reason or "")
    assert webhook_type == result.webhook_type
    assert (None, None, None, None, (), ()) == (
        result.lifecycle,
        result.key,
        result.before,
        result.after,
        result.missing,
        result.warnings,
    )
    assert result.event is None
    assert result.changed is False
    assert bad is result.payload
    assert 1 == engine.events_fed
    assert 0 == len(engine)
    assert [result] == engine.anomalies(outcome=Outcome.MALFORMED)


@pytest.mark.parametrize(
    "unknown",
    [
        {"webhookType": "meeting-exploded", "data": {"meetingId": "m1", "sessionId": "s1"}},
        {"type": "meeting-exploded", "data": "anything"},
        '{"webhookType": "meeting-exploded"}',
    ],
)
def test_unknown_types(unknown: dict[str, Any] | str) -> None:
    """A payload of an unknown webhookType is unknown_type, kept, and changes nothing."""
    engine = Engine()
    result = engine.feed(unknown)
    assert Outcome.UNKNOWN_TYPE == result.outcome
    assert "meeting-exploded" == result.webhook_type
    assert "meeting-exploded" in (result.reason or "")
    assert (None, None, None, None) == (result.lifecycle, result.key, result.before, result.after)
    assert isinstance(result.event, UnknownEvent)
    assert "meeting-exploded" == result.event.webhook_type
    assert unknown is result.payload
    assert 1 == engine.events_fed
    assert 0 == len(engine)
    assert [result] == engine.anomalies(outcome="unknown_type")


# -- the limits every store can keep ---------------------------------------------------


def _deep_recording(levels: int) -> bytes:
    """A recording-started webhook whose ``data`` nests arrays ``levels`` deep in all."""
    inner = b"[" * (levels - 1) + b"]" * (levels - 1)
    return (
        b'{"webhookType":"recording-started","data":{"meetingId":"m","sessionId":"s","x":%s}}'
        % (inner or b"1")
    )


@given(levels=st.integers(1, 3 * MAX_DEPTH), form=st.sampled_from(["bytes", "text", "mapping"]))
def test_data_nested_beyond_the_limit_is_malformed(levels: int, form: str) -> None:
    raw = _deep_recording(levels)
    payload: Any = {"bytes": raw, "text": raw.decode(), "mapping": orjson.loads(raw)}[form]
    result = Engine().feed(payload)
    assert (result.outcome is Outcome.MALFORMED) == (levels > MAX_DEPTH)
    if levels > MAX_DEPTH:
        assert result.reason == (
            f"recording-started: data nests objects or arrays more than {MAX_DEPTH} levels deep"
        )
        with pytest.raises(InvalidEvent, match="levels deep"):
            parse_event(payload)


@given(length=st.integers(1, 3 * MAX_KEY_LENGTH), field=st.sampled_from(["meetingId", "sessionId"]))
def test_a_key_field_beyond_the_limit_is_malformed(length: int, field: str) -> None:
    data = {"meetingId": "m", "sessionId": "s", field: "é" * length}
    result = Engine().feed({"webhookType": "session-started", "data": data})
    assert (result.outcome is Outcome.MALFORMED) == (length > MAX_KEY_LENGTH)
    if length > MAX_KEY_LENGTH:
        assert result.reason == (
            f"session-started: data.{field} is longer than {MAX_KEY_LENGTH} characters ({length})"
        )
