"""Webhook events: one frozen attrs class per VideoSDK ``webhookType``.

The classes below are the *shapes* of the payloads, one per lifecycle; the class of
each webhook type is a subclass of its shape, generated from the lifecycle registry
(see ``_lifecycles``), so a new webhook type is one table entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from attrs import field, frozen

__all__ = [
    "AiDeploymentSessionEvent",
    "Event",
    "FileDetail",
    "HlsEvent",
    "LivestreamEvent",
    "MergeRecordingEvent",
    "ParticipantEvent",
    "ParticipantRecordingEvent",
    "ParticipantTrackRecordingEvent",
    "RecordingEvent",
    "ResourceEvent",
    "SessionEvent",
    "TranscriptionEvent",
    "UnknownEvent",
]

Timestamp = datetime | str | None
"""A valid time becomes an aware ``datetime``; an invalid one keeps its raw text."""


@frozen(kw_only=True)
class FileDetail:
    """One file of a recording (``fileDetails`` items)."""

    file_path: str | None = None
    file_url: str | None = None
    extra: Mapping[str, Any] = field(factory=dict)


@frozen(kw_only=True)
class Event:
    """Base of every known webhook event.

    ``extra`` keeps the ``data`` keys the class does not know (and values of a wrong
    type, with a warning), ``envelope`` the unknown top-level keys, ``tag_key`` whether
    the type came as ``webhookType`` or ``type``: :func:`dump_event` gives them back.

    .. versionadded:: 0.1
    """

    webhook_type: ClassVar[str] = ""
    lifecycle: ClassVar[str] = ""

    extra: Mapping[str, Any] = field(factory=dict)
    envelope: Mapping[str, Any] = field(factory=dict)
    tag_key: str = "webhookType"
    warnings: tuple[str, ...] = field(default=(), eq=False)


@frozen(kw_only=True)
class SessionEvent(Event):
    """``session-started`` and ``session-ended``."""

    meeting_id: str
    session_id: str
    start: Timestamp = None
    end: Timestamp = None
    reason: str | None = None
    error: str | None = None


@frozen(kw_only=True)
class ParticipantEvent(Event):
    """``participant-joined`` and ``participant-left``."""

    meeting_id: str
    session_id: str
    participant_id: str
    participant_name: str | None = None
    reason: str | None = None


@frozen(kw_only=True)
class RecordingEvent(Event):
    """``recording-*``: the meeting's composite recording."""

    meeting_id: str
    session_id: str
    id: str | None = None
    file_path: str | None = None
    file_url: str | None = None
    message: str | None = None


@frozen(kw_only=True)
class ParticipantTrackRecordingEvent(Event):
    """``participant-track-recording-*``: one track of one participant."""

    meeting_id: str
    session_id: str
    participant_id: str
    kind: str
    id: str | None = None
    file_details: tuple[FileDetail, ...] | None = None
    message: str | None = None


@frozen(kw_only=True)
class ParticipantRecordingEvent(Event):
    """``participant-recording-*``: all tracks of one participant."""

    meeting_id: str
    session_id: str
    participant_id: str
    id: str | None = None
    file_format: str | None = None
    file_details: tuple[FileDetail, ...] | None = None
    message: str | None = None


@frozen(kw_only=True)
class MergeRecordingEvent(Event):
    """``merge-recording-completed`` and ``merge-recording-failed``."""

    id: str
    meeting_id: str | None = None
    session_id: str | None = None
    message: str | None = None


@frozen(kw_only=True)
class TranscriptionEvent(Event):
    """``transcription-*``: realtime or post transcription."""

    id: str
    type: str | None = None
    meeting_id: str | None = None
    session_id: str | None = None
    message: str | None = None


@frozen(kw_only=True)
class LivestreamEvent(Event):
    """``livestream-*``: RTMP livestream of the meeting."""

    meeting_id: str
    session_id: str
    id: str | None = None
    message: str | None = None


@frozen(kw_only=True)
class HlsEvent(Event):
    """``hls-*``: HTTP live streaming of the meeting."""

    meeting_id: str
    session_id: str
    id: str | None = None
    playback_hls_url: str | None = None
    livestream_url: str | None = None
    downstream_url: str | None = None
    message: str | None = None


@frozen(kw_only=True)
class ResourceEvent(Event):
    """``resource-acquired``."""

    id: str
    type: str | None = None


@frozen(kw_only=True)
class AiDeploymentSessionEvent(Event):
    """``ai-deployment-session-*`` (alias ``agent-session-*``)."""

    session_id: str
    message: str | None = None


@frozen(kw_only=True)
class UnknownEvent:
    """A payload whose ``webhookType`` this version does not know; kept whole.

    .. versionadded:: 0.1
    """

    webhook_type: str
    payload: Mapping[str, Any]
