"""The records that pass between the core, the engine and the stores.

Public: :class:`FeedResult` (what feeding one payload did), :class:`ResourceStatus` and
:class:`HistoryEntry` (what a resource is, and went through). Internal: the mutable
:class:`Resource` a store keeps, and the :class:`Snapshot` it starts a pruned log from.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from attrs import frozen

from ._convert import Payload, decode, parse_event
from ._events import Event, UnknownEvent
from ._lifecycles import LIFECYCLES, Outcome
from .errors import InvalidEvent

__all__ = [
    "AFTER_SESSION_END",
    "CHANGES",
    "RECONCILED",
    "REDELIVERY",
    "Change",
    "Delivery",
    "FeedResult",
    "HistoryEntry",
    "Overdue",
    "Reconciled",
    "Resource",
    "ResourceKey",
    "ResourceRef",
    "ResourceStatus",
    "Snapshot",
]

ResourceKey = tuple[str, ...]
"""The values of a lifecycle's key fields, in the order of ``key_fields``."""

ResourceRef = tuple[str, ResourceKey]
"""A resource's lifecycle name and key: how stores address it."""

AFTER_SESSION_END = "after_session_end"
"""Warning: a start event for a meeting session whose ``session`` has ended."""

REDELIVERY = "redelivery"
"""Warning: a byte-identical payload seen again within the engine's redelivery window."""

RECONCILED = "reconciled"
"""Warning: a webhook the provider's REST API implied (``Engine.reconcile``), not sent.
Its payload holds, under this same key, the reason and the API's answer."""

_CHANGES = (Outcome.APPLIED, Outcome.GAP)
CHANGES = frozenset((Outcome.APPLIED, Outcome.GAP, Outcome.OVERDUE))
"""The outcomes of the entries the change feed carries: a change of state, and a sweep's
flag."""


def utc(t: float) -> datetime:
    """Epoch seconds as an aware UTC ``datetime``."""
    return datetime.fromtimestamp(t, UTC)


class FeedResult(NamedTuple):
    """What feeding one payload did.

    ``before``/``after`` are the resource's states around the event (equal when nothing
    changed), ``missing`` the states a ``gap`` skipped, ``reason`` why a payload was
    ``malformed`` or ``unknown_type``. ``payload`` is the payload as it was fed (or, read
    back from a database, as it was stored).

    An entry that no webhook made has no ``webhook_type``: an ``overdue`` flag of
    ``Engine.sweep``, or a ``duplicate`` warned ``reconciled`` (a reconciler's answer that
    implied nothing). Its ``reason`` says what happened and its payload holds the facts
    (see docs/time.md).

    A named tuple: it is built on every feed and copied into the memory store's log,
    which a tuple makes cheap.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 a named tuple (it was an attrs class).
    """

    seq: int
    outcome: Outcome
    lifecycle: str | None
    key: ResourceKey | None
    webhook_type: str | None
    before: str | None
    after: str | None
    missing: tuple[str, ...]
    warnings: tuple[str, ...]
    reason: str | None
    timestamp: float
    payload: Payload

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}"
            for name, value in zip(self._fields, self, strict=True)
            if name != "payload"
        )
        return f"FeedResult({shown})"

    @property
    def received_at(self) -> datetime:
        """When the engine received the payload (from its clock)."""
        return utc(self.timestamp)

    @property
    def changed(self) -> bool:
        """True when the event moved its resource to a new state."""
        return self.outcome in _CHANGES

    @property
    def event(self) -> Event | UnknownEvent | None:
        """The parsed event (parsed when asked for); None when malformed, or when no
        webhook made the entry."""
        if self.outcome is Outcome.MALFORMED or self.webhook_type is None:
            return None
        return parse_event(self.payload)

    @property
    def data(self) -> Mapping[str, Any]:
        """The payload's ``data`` object (empty when it had none), decoded when asked for;
        for an entry no webhook made, its resource's data then."""
        try:
            if self.webhook_type is None and self.lifecycle is not None:
                d = orjson.loads(self.payload).get("data")  # type: ignore[arg-type]
            else:
                d = decode(self.payload)[0].get("data")
        except InvalidEvent:
            return {}
        return d if isinstance(d, Mapping) else {}


@frozen
class HistoryEntry:
    """One event that touched a resource.

    .. versionadded:: 0.1
    """

    seq: int
    webhook_type: str
    outcome: Outcome
    received_at: datetime


@frozen
class ResourceStatus:
    """The current state of one tracked resource.

    ``data`` is the latest known ``data`` of its events (wire names: ``fileUrl``,
    ``fileDetails``, ``playbackHlsUrl`` ...), merged over the current cycle.

    .. versionadded:: 0.1
    """

    lifecycle: str
    key: ResourceKey
    state: str
    entered_at: datetime
    data: Mapping[str, Any]
    history: tuple[HistoryEntry, ...]

    @property
    def ids(self) -> dict[str, Any]:
        """The key as keyword arguments of :meth:`Engine.status` (``**status.ids``)."""
        fields = LIFECYCLES[self.lifecycle].definition.key_fields
        return {snake(f): v for f, v in zip(fields, self.key, strict=True)}


def snake(wire: str) -> str:
    """``meetingId`` -> ``meeting_id``."""
    return "".join("_" + c.lower() if c.isupper() else c for c in wire)


class Resource:
    """One tracked resource, as a store keeps it and the core steps it.

    ``history`` packs each event as two floats, ``(seq << 10) | type << 3 | outcome`` and
    its time (see ``_core.pack``); stores that answer history from their log keep it
    empty. ``flagged`` is when a sweep flagged the current visit to its state overdue
    (None: it has not); a step that changes the state clears it.
    """

    __slots__ = ("cycle_id", "data", "entered", "flagged", "history", "state")

    def __init__(
        self,
        state: str,
        entered: float,
        data: Mapping[str, Any] | None = None,
        cycle_id: str | None = None,
        flagged: float | None = None,
    ) -> None:
        self.state = state
        self.entered = entered
        self.data = data
        self.cycle_id = cycle_id
        self.flagged = flagged
        self.history = array("d")

    @property
    def overdue(self) -> bool:
        """Whether a sweep flagged the current visit to its state."""
        return self.flagged is not None

    def copy(self) -> Resource:
        """A copy whose later changes do not touch this one (data is never mutated)."""
        twin = Resource(self.state, self.entered, self.data, self.cycle_id, self.flagged)
        twin.history = array("d", self.history)
        return twin

    def fields(self) -> tuple[Any, ...]:
        """What ``rebuild`` compares: state, entry time (to the microsecond), data, cycle,
        and whether the visit is flagged overdue."""
        return (self.state, round(self.entered, 6), self.data, self.cycle_id, self.overdue)


class Snapshot(NamedTuple):
    """A resource as it was after event ``seq``, the start of its log once pruned."""

    resource: Resource
    seq: int


class Change(NamedTuple):
    """One entry of the change feed: a change of state (``applied``, ``gap``; reconciled
    webhooks included) or a sweep's ``overdue`` flag (``before == after``).

    ``cursor`` grows in commit order, on every store: a reader that resumes after the
    last cursor it saw misses nothing (see docs/feed.md). ``seq`` is the log entry that
    made it, ``webhook_type`` the webhook that caused it (None for an ``overdue`` flag),
    ``data`` the resource's data after it.

    .. versionadded:: 0.3
    """

    cursor: int
    seq: int
    outcome: Outcome
    lifecycle: str
    key: ResourceKey
    webhook_type: str | None
    before: str
    after: str
    warnings: tuple[str, ...]
    timestamp: float
    data: Mapping[str, Any]

    @property
    def at(self) -> datetime:
        """When it was committed (the engine's clock), as an aware UTC ``datetime``."""
        return utc(self.timestamp)


class Delivery(NamedTuple):
    """A forwarded change that the server recorded: one its endpoint failed to take for
    the whole retry period (``failed``), one asked to be sent again (``pending``), or
    one sent again since (``delivered``).

    ``id`` is its ``webhook-id`` (stable per change and endpoint), ``body`` what was
    POSTed.

    .. versionadded:: 0.3
    """

    id: str
    endpoint: str
    cursor: int
    status: str
    attempts: int
    error: str | None
    body: str
    updated_at: float


def change_of(cursor: int, r: FeedResult, data: Mapping[str, Any] | None) -> Change:
    """The change a logged result makes, with the resource's data after it."""
    return Change(
        cursor,
        r.seq,
        r.outcome,
        r.lifecycle or "",
        r.key or (),
        r.webhook_type,
        r.before or "",
        r.after or "",
        r.warnings,
        r.timestamp,
        data or {},
    )


class Overdue(NamedTuple):
    """A resource past its deadline: its status, the deadline it passed and when.

    .. versionadded:: 0.3
    """

    status: ResourceStatus
    deadline: str
    """``lifecycle.state`` (its state lasted too long) or ``lifecycle.session_end`` (it
    is unfinished too long after its meeting session ended)."""
    seconds: float
    due_at: datetime
    flagged: bool = False
    """Whether a sweep has flagged this visit (an ``overdue`` entry in the log)."""


class Reconciled(NamedTuple):
    """What ``Engine.reconcile`` did for one overdue resource.

    .. versionadded:: 0.3
    """

    overdue: Overdue
    answer: Any
    """The reconciler's :class:`~lifecycle.reconcile.Answer`."""
    result: FeedResult | None
    """What feeding the webhook the answer implied did; None when it implied none."""
