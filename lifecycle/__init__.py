"""lifecycle: VideoSDK webhooks turned into live, queryable state machines.

Feed every webhook to an :class:`Engine`; each one drives the state machine of its
resource (recording, HLS, participant ...) and is classified as applied, duplicate,
gap, out of order, illegal, unknown or malformed. ``Engine.open(url)`` keeps the state
in SQLite or PostgreSQL; ``lifecycle.server`` is the HTTP receiver, and the ``lifecycle``
command replays, queries and serves.
"""

from ._convert import dump_event, parse_event
from ._engine import (
    AFTER_SESSION_END,
    REDELIVERY,
    Engine,
    FeedResult,
    HistoryEntry,
    LifecycleViolation,
    ResourceKey,
    ResourceStatus,
)
from ._events import (
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
)
from ._lifecycles import (
    LIFECYCLES,
    WEBHOOK_TYPES,
    DefinitionError,
    Lifecycle,
    LifecycleDef,
    Outcome,
    Step,
    compile_lifecycle,
)
from ._store import SCHEMA_VERSION, StoreUnavailable

__all__ = [
    "AFTER_SESSION_END",
    "LIFECYCLES",
    "REDELIVERY",
    "SCHEMA_VERSION",
    "WEBHOOK_TYPES",
    "AiDeploymentSessionEvent",
    "DefinitionError",
    "Engine",
    "Event",
    "FeedResult",
    "FileDetail",
    "HistoryEntry",
    "HlsEvent",
    "InvalidEvent",
    "Lifecycle",
    "LifecycleDef",
    "LifecycleViolation",
    "LivestreamEvent",
    "MergeRecordingEvent",
    "Outcome",
    "ParticipantEvent",
    "ParticipantRecordingEvent",
    "ParticipantTrackRecordingEvent",
    "RecordingEvent",
    "ResourceEvent",
    "ResourceKey",
    "ResourceStatus",
    "SessionEvent",
    "Step",
    "StoreUnavailable",
    "TranscriptionEvent",
    "UnknownEvent",
    "compile_lifecycle",
    "dump_event",
    "parse_event",
]
__version__ = "0.1.0"
