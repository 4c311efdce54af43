"""The Engine API: feeding, status, resources, anomalies, subscriptions, strict mode."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pytest

from lifecycle import (
    AFTER_SESSION_END,
    Engine,
    FeedResult,
    HistoryEntry,
    InvalidArgument,
    LifecycleViolation,
    Outcome,
    RecordingEvent,
    ResourceStatus,
    SessionEvent,
)

from support import Clock

A, D, G = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.GAP
OOO, ILL = Outcome.OUT_OF_ORDER, Outcome.ILLEGAL

M = "jvsg-8rjn-j304"
S = "613731342f27f56e4fc4b6d0"
S_TRANSCRIPTION = "621497578bea0d0404c35c4c"
MERGE_ID = "bf37fabb-6e34-418b-bc29-97f053fc6cfe"
TRANSCRIPTION_ID = "40b0a4ed-9842-40c9-a288-e4b1bf98a90a"
RESOURCE_ID = "abcdef9879288c1f48339f64"
AI_SESSION = "session-5bf19efa-22af-41d8-8a3f-b4dbd3f8bcac"
HLS_URL = "https://cdn.videosdk.live/meetings-hls/b8a770ef-d713-4a27-9ab7-e5a0b724caaf/index.m3u8"
MP4_URL = "https://cdn.videosdk.live/encoded/videos/62d148951a1eb20029fc9b05.mp4"

KEY_OF: dict[str, tuple[str, ...]] = {
    "session": (M, S),
    "participant": (M, S, "fkd74h"),
    "recording": (M, S),
    "participant-track-recording": (M, S, "abcd", "audio"),
    "participant-recording": (M, S, "abcd"),
    "merge-recording": (MERGE_ID,),
    "transcription": (TRANSCRIPTION_ID,),
    "livestream": (M, S),
    "hls": (M, S),
    "resource": (RESOURCE_ID,),
    "ai-deployment-session": (AI_SESSION,),
}

REC = ("starting", "started", "stopping")


class Alone(NamedTuple):
    """An example fed to a fresh engine: its outcome from idle and where it lands."""

    webhook_type: str
    lifecycle: str
    outcome: Outcome
    target: str
    missing: tuple[str, ...]


def _recorder_alone(prefix: str, lifecycle: str) -> list[Alone]:
    return [
        Alone(f"{prefix}-starting", lifecycle, A, "starting", ()),
        Alone(f"{prefix}-started", lifecycle, G, "started", REC[:1]),
        Alone(f"{prefix}-stopping", lifecycle, G, "stopping", REC[:2]),
        Alone(f"{prefix}-stopped", lifecycle, G, "stopped", REC),
        Alone(f"{prefix}-failed", lifecycle, G, "failed", REC[:1]),
    ]


# the 41 examples in page order, each fed alone (written by hand from the rules)
ALONE: list[Alone] = [
    Alone("participant-joined", "participant", A, "joined", ()),
    Alone("participant-left", "participant", G, "left", ("joined",)),
    Alone("session-started", "session", A, "started", ()),
    Alone("session-ended", "session", G, "ended", ("started",)),
    *_recorder_alone("recording", "recording"),
    *_recorder_alone("participant-track-recording", "participant-track-recording"),
    *_recorder_alone("participant-recording", "participant-recording"),
    Alone("merge-recording-completed", "merge-recording", A, "completed", ()),
    Alone("merge-recording-failed", "merge-recording", A, "failed", ()),
    Alone("transcription-started", "transcription", A, "started", ()),
    Alone("transcription-stopped", "transcription", G, "stopped", ("started",)),
    Alone("transcription-failed", "transcription", A, "failed", ()),
    *_recorder_alone("livestream", "livestream"),
    Alone("hls-starting", "hls", A, "starting", ()),
    Alone("hls-started", "hls", G, "started", ("starting",)),
    Alone("hls-playable", "hls", G, "playable", ("starting", "started")),
    Alone("hls-stopping", "hls", G, "stopping", ("starting", "started")),
    Alone("hls-stopped", "hls", G, "stopped", ("starting", "started", "stopping")),
    Alone("hls-failed", "hls", G, "failed", ("starting",)),
    Alone("resource-acquired", "resource", A, "acquired", ()),
    *_recorder_alone("ai-deployment-session", "ai-deployment-session"),
]


class InOrder(NamedTuple):
    """An example fed after all the ones before it on the page."""

    webhook_type: str
    outcome: Outcome
    before: str
    after: str
    warning: str | None


END = AFTER_SESSION_END


def _recorder_in_order(prefix: str, warn_start: bool) -> list[InOrder]:
    return [
        InOrder(f"{prefix}-starting", A, "idle", "starting", END if warn_start else None),
        InOrder(f"{prefix}-started", A, "starting", "started", None),
        InOrder(f"{prefix}-stopping", A, "started", "stopping", None),
        InOrder(f"{prefix}-stopped", A, "stopping", "stopped", None),
        InOrder(f"{prefix}-failed", ILL, "stopped", "stopped", None),
    ]


# the 41 examples fed in page order (written by hand from the rules)
IN_ORDER: list[InOrder] = [
    InOrder("participant-joined", A, "idle", "joined", None),
    InOrder("participant-left", A, "joined", "left", None),
    InOrder("session-started", A, "idle", "started", None),
    InOrder("session-ended", A, "started", "ended", "data.end"),
    *_recorder_in_order("recording", warn_start=True),
    *_recorder_in_order("participant-track-recording", warn_start=True),
    *_recorder_in_order("participant-recording", warn_start=True),
    InOrder("merge-recording-completed", A, "idle", "completed", None),
    InOrder("merge-recording-failed", ILL, "completed", "completed", None),
    # another sessionId than the ended session: no warning
    InOrder("transcription-started", A, "idle", "started", None),
    InOrder("transcription-stopped", A, "started", "stopped", None),
    InOrder("transcription-failed", ILL, "stopped", "stopped", None),
    *_recorder_in_order("livestream", warn_start=True),
    InOrder("hls-starting", A, "idle", "starting", END),
    InOrder("hls-started", A, "starting", "started", None),
    InOrder("hls-playable", A, "started", "playable", None),
    InOrder("hls-stopping", A, "playable", "stopping", None),
    InOrder("hls-stopped", A, "stopping", "stopped", None),
    InOrder("hls-failed", ILL, "stopped", "stopped", None),
    InOrder("resource-acquired", A, "idle", "acquired", None),
    *_recorder_in_order("ai-deployment-session", warn_start=False),
]


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def rec(webhook_type: str, **data: Any) -> dict[str, Any]:
    """A recording payload for meeting m1, session s1."""
    return {
        "webhookType": f"recording-{webhook_type}",
        "data": {"meetingId": "m1", "sessionId": "s1", **data},
    }


def _fed_in_order(examples: list[dict[str, Any]]) -> tuple[Engine, list[FeedResult]]:
    engine = Engine()
    return engine, [engine.feed(p) for p in examples]


# -- the provider's examples ---------------------------------------------------------------


def test_hand_tables_follow_the_page(examples: list[dict[str, Any]]) -> None:
    """Both hand-written tables list the 41 examples in page order."""
    types = [p["webhookType"] for p in examples]
    assert 41 == len(types)
    assert types == [row.webhook_type for row in ALONE]
    assert types == [row.webhook_type for row in IN_ORDER]


@pytest.mark.parametrize("index", range(len(ALONE)), ids=[row.webhook_type for row in ALONE])
def test_each_example_alone(examples: list[dict[str, Any]], index: int) -> None:
    """Every example fed to a fresh engine is applied or a gap and lands in its target state."""
    row = ALONE[index]
    engine = Engine()
    result = engine.feed(examples[index])
    assert row.outcome == result.outcome
    assert (row.lifecycle, KEY_OF[row.lifecycle], row.webhook_type) == (
        result.lifecycle,
        result.key,
        result.webhook_type,
    )
    assert ("idle", row.target, row.missing) == (result.before, result.after, result.missing)
    status = engine.status(row.lifecycle, *KEY_OF[row.lifecycle])
    assert status is not None
    assert row.target == status.state
    assert 1 == len(engine)


def test_examples_in_page_order(examples: list[dict[str, Any]]) -> None:
    """The 41 examples fed in page order give exactly the hand-derived outcomes."""
    _, results = _fed_in_order(examples)
    actual = [(r.webhook_type, r.outcome, r.before, r.after) for r in results]
    assert [(row.webhook_type, row.outcome, row.before, row.after) for row in IN_ORDER] == actual
    assert list(range(1, 42)) == [r.seq for r in results]


@pytest.mark.parametrize("index", range(len(IN_ORDER)), ids=[row.webhook_type for row in IN_ORDER])
def test_example_warnings_in_page_order(examples: list[dict[str, Any]], index: int) -> None:
    """In page order, starts after session-ended warn, and session-ended names data.end."""
    _, results = _fed_in_order(examples)
    warning = IN_ORDER[index].warning
    warnings = results[index].warnings
    if warning is None:
        assert () == warnings
    else:
        assert 1 == len(warnings)
        assert warning in warnings[0]


def test_examples_in_page_order_final_states(examples: list[dict[str, Any]]) -> None:
    """After the page, each of the 11 resources is in the state the hand table says."""
    engine, _ = _fed_in_order(examples)
    assert 11 == len(engine)
    assert 41 == engine.events_fed
    assert {
        "session": "ended",
        "participant": "left",
        "recording": "stopped",
        "participant-track-recording": "stopped",
        "participant-recording": "stopped",
        "merge-recording": "completed",
        "transcription": "stopped",
        "livestream": "stopped",
        "hls": "stopped",
        "resource": "acquired",
        "ai-deployment-session": "stopped",
    } == {r.lifecycle: r.state for r in engine}
    assert {name: key for name, key in KEY_OF.items()} == {r.lifecycle: r.key for r in engine}


def test_examples_anomalies(examples: list[dict[str, Any]]) -> None:
    """Anomalies are the illegal failures and the applied events with warnings, in order."""
    engine, results = _fed_in_order(examples)
    expected = [
        results[i]
        for i, row in enumerate(IN_ORDER)
        if row.outcome is not A or row.warning is not None
    ]
    assert 14 == len(expected)
    assert expected == engine.anomalies()
    assert [
        examples[i]
        for i, row in enumerate(IN_ORDER)
        if row.outcome is not A or row.warning is not None
    ] == [r.payload for r in engine.anomalies()]


@pytest.mark.parametrize(
    ("filters", "types"),
    [
        (
            {"outcome": "illegal"},
            [
                "recording-failed",
                "participant-track-recording-failed",
                "participant-recording-failed",
                "merge-recording-failed",
                "transcription-failed",
                "livestream-failed",
                "hls-failed",
                "ai-deployment-session-failed",
            ],
        ),
        (
            {"outcome": Outcome.APPLIED},
            [
                "session-ended",
                "recording-starting",
                "participant-track-recording-starting",
                "participant-recording-starting",
                "livestream-starting",
                "hls-starting",
            ],
        ),
        ({"lifecycle": "hls"}, ["hls-starting", "hls-failed"]),
        ({"lifecycle": "hls", "outcome": "illegal"}, ["hls-failed"]),
        ({"session_id": S_TRANSCRIPTION}, ["transcription-failed"]),
        ({"meeting_id": M, "lifecycle": "merge-recording"}, ["merge-recording-failed"]),
        ({"meeting_id": "nope"}, []),
        ({"lifecycle": "resource"}, []),
        ({"outcome": "gap"}, []),
    ],
)
def test_anomaly_filters(
    examples: list[dict[str, Any]], filters: dict[str, Any], types: list[str]
) -> None:
    """anomalies() filters on lifecycle, outcome, meetingId and sessionId."""
    engine, _ = _fed_in_order(examples)
    assert types == [r.webhook_type for r in engine.anomalies(**filters)]


@pytest.mark.parametrize(
    ("filters", "lifecycles"),
    [
        (
            {},
            [
                "session",
                "participant",
                "recording",
                "participant-track-recording",
                "participant-recording",
                "livestream",
                "hls",
                "transcription",
                "merge-recording",
                "resource",
                "ai-deployment-session",
            ],
        ),
        (
            {"meeting_id": M},
            [
                "session",
                "participant",
                "recording",
                "participant-track-recording",
                "participant-recording",
                "livestream",
                "hls",
                "transcription",
                "merge-recording",
            ],
        ),
        ({"session_id": S_TRANSCRIPTION}, ["transcription"]),
        ({"session_id": AI_SESSION}, ["ai-deployment-session"]),
        (
            {"state": "stopped"},
            [
                "recording",
                "participant-track-recording",
                "participant-recording",
                "livestream",
                "hls",
                "transcription",
                "ai-deployment-session",
            ],
        ),
        ({"state": "failed"}, []),
        ({"lifecycle": "hls"}, ["hls"]),
        ({"lifecycle": "hls", "state": "playable"}, []),
        (
            {"lifecycle": "participant", "meeting_id": M, "session_id": S, "state": "left"},
            ["participant"],
        ),
    ],
)
def test_resource_filters(
    examples: list[dict[str, Any]], filters: dict[str, Any], lifecycles: list[str]
) -> None:
    """resources() filters on lifecycle, meetingId, sessionId and state, in registry order."""
    engine, _ = _fed_in_order(examples)
    assert lifecycles == [r.lifecycle for r in engine.resources(**filters)]


def test_status_data_of_the_examples(examples: list[dict[str, Any]]) -> None:
    """status().data merges the cycle's data in wire names, key fields included."""
    engine, _ = _fed_in_order(examples)
    hls = engine.status("hls", meeting_id=M, session_id=S)
    assert hls is not None
    assert {"meetingId": M, "sessionId": S, "playbackHlsUrl": HLS_URL} == hls.data
    recording = engine.status("recording", M, S)
    assert recording is not None
    assert MP4_URL == recording.data["fileUrl"]
    track = engine.status("participant-track-recording", M, S, "abcd", "audio")
    assert track is not None
    assert [
        {"filePath": "/encoded/videos/62d148951a1eb20029fc9b05.mp4", "fileUrl": MP4_URL}
    ] == track.data["fileDetails"]
    participant = engine.status("participant", M, S, "fkd74h")
    assert participant is not None
    assert {
        "meetingId": M,
        "sessionId": S,
        "participantId": "fkd74h",
        "participantName": "John",
    } == participant.data


# -- feeding -------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["mapping", "str", "bytes"])
def test_feed_accepts_mapping_str_and_bytes(form: str) -> None:
    """A payload can be a mapping, JSON text or JSON bytes, with the same classification."""
    payload = rec("stopped", fileUrl="u")
    forms: dict[str, dict[str, Any] | str | bytes] = {
        "mapping": payload,
        "str": json.dumps(payload),
        "bytes": json.dumps(payload).encode(),
    }
    fed = forms[form]
    engine = Engine()
    result = engine.feed(fed)
    assert (G, "stopped", ("starting", "started", "stopping")) == (
        result.outcome,
        result.after,
        result.missing,
    )
    assert fed is result.payload
    assert payload["data"] == dict(result.data)
    event = result.event
    assert isinstance(event, RecordingEvent)
    assert "u" == event.file_url


def test_seq_counts_every_payload() -> None:
    """seq grows by one for every payload, whatever its outcome; events_fed follows."""
    engine = Engine()
    payloads: list[Any] = [
        rec("starting"),
        b"nonsense",
        rec("starting"),
        {"webhookType": "brand-new"},
        rec("failed"),
        rec("stopped"),
        {"webhookType": "recording-stopped", "data": {}},
    ]
    results = [engine.feed(p) for p in payloads]
    assert [1, 2, 3, 4, 5, 6, 7] == [r.seq for r in results]
    assert [A, Outcome.MALFORMED, D, Outcome.UNKNOWN_TYPE, A, ILL, Outcome.MALFORMED] == [
        r.outcome for r in results
    ]
    assert 7 == engine.events_fed
    assert 1 == len(engine)


def test_feed_never_raises_on_garbage() -> None:
    """Whatever is fed, a non-strict engine returns a malformed result."""
    engine = Engine()
    garbage: list[Any] = [42, None, ["a"], 3.5]
    for bad in garbage:
        result = engine.feed(bad)
        assert Outcome.MALFORMED == result.outcome
        assert bad is result.payload
        assert {} == result.data
    assert 4 == engine.events_fed


def test_feed_result_fields() -> None:
    """A FeedResult carries its clock time, its change flag and its parsed event."""
    clock = Clock(1_700_000_000.5)
    engine = Engine(clock=clock)
    result = engine.feed(
        {
            "webhookType": "session-started",
            "data": {
                "meetingId": "m1",
                "sessionId": "s1",
                "start": "2024-01-02T03:04:05.000+00:00",
            },
        }
    )
    assert 1_700_000_000.5 == result.timestamp
    assert _at(1_700_000_000.5) == result.received_at
    assert result.received_at.tzinfo is not None
    assert result.changed is True
    assert None is result.reason
    assert isinstance(result.event, SessionEvent)
    assert datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC) == result.event.start
    duplicate = engine.feed(
        {"webhookType": "session-started", "data": {"meetingId": "m1", "sessionId": "s1"}}
    )
    assert duplicate.changed is False


def test_event_of_a_payload_with_null_webhook_type_and_a_type() -> None:
    """A payload the engine classified has a parsed event, even with webhookType null."""
    payload = {
        "webhookType": None,
        "type": "recording-started",
        "data": {"meetingId": "m1", "sessionId": "s1"},
    }
    result = Engine().feed(payload)
    assert (G, "started") == (result.outcome, result.after)
    event = result.event
    assert isinstance(event, RecordingEvent)
    assert "m1" == event.meeting_id


def test_malformed_bytes_are_kept_as_bytes() -> None:
    """A malformed payload is kept in anomalies as it came, bytes as bytes."""
    engine = Engine()
    engine.feed(b'{"webhookType": "recording-started", "data": {"meetingId": "m1"}}')
    engine.feed(b"\x00garbage")
    anomalies = engine.anomalies()
    assert [
        b'{"webhookType": "recording-started", "data": {"meetingId": "m1"}}',
        b"\x00garbage",
    ] == [r.payload for r in anomalies]
    assert ["recording-started: data.sessionId is missing"] == [anomalies[0].reason]
    assert "not JSON" in (anomalies[1].reason or "")
    assert [Outcome.MALFORMED, Outcome.MALFORMED] == [r.outcome for r in anomalies]


def test_later_changes_to_the_fed_mapping_do_not_leak() -> None:
    """Status data does not change when the caller later mutates the mapping it fed."""
    engine = Engine()
    payload = rec("starting", id="r-1")
    engine.feed(payload)
    payload["data"]["id"] = "changed"
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert "r-1" == status.data["id"]


# -- status --------------------------------------------------------------------------------


def test_status_by_position_and_by_name() -> None:
    """status() takes the key values in order or as snake_case keyword arguments."""
    engine = Engine()
    engine.feed(
        {
            "webhookType": "participant-track-recording-started",
            "data": {"meetingId": "m1", "sessionId": "s1", "participantId": "p1", "kind": "video"},
        }
    )
    by_position = engine.status("participant-track-recording", "m1", "s1", "p1", "video")
    by_name = engine.status(
        "participant-track-recording",
        kind="video",
        participant_id="p1",
        session_id="s1",
        meeting_id="m1",
    )
    assert by_position is not None
    assert by_position == by_name
    assert ("m1", "s1", "p1", "video") == by_position.key
    assert "participant-track-recording" == by_position.lifecycle
    assert {
        "meeting_id": "m1",
        "session_id": "s1",
        "participant_id": "p1",
        "kind": "video",
    } == by_position.ids
    assert by_position == engine.status("participant-track-recording", **by_position.ids)


@pytest.mark.parametrize(
    ("lifecycle", "ids"),
    [
        ("transcription", {"id": "t1"}),
        ("resource", {"id": "t1"}),
        ("ai-deployment-session", {"session_id": "t1"}),
    ],
)
def test_status_ids_of_single_key_lifecycles(lifecycle: str, ids: dict[str, Any]) -> None:
    """Single-field keys are given as id= or session_id=."""
    engine = Engine()
    first = {
        "transcription": "transcription-started",
        "resource": "resource-acquired",
        "ai-deployment-session": "agent-session-started",
    }[lifecycle]
    engine.feed({"webhookType": first, "data": {"id": "t1", "sessionId": "t1"}})
    status = engine.status(lifecycle, **ids)
    assert status is not None
    assert ("t1",) == status.key
    assert ids == status.ids


def test_status_of_an_unseen_resource_is_none() -> None:
    """An untracked resource has no status."""
    engine = Engine()
    engine.feed(rec("started"))
    assert engine.status("recording", "m1", "other") is None
    assert engine.status("hls", meeting_id="m1", session_id="s1") is None


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("m1",), {}),
        (("m1", "s1", "x"), {}),
        ((), {"meeting_id": "m1"}),
        ((), {"meeting_id": "m1", "session": "s1"}),
        ((), {"meeting_id": "m1", "session_id": "s1", "participant_id": "p"}),
        (("m1",), {"session_id": "s1"}),
        ((), {"meetingId": "m1", "sessionId": "s1"}),
    ],
)
def test_status_with_wrong_key_raises_invalid_argument(
    args: tuple[str, ...], kwargs: dict[str, Any]
) -> None:
    """A key of the wrong size or wrong keyword names is an InvalidArgument (a ValueError)."""
    engine = Engine()
    engine.feed(rec("started"))
    with pytest.raises(InvalidArgument, match="keyed by"):
        engine.status("recording", *args, **kwargs)


def test_unknown_lifecycle_raises_invalid_argument() -> None:
    """Asking about a lifecycle that does not exist is an InvalidArgument, a ValueError."""
    engine = Engine()
    with pytest.raises(InvalidArgument, match="unknown lifecycle 'video'"):
        engine.status("video", "m1", "s1")
    with pytest.raises(ValueError, match="unknown lifecycle"):
        engine.resources(lifecycle="video")


def test_status_data_merges_and_resets() -> None:
    """Data merges over a cycle (latest value wins, gaps too) and resets on restart."""
    engine = Engine()
    engine.feed(rec("starting", id="r1"))
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert {"meetingId": "m1", "sessionId": "s1", "id": "r1"} == status.data
    engine.feed(rec("stopped", fileUrl="u1", filePath="/p1"))  # gap
    engine.feed(rec("stopped", fileUrl="ignored"))  # duplicate
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert {
        "meetingId": "m1",
        "sessionId": "s1",
        "id": "r1",
        "fileUrl": "u1",
        "filePath": "/p1",
    } == status.data
    engine.feed(rec("starting", id="r2"))  # restart
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert {"meetingId": "m1", "sessionId": "s1", "id": "r2"} == status.data


def test_history_and_clock() -> None:
    """History lists each event of a resource at the clock's time; entered_at is the last change."""
    clock = Clock(100.0)
    engine = Engine(clock=clock)
    steps = [
        ("starting", A),
        ("starting", D),
        ("stopping", G),
        ("started", OOO),
        ("stopped", A),
        ("failed", ILL),
    ]
    for i, (state, _) in enumerate(steps):
        clock.now = 100.0 + 10 * i
        engine.feed(rec(state))
    engine.feed(rec("starting", meetingId="other"))  # another resource
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert (
        tuple(
            HistoryEntry(i + 1, f"recording-{state}", outcome, _at(100.0 + 10 * i))
            for i, (state, outcome) in enumerate(steps)
        )
        == status.history
    )
    assert "stopped" == status.state
    assert _at(140.0) == status.entered_at
    assert 2 == len(engine)


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_history_limit_drops_the_oldest(limit: int) -> None:
    """history_limit caps each resource's history, keeping the newest entries."""
    engine = Engine(history_limit=limit)
    for state in ["starting", "started", "started", "stopping", "stopped", "stopped"]:
        engine.feed(rec(state))
    engine.feed({"webhookType": "hls-starting", "data": {"meetingId": "m1", "sessionId": "s1"}})
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert [1, 2, 3, 4, 5, 6][-limit:] == [h.seq for h in status.history]
    hls = engine.status("hls", "m1", "s1")
    assert hls is not None
    assert [7] == [h.seq for h in hls.history]


@pytest.mark.parametrize("limit", [0, -1])
def test_history_limit_must_be_positive(limit: int) -> None:
    """A history limit below one is rejected."""
    with pytest.raises(ValueError, match="history_limit"):
        Engine(history_limit=limit)


def test_iteration_and_len() -> None:
    """Iterating an engine gives the status of every tracked resource; len counts them."""
    engine = Engine()
    assert 0 == len(engine)
    assert [] == list(engine)
    engine.feed(rec("starting"))
    engine.feed(rec("started"))
    engine.feed({"webhookType": "resource-acquired", "data": {"id": "r1"}})
    assert 2 == len(engine)
    statuses = list(engine)
    assert all(isinstance(s, ResourceStatus) for s in statuses)
    assert [("recording", "started"), ("resource", "acquired")] == [
        (s.lifecycle, s.state) for s in statuses
    ]


# -- subscriptions ---------------------------------------------------------------------------


def test_subscribers_see_changes_only() -> None:
    """A subscriber is called after applied and gap results, never after the others."""
    engine = Engine()
    seen: list[FeedResult] = []
    engine.subscribe(seen.append)
    payloads: list[dict[str, Any] | bytes] = [
        rec("starting"),
        rec("starting"),
        rec("stopping"),
        rec("started"),
        rec("stopped"),
        rec("failed"),
        b"junk",
        {"webhookType": "brand-new"},
    ]
    fed = [engine.feed(p) for p in payloads]
    assert [fed[0], fed[2], fed[4]] == seen
    assert [A, G, A] == [r.outcome for r in seen]


@pytest.mark.parametrize(
    ("lifecycle", "state", "expected"),
    [
        (None, None, ["recording-starting", "hls-starting", "recording-stopped", "hls-started"]),
        ("recording", None, ["recording-starting", "recording-stopped"]),
        (None, "starting", ["recording-starting", "hls-starting"]),
        ("hls", "started", ["hls-started"]),
        ("hls", "stopped", []),
    ],
)
def test_subscription_filters(
    lifecycle: str | None, state: str | None, expected: list[str]
) -> None:
    """Subscriptions can be limited to one lifecycle and to the state entered."""
    engine = Engine()
    seen: list[FeedResult] = []
    engine.subscribe(seen.append, lifecycle=lifecycle, state=state)
    hls = {"meetingId": "m1", "sessionId": "s1"}
    engine.feed(rec("starting"))
    engine.feed({"webhookType": "hls-starting", "data": hls})
    engine.feed(rec("stopped"))
    engine.feed({"webhookType": "hls-started", "data": hls})
    engine.feed({"webhookType": "hls-started", "data": hls})
    assert expected == [r.webhook_type for r in seen]


def test_unsubscribe() -> None:
    """The function subscribe returns stops the calls; calling it twice is harmless."""
    engine = Engine()
    first: list[FeedResult] = []
    second: list[FeedResult] = []
    stop = engine.subscribe(first.append)
    engine.subscribe(second.append)
    engine.feed(rec("starting"))
    stop()
    stop()
    engine.feed(rec("started"))
    assert ["recording-starting"] == [r.webhook_type for r in first]
    assert ["recording-starting", "recording-started"] == [r.webhook_type for r in second]


def test_raising_subscriber_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """A callback that raises is logged and neither stops feed nor the other subscribers."""
    engine = Engine()
    seen: list[FeedResult] = []

    def broken(result: FeedResult) -> None:
        raise RuntimeError("subscriber bug")

    engine.subscribe(broken)
    engine.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="lifecycle"):
        result = engine.feed(rec("starting"))
    assert A == result.outcome
    assert [result] == seen
    status = engine.status("recording", "m1", "s1")
    assert status is not None
    assert "starting" == status.state
    assert 1 == len(caplog.records)
    assert "lifecycle" == caplog.records[0].name
    assert caplog.records[0].exc_info is not None
    assert "subscriber bug" in caplog.text


# -- strict mode -----------------------------------------------------------------------------

VIOLATIONS: list[tuple[str, list[Any], Any, Outcome]] = [
    ("gap", [rec("starting")], rec("stopping"), G),
    ("gap-from-idle", [], rec("stopped"), G),
    ("out_of_order", [rec("starting"), rec("started")], rec("starting"), OOO),
    (
        "illegal",
        [rec("starting"), rec("started"), rec("stopping"), rec("stopped")],
        rec("failed"),
        ILL,
    ),
    (
        "restart-with-old-id",
        [rec("starting", id="x"), rec("failed", id="x")],
        rec("starting", id="x"),
        OOO,
    ),
    ("malformed", [rec("starting")], b"{", Outcome.MALFORMED),
    (
        "malformed-key",
        [rec("starting")],
        {"webhookType": "recording-started", "data": {}},
        Outcome.MALFORMED,
    ),
    (
        "unknown_type",
        [rec("starting")],
        {"webhookType": "brand-new", "data": {}},
        Outcome.UNKNOWN_TYPE,
    ),
]


@pytest.mark.parametrize(
    ("prefix", "payload", "outcome"),
    [(p, x, o) for _, p, x, o in VIOLATIONS],
    ids=[i for i, _, _, _ in VIOLATIONS],
)
def test_strict_engine_raises_and_changes_nothing(
    prefix: list[Any], payload: Any, outcome: Outcome
) -> None:
    """A strict engine raises LifecycleViolation for anything not applied or duplicate."""
    engine = Engine(strict=True)
    seen: list[FeedResult] = []
    engine.subscribe(seen.append)
    for p in prefix:
        engine.feed(p)
    status = engine.status("recording", "m1", "s1")
    fed, resources, notified = engine.events_fed, len(engine), len(seen)
    with pytest.raises(LifecycleViolation) as info:
        engine.feed(payload)
    assert outcome == info.value.result.outcome
    assert payload is info.value.result.payload
    assert outcome.value in str(info.value)
    assert status == engine.status("recording", "m1", "s1")
    assert fed == engine.events_fed
    assert resources == len(engine)
    assert notified == len(seen)
    assert [] == engine.anomalies()


def test_strict_engine_accepts_applied_and_duplicate() -> None:
    """Applied (with or without warnings) and duplicate events pass a strict engine."""
    engine = Engine(strict=True)
    session = {"meetingId": "m1", "sessionId": "s1"}
    payloads: list[dict[str, Any]] = [
        rec("starting"),
        rec("starting"),
        rec("started"),
        {"webhookType": "session-started", "data": session},
        {"webhookType": "session-ended", "data": session},
        {"webhookType": "hls-starting", "data": session},
    ]
    outcomes = [engine.feed(p).outcome for p in payloads]
    assert [A, D, A, A, A, A] == outcomes
    assert 6 == engine.events_fed
    assert [D, A] == [r.outcome for r in engine.anomalies()]
    assert (AFTER_SESSION_END,) == engine.anomalies()[1].warnings


def test_violation_message_names_the_problem() -> None:
    """The violation's message gives outcome, lifecycle, key, type and state."""
    engine = Engine(strict=True)
    with pytest.raises(LifecycleViolation) as info:
        engine.feed(rec("stopped"))
    assert "gap on recording m1/s1: recording-stopped in state 'idle'" == str(info.value)
    result = info.value.result
    assert (G, "idle", "stopped", ("starting", "started", "stopping")) == (
        result.outcome,
        result.before,
        result.after,
        result.missing,
    )
