"""Webhook events: one frozen class per type, parse_event / dump_event round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from lifecycle import (
    WEBHOOK_TYPES,
    AiDeploymentSessionEvent,
    Event,
    FileDetail,
    HlsEvent,
    InvalidEvent,
    LivestreamEvent,
    MergeRecordingEvent,
    ParticipantEvent,
    ParticipantRecordingEvent,
    ParticipantTrackRecordingEvent,
    RecordingEvent,
    ResourceEvent,
    SessionEvent,
    TranscriptionEvent,
    UnknownEvent,
    dump_event,
    parse_event,
)

RECORDER = ("starting", "started", "stopping", "stopped", "failed")

# (type prefix, states it reports, shape class, lifecycle), written from the spec
FAMILIES: list[tuple[str, tuple[str, ...], type[Event], str]] = [
    ("session", ("started", "ended"), SessionEvent, "session"),
    ("participant", ("joined", "left"), ParticipantEvent, "participant"),
    ("recording", RECORDER, RecordingEvent, "recording"),
    (
        "participant-track-recording",
        RECORDER,
        ParticipantTrackRecordingEvent,
        "participant-track-recording",
    ),
    ("participant-recording", RECORDER, ParticipantRecordingEvent, "participant-recording"),
    ("livestream", RECORDER, LivestreamEvent, "livestream"),
    ("hls", ("starting", "started", "playable", "stopping", "stopped", "failed"), HlsEvent, "hls"),
    (
        "transcription",
        ("started", "stopped", "failed", "completed"),
        TranscriptionEvent,
        "transcription",
    ),
    ("merge-recording", ("completed", "failed"), MergeRecordingEvent, "merge-recording"),
    ("resource", ("acquired",), ResourceEvent, "resource"),
    ("ai-deployment-session", RECORDER, AiDeploymentSessionEvent, "ai-deployment-session"),
    ("agent-session", RECORDER, AiDeploymentSessionEvent, "ai-deployment-session"),
]

TYPES: dict[str, tuple[type[Event], str]] = {
    f"{prefix}-{state}": (shape, name)
    for prefix, states, shape, name in FAMILIES
    for state in states
}

# the 41 example types, in the order of the provider's page
EXAMPLE_TYPES: list[str] = [
    "participant-joined",
    "participant-left",
    "session-started",
    "session-ended",
    "recording-starting",
    "recording-started",
    "recording-stopping",
    "recording-stopped",
    "recording-failed",
    "participant-track-recording-starting",
    "participant-track-recording-started",
    "participant-track-recording-stopping",
    "participant-track-recording-stopped",
    "participant-track-recording-failed",
    "participant-recording-starting",
    "participant-recording-started",
    "participant-recording-stopping",
    "participant-recording-stopped",
    "participant-recording-failed",
    "merge-recording-completed",
    "merge-recording-failed",
    "transcription-started",
    "transcription-stopped",
    "transcription-failed",
    "livestream-starting",
    "livestream-started",
    "livestream-stopping",
    "livestream-stopped",
    "livestream-failed",
    "hls-starting",
    "hls-started",
    "hls-playable",
    "hls-stopping",
    "hls-stopped",
    "hls-failed",
    "resource-acquired",
    "ai-deployment-session-starting",
    "ai-deployment-session-started",
    "ai-deployment-session-stopping",
    "ai-deployment-session-stopped",
    "ai-deployment-session-failed",
]

MEETING = "jvsg-8rjn-j304"
SESSION = "613731342f27f56e4fc4b6d0"
MP4_PATH = "/encoded/videos/62d148951a1eb20029fc9b05.mp4"
MP4_URL = "https://cdn.videosdk.live/encoded/videos/62d148951a1eb20029fc9b05.mp4"
HLS_URL = "https://cdn.videosdk.live/meetings-hls/b8a770ef-d713-4a27-9ab7-e5a0b724caaf/index.m3u8"


def _camel_class_name(webhook_type: str) -> str:
    """The spec's class name: CamelCase of the webhook type."""
    return "".join(part.capitalize() for part in webhook_type.split("-"))


def _recording(**data: Any) -> dict[str, Any]:
    """A recording-stopped payload with the given extra data."""
    return {
        "webhookType": "recording-stopped",
        "data": {"meetingId": "m1", "sessionId": "s1", **data},
    }


# -- the classes ---------------------------------------------------------------------


def test_there_are_47_webhook_types() -> None:
    """The registry knows exactly the 41 example types plus the 6 extra ones."""
    assert 47 == len(TYPES)
    assert set(TYPES) == set(WEBHOOK_TYPES)
    extra = {f"agent-session-{s}" for s in RECORDER} | {"transcription-completed"}
    assert extra == set(TYPES) - set(EXAMPLE_TYPES)


@pytest.mark.parametrize("webhook_type", sorted(TYPES))
def test_each_type_has_its_own_frozen_class(webhook_type: str) -> None:
    """The class of a type is named after it, knows it, and subclasses its shape."""
    shape, lifecycle_name = TYPES[webhook_type]
    cls = WEBHOOK_TYPES[webhook_type].event_classes[webhook_type]
    assert _camel_class_name(webhook_type) == cls.__name__
    assert webhook_type == cls.webhook_type
    assert lifecycle_name == cls.lifecycle
    assert issubclass(cls, shape)
    assert attrs.has(cls)


@pytest.mark.parametrize(
    ("webhook_type", "class_name"),
    [
        ("recording-stopped", "RecordingStopped"),
        ("hls-playable", "HlsPlayable"),
        ("participant-track-recording-started", "ParticipantTrackRecordingStarted"),
        ("ai-deployment-session-failed", "AiDeploymentSessionFailed"),
        ("agent-session-starting", "AgentSessionStarting"),
        ("transcription-completed", "TranscriptionCompleted"),
        ("merge-recording-completed", "MergeRecordingCompleted"),
        ("resource-acquired", "ResourceAcquired"),
    ],
)
def test_class_names(webhook_type: str, class_name: str) -> None:
    """Class names are the CamelCase of the webhook type."""
    assert (
        class_name
        == type(
            parse_event(
                {
                    "webhookType": webhook_type,
                    "data": {
                        "meetingId": "m",
                        "sessionId": "s",
                        "participantId": "p",
                        "kind": "audio",
                        "id": "i",
                    },
                }
            )
        ).__name__
    )


def test_events_are_frozen() -> None:
    """An event cannot be changed after parsing."""
    event = parse_event(_recording(fileUrl="u"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.file_url = "other"  # type: ignore[union-attr]


# -- the examples ----------------------------------------------------------------------


def test_examples_are_the_41_of_the_page(examples: list[dict[str, Any]]) -> None:
    """The example file holds the 41 types, in page order."""
    assert EXAMPLE_TYPES == [p["webhookType"] for p in examples]


@pytest.mark.parametrize("index", range(len(EXAMPLE_TYPES)), ids=EXAMPLE_TYPES)
def test_example_round_trips(examples: list[dict[str, Any]], index: int) -> None:
    """dump_event(parse_event(p)) gives every example back, from dict, str and bytes."""
    payload = examples[index]
    event = parse_event(payload)
    assert EXAMPLE_TYPES[index] == type(event).webhook_type
    assert payload == dump_event(event)
    text = json.dumps(payload)
    assert event == parse_event(text)
    assert event == parse_event(text.encode())
    assert payload == dump_event(parse_event(text.encode()))


@pytest.mark.parametrize(
    ("index", "attributes"),
    [
        (
            0,
            {
                "meeting_id": MEETING,
                "session_id": SESSION,
                "participant_id": "fkd74h",
                "participant_name": "John",
                "reason": None,
                "extra": {},
                "envelope": {},
                "tag_key": "webhookType",
                "warnings": (),
            },
        ),
        (
            2,
            {
                "meeting_id": MEETING,
                "session_id": SESSION,
                "start": datetime(2022, 7, 5, 15, 55, 35, 47000, tzinfo=UTC),
                "end": None,
            },
        ),
        (
            7,
            {
                "meeting_id": MEETING,
                "session_id": SESSION,
                "file_path": MP4_PATH,
                "file_url": MP4_URL,
                "id": None,
                "message": None,
            },
        ),
        (
            12,
            {
                "participant_id": "abcd",
                "kind": "audio",
                "file_details": (FileDetail(file_path=MP4_PATH, file_url=MP4_URL),),
            },
        ),
        (14, {"participant_id": "abcd", "file_format": "webm", "file_details": None}),
        (
            17,
            {
                "participant_id": "abcd",
                "file_details": (FileDetail(file_path=MP4_PATH, file_url=MP4_URL),),
            },
        ),
        (
            20,
            {
                "id": "bf37fabb-6e34-418b-bc29-97f053fc6cfe",
                "meeting_id": MEETING,
                "message": None,
                "extra": {"message?": "error message, if any"},
            },
        ),
        (
            21,
            {
                "id": "40b0a4ed-9842-40c9-a288-e4b1bf98a90a",
                "type": "realtime",
                "meeting_id": MEETING,
                "session_id": "621497578bea0d0404c35c4c",
            },
        ),
        (24, {"meeting_id": MEETING, "session_id": SESSION, "id": None}),
        (30, {"playback_hls_url": HLS_URL, "livestream_url": None, "downstream_url": None}),
        (35, {"id": "abcdef9879288c1f48339f64", "type": "recording"}),
        (36, {"session_id": "session-5bf19efa-22af-41d8-8a3f-b4dbd3f8bcac", "message": None}),
    ],
    ids=lambda v: EXAMPLE_TYPES[v] if isinstance(v, int) else "attributes",
)
def test_example_attributes(
    examples: list[dict[str, Any]], index: int, attributes: dict[str, Any]
) -> None:
    """The data of an example lands in snake_case attributes with their types."""
    event = parse_event(examples[index])
    assert attributes == {name: getattr(event, name) for name in attributes}


def test_session_ended_example_keeps_the_invalid_end(examples: list[dict[str, Any]]) -> None:
    """An invalid timestamp does not reject: it stays as text with one warning."""
    event = parse_event(examples[3])
    assert isinstance(event, SessionEvent)
    assert "2022-07-05T15:60:35.047+00:00" == event.end
    assert datetime(2022, 7, 5, 15, 55, 35, 47000, tzinfo=UTC) == event.start
    assert 1 == len(event.warnings)
    assert "data.end" in event.warnings[0]
    assert {} == event.extra
    assert examples[3] == dump_event(event)


# -- what is kept for the round trip -------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("participantName", 5),
        ("participantName", ["John"]),
        ("reason", {"code": 1}),
        ("reason", True),
    ],
)
def test_wrongly_typed_field_goes_to_extra(field: str, value: Any) -> None:
    """A known non-key field of the wrong type is kept in extra, with a warning naming it."""
    payload = {
        "webhookType": "participant-left",
        "data": {"meetingId": "m", "sessionId": "s", "participantId": "p", field: value},
    }
    event = parse_event(payload)
    assert isinstance(event, ParticipantEvent)
    assert {field: value} == event.extra
    assert 1 == len(event.warnings)
    assert f"data.{field}" in event.warnings[0]
    assert payload == dump_event(event)


@pytest.mark.parametrize(
    ("webhook_type", "field", "value"),
    [
        ("recording-stopped", "fileUrl", 5),
        ("recording-stopped", "filePath", {"a": 1}),
        ("participant-track-recording-stopped", "fileDetails", "not-a-list"),
        ("participant-track-recording-stopped", "fileDetails", [{"filePath": 3}]),
        ("participant-recording-stopped", "fileDetails", ["x"]),
        ("hls-started", "playbackHlsUrl", []),
        ("session-started", "start", 1657036535),
        ("transcription-started", "type", 1),
    ],
)
def test_wrongly_typed_field_round_trips(webhook_type: str, field: str, value: Any) -> None:
    """Wrong types of any shape (string, list of files, timestamp) survive a round trip."""
    data = {
        "meetingId": "m",
        "sessionId": "s",
        "participantId": "p",
        "kind": "video",
        "id": "i",
        field: value,
    }
    payload = {"webhookType": webhook_type, "data": data}
    event = parse_event(payload)
    assert isinstance(event, Event)
    assert value == event.extra[field]
    assert 1 == len(event.warnings)
    assert f"data.{field}" in event.warnings[0]
    assert payload == dump_event(event)


def test_unknown_data_keys_and_nulls_are_kept() -> None:
    """Unknown data keys and null values go to extra and come back out."""
    payload = _recording(fileUrl=None, brandNew={"x": [1, 2]}, message=None)
    event = parse_event(payload)
    assert isinstance(event, RecordingEvent)
    assert {"fileUrl": None, "brandNew": {"x": [1, 2]}, "message": None} == event.extra
    assert event.file_url is None
    assert () == event.warnings
    assert payload == dump_event(event)


def test_unknown_top_level_keys_are_kept() -> None:
    """Unknown envelope keys are kept in event.envelope and dumped back."""
    payload = {**_recording(fileUrl="u"), "attempt": 3, "sentAt": "2024-01-01"}
    event = parse_event(payload)
    assert isinstance(event, RecordingEvent)
    assert {"attempt": 3, "sentAt": "2024-01-01"} == event.envelope
    assert "u" == event.file_url
    assert payload == dump_event(event)


def test_type_given_as_type() -> None:
    """A payload tagged with ``type`` parses and is dumped under ``type`` again."""
    payload = {
        "type": "hls-started",
        "data": {"meetingId": "m", "sessionId": "s", "playbackHlsUrl": "h"},
    }
    event = parse_event(payload)
    assert isinstance(event, HlsEvent)
    assert "hls-started" == event.webhook_type
    assert "type" == event.tag_key
    assert "h" == event.playback_hls_url
    dumped = dump_event(event)
    assert payload == dumped
    assert "webhookType" not in dumped


def test_type_alias_keeps_a_data_type_field() -> None:
    """A transcription's own data.type is unaffected by the envelope ``type`` tag."""
    payload = {"type": "transcription-started", "data": {"id": "t", "type": "post"}}
    event = parse_event(payload)
    assert isinstance(event, TranscriptionEvent)
    assert "post" == event.type
    assert "type" == event.tag_key
    assert payload == dump_event(event)


def test_file_detail_extra_keys_round_trip() -> None:
    """Unknown keys inside a fileDetails item are kept on the FileDetail."""
    files = [{"filePath": "/a.mp4", "fileUrl": "https://x/a.mp4", "size": 10}]
    payload = {
        "webhookType": "participant-recording-stopped",
        "data": {"meetingId": "m", "sessionId": "s", "participantId": "p", "fileDetails": files},
    }
    event = parse_event(payload)
    assert isinstance(event, ParticipantRecordingEvent)
    assert (
        FileDetail(file_path="/a.mp4", file_url="https://x/a.mp4", extra={"size": 10}),
    ) == event.file_details
    assert payload == dump_event(event)


# -- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-07-05T15:55:35.047+00:00", datetime(2022, 7, 5, 15, 55, 35, 47000, tzinfo=UTC)),
        ("2022-07-05T15:55:35.047Z", datetime(2022, 7, 5, 15, 55, 35, 47000, tzinfo=UTC)),
        ("2022-07-05T15:55:35.047", datetime(2022, 7, 5, 15, 55, 35, 47000, tzinfo=UTC)),
        (
            "2022-07-05T21:25:35.047+05:30",
            datetime(
                2022, 7, 5, 21, 25, 35, 47000, tzinfo=timezone(timedelta(hours=5, minutes=30))
            ),
        ),
    ],
)
def test_valid_timestamps_become_aware_datetimes(text: str, expected: datetime) -> None:
    """Valid times parse to aware datetimes; naive ones are taken as UTC."""
    event = parse_event(
        {
            "webhookType": "session-started",
            "data": {"meetingId": "m", "sessionId": "s", "start": text},
        }
    )
    assert isinstance(event, SessionEvent)
    assert isinstance(event.start, datetime)
    assert event.start.tzinfo is not None
    assert expected.utcoffset() == event.start.utcoffset()
    assert expected == event.start
    assert () == event.warnings


@pytest.mark.parametrize(
    "text", ["2022-07-05T15:60:35.047+00:00", "yesterday", "", "2022-13-01T00:00:00Z"]
)
def test_invalid_timestamp_text_is_kept(text: str) -> None:
    """An unparsable time string stays as its raw text with a warning naming the field."""
    payload = {
        "webhookType": "session-ended",
        "data": {"meetingId": "m", "sessionId": "s", "end": text},
    }
    event = parse_event(payload)
    assert isinstance(event, SessionEvent)
    assert text == event.end
    assert 1 == len(event.warnings)
    assert "data.end" in event.warnings[0]
    assert payload == dump_event(event)


# -- aliases and unknown types ---------------------------------------------------------


@pytest.mark.parametrize("state", RECORDER)
def test_agent_session_aliases(state: str) -> None:
    """agent-session-* parse like ai-deployment-session-* into their own class."""
    payload = {"webhookType": f"agent-session-{state}", "data": {"sessionId": "a1"}}
    event = parse_event(payload)
    assert isinstance(event, AiDeploymentSessionEvent)
    assert f"agent-session-{state}" == event.webhook_type
    assert "ai-deployment-session" == event.lifecycle
    assert "a1" == event.session_id
    assert payload == dump_event(event)


def test_transcription_completed() -> None:
    """transcription-completed is a known transcription event."""
    payload = {"webhookType": "transcription-completed", "data": {"id": "t1", "type": "post"}}
    event = parse_event(payload)
    assert isinstance(event, TranscriptionEvent)
    assert ("transcription-completed", "t1", "post") == (event.webhook_type, event.id, event.type)
    assert payload == dump_event(event)


@pytest.mark.parametrize(
    "payload",
    [
        {"webhookType": "meeting-exploded", "data": {"meetingId": "m"}},
        {"webhookType": "recording-paused", "data": 7, "extra": [1]},
        {"type": "something-new"},
    ],
)
def test_unknown_type_is_kept_whole(payload: dict[str, Any]) -> None:
    """An unknown webhookType gives an UnknownEvent holding the whole payload."""
    event = parse_event(payload)
    tag = payload.get("webhookType", payload.get("type"))
    assert UnknownEvent(webhook_type=str(tag), payload=payload) == event
    assert payload == dump_event(event)
    assert event == parse_event(json.dumps(payload).encode())


# -- invalid input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (b"null", "not a JSON object"),
        ('"recording-started"', "not a JSON object"),
        ({}, "no webhookType"),
        ({"data": {"meetingId": "m", "sessionId": "s"}}, "no webhookType"),
        ({"webhookType": 5, "data": {}}, "webhookType must be a string"),
        ({"type": ["hls-started"]}, "type must be a string"),
        ({"webhookType": "recording-started"}, "data is missing"),
        ({"webhookType": "recording-started", "data": None}, "data is missing"),
        ({"webhookType": "recording-started", "data": [1]}, "data must be an object"),
        ({"webhookType": "recording-started", "data": "x"}, "data must be an object"),
        (
            {"webhookType": "recording-started", "data": {"meetingId": "m"}},
            "data.sessionId is missing",
        ),
        (
            {"webhookType": "recording-started", "data": {"meetingId": "m", "sessionId": ""}},
            "data.sessionId is empty",
        ),
        (
            {"webhookType": "recording-started", "data": {"meetingId": "m", "sessionId": 5}},
            "data.sessionId must be a string",
        ),
        (
            {"webhookType": "recording-started", "data": {"meetingId": None, "sessionId": "s"}},
            "data.meetingId",
        ),
        (
            {"webhookType": "participant-joined", "data": {"meetingId": "m", "sessionId": "s"}},
            "data.participantId",
        ),
        (
            {
                "webhookType": "participant-track-recording-started",
                "data": {"meetingId": "m", "sessionId": "s", "participantId": "p"},
            },
            "data.kind",
        ),
        ({"webhookType": "transcription-started", "data": {"meetingId": "m"}}, "data.id"),
        ({"webhookType": "resource-acquired", "data": {"id": 12}}, "data.id"),
        ({"webhookType": "agent-session-started", "data": {"meetingId": "m"}}, "data.sessionId"),
    ],
)
def test_invalid_payloads_are_rejected(payload: dict[str, Any] | str | bytes, message: str) -> None:
    """Bad input raises InvalidEvent (a ValueError) whose message names the problem."""
    with pytest.raises(InvalidEvent) as info:
        parse_event(payload)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)


def test_payload_of_another_type_is_rejected() -> None:
    """A payload that is neither a mapping nor text is an InvalidEvent, not a crash."""
    with pytest.raises(InvalidEvent, match="mapping, str or bytes"):
        parse_event(42)  # type: ignore[arg-type]
