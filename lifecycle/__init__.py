"""lifecycle: VideoSDK webhooks turned into live, queryable state machines.

Feed every webhook to an :class:`Engine`; each one drives the state machine of its
resource (recording, HLS, participant ...) and is classified as applied, duplicate,
gap, out of order, illegal, unknown or malformed. ``Engine()`` keeps the state in
memory, ``Engine.open(url)`` in SQLite or PostgreSQL (``lifecycle.stores``);
``lifecycle.server`` is the HTTP receiver, and the ``lifecycle`` command replays,
queries and serves.
"""

from ._convert import dump_event, parse_event
from ._engine import Engine
from ._events import (
    AiDeploymentSessionEvent,
    Event,
    FileDetail,
    HlsEvent,
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
    Lifecycle,
    LifecycleDef,
    Outcome,
    Step,
    compile_lifecycle,
)
from ._records import (
    AFTER_SESSION_END,
    RECONCILED,
    REDELIVERY,
    Change,
    FeedResult,
    HistoryEntry,
    Overdue,
    Reconciled,
    ResourceKey,
    ResourceStatus,
)
from ._version import __version__
from .errors import (
    ConfigError,
    CursorGone,
    DefinitionError,
    InvalidArgument,
    InvalidEvent,
    LifecycleError,
    LifecycleViolation,
    LogPruned,
    ProviderError,
    StoreRefused,
    StoreUnavailable,
)
from .stores._sql import SCHEMA_VERSION

__all__ = [
    "AFTER_SESSION_END",
    "LIFECYCLES",
    "RECONCILED",
    "REDELIVERY",
    "SCHEMA_VERSION",
    "WEBHOOK_TYPES",
    "AiDeploymentSessionEvent",
    "Change",
    "ConfigError",
    "CursorGone",
    "DefinitionError",
    "Engine",
    "Event",
    "FeedResult",
    "FileDetail",
    "HistoryEntry",
    "HlsEvent",
    "InvalidArgument",
    "InvalidEvent",
    "Lifecycle",
    "LifecycleDef",
    "LifecycleError",
    "LifecycleViolation",
    "LivestreamEvent",
    "LogPruned",
    "MergeRecordingEvent",
    "Outcome",
    "Overdue",
    "ParticipantEvent",
    "ParticipantRecordingEvent",
    "ParticipantTrackRecordingEvent",
    "ProviderError",
    "Reconciled",
    "RecordingEvent",
    "ResourceEvent",
    "ResourceKey",
    "ResourceStatus",
    "SessionEvent",
    "Step",
    "StoreRefused",
    "StoreUnavailable",
    "TranscriptionEvent",
    "UnknownEvent",
    "__version__",
    "compile_lifecycle",
    "dump_event",
    "parse_event",
]
