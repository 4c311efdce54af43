"""The engine: every fed payload drives its lifecycle and gets exactly one outcome.

The hot path reads the compiled tables of ``_lifecycles``: no graph search and no
``transitions`` machine per resource. A tracked resource is a small slotted record;
its history is a capped array of packed numbers, expanded only when asked for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Self

import attrs
from attrs import frozen
from orjson import JSONDecodeError
from orjson import loads as _loads

from . import _events as ev
from ._convert import (
    SPECS,
    TAG,
    Payload,
    _Spec,
    decode,
    encode_payload,
    inspect_data,
    parse_event,
)
from ._lifecycles import IDLE, LIFECYCLES, WEBHOOK_TYPES, Lifecycle, Outcome, Step

__all__ = [
    "AFTER_SESSION_END",
    "REDELIVERY",
    "Engine",
    "FeedResult",
    "HistoryEntry",
    "LifecycleViolation",
    "ResourceKey",
    "ResourceStatus",
]

log = logging.getLogger("lifecycle")

ResourceKey = tuple[str, ...]
"""The values of a lifecycle's key fields, in the order of ``key_fields``."""

AFTER_SESSION_END = "after_session_end"
"""Warning: a start event for a meeting session whose ``session`` has ended."""

REDELIVERY = "redelivery"
"""Warning: a byte-identical payload seen again within the engine's redelivery window."""

_OUTCOMES = tuple(Outcome)
_OUTCOME_CODE = {o: i for i, o in enumerate(_OUTCOMES)}
_TYPES = tuple(WEBHOOK_TYPES)
_TYPE_CODE = {w: i for i, w in enumerate(_TYPES)}
_CHANGES = (Outcome.APPLIED, Outcome.GAP)
_ACCEPTED = (Outcome.APPLIED, Outcome.DUPLICATE)

def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)

@attrs.define(slots=True, eq=False)
class FeedResult:
    """What feeding one payload did.

    ``before``/``after`` are the resource's states around the event (equal when nothing
    changed), ``missing`` the states a ``gap`` skipped, ``reason`` why a payload was
    ``malformed`` or ``unknown_type``. ``payload`` is the payload as it was fed.

    .. versionadded:: 0.1
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
    payload: Payload = attrs.field(repr=False)
    _envelope: Mapping[str, Any] | None = attrs.field(repr=False, alias="envelope")

    @property
    def received_at(self) -> datetime:
        """When the engine received the payload (from its clock)."""
        return _utc(self.timestamp)

    @property
    def changed(self) -> bool:
        """True when the event moved its resource to a new state."""
        return self.outcome in _CHANGES

    @property
    def event(self) -> ev.Event | ev.UnknownEvent | None:
        """The parsed event (parsed when asked for); None when malformed."""
        if self._envelope is None or self.outcome is Outcome.MALFORMED:
            return None
        return parse_event(self._envelope)

    @property
    def data(self) -> Mapping[str, Any]:
        """The payload's ``data`` object (empty when it had none)."""
        d = self._envelope.get("data") if self._envelope is not None else None
        return d if isinstance(d, Mapping) else {}

class LifecycleViolation(Exception):  # noqa: N818 - the domain's word
    """Raised by a strict engine for an event it would not simply apply.

    .. versionadded:: 0.1
    """

    def __init__(self, result: FeedResult) -> None:
        if result.lifecycle is None:  # malformed or unknown_type
            text = f"{result.outcome.value}: {result.reason}"
        else:
            text = (f"{result.outcome.value} on {result.lifecycle} {'/'.join(result.key or ())}"
                    f": {result.webhook_type} in state {result.before!r}")
        super().__init__(text)
        self.result = result

@frozen
class HistoryEntry:
    """One event that touched a resource."""

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
        return {_snake(f): v for f, v in zip(fields, self.key, strict=True)}

def _snake(wire: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in wire)

class _Resource:
    """One tracked resource; history packs ``(seq, type, outcome)`` and time in pairs."""

    __slots__ = ("cycle_id", "data", "entered", "history", "state")

    def __init__(self, state: str, entered: float) -> None:
        self.state = state
        self.entered = entered
        self.data: Mapping[str, Any] | None = None
        self.history = array("d")
        self.cycle_id: str | None = None

@frozen
class _Subscription:
    callback: Callable[[FeedResult], object]
    lifecycle: str | None
    state: str | None

class Engine:
    """Tracks every resource's lifecycle from the webhooks fed to it, in memory.

    ``strict=True`` raises :class:`LifecycleViolation` for any outcome but ``applied``
    and ``duplicate`` and changes nothing. ``clock`` returns epoch seconds.
    ``history_limit`` caps the events kept per resource (the oldest are dropped).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        history_limit: int = 100,
        redelivery_window: float | None = None,
    ) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        if redelivery_window is not None and not redelivery_window > 0:
            raise ValueError("redelivery_window must be a positive number of seconds")
        self.redelivery_window = redelivery_window
        # the digests of recent payloads per resource, and when they came (window only)
        self._recent: _Recent = {}
        self._recent_order: deque[tuple[float, tuple[str, ResourceKey]]] = deque()
        self.strict = strict
        self._clock = clock
        self._history_limit = history_limit
        self._history_cap = 2 * history_limit
        self._tables: dict[str, dict[ResourceKey, _Resource]] = {n: {} for n in LIFECYCLES}
        self._anomalies: list[FeedResult] = []
        self._subscriptions: list[_Subscription] = []
        self._seq = 0

    # -- feeding ------------------------------------------------------------------

    def feed(self, payload: Payload) -> FeedResult:
        """Feed one webhook payload (mapping, JSON text or bytes); never raises on bad input."""
        seq = self._seq + 1
        now = self._clock()
        try:
            parsed = self._parse(payload)
        except _Rejected as r:
            return self._reject(self._result(seq, now, payload, r))
        redelivered = self.redelivery_window is not None and self._seen(
            self._recent, parsed, payload, now, self._recent_order)
        result = self._step(parsed, seq, now, payload, self._tables, redelivered)
        self._seq = seq
        if result.warnings or result.outcome is not Outcome.APPLIED:
            self._anomalies.append(result)
        if result.outcome in _CHANGES and self._subscriptions:
            self._notify(result)
        return result

    def feed_many(self, payloads: Iterable[Payload]) -> list[FeedResult]:
        """Feed payloads in order; the results in the same order."""
        return [self.feed(p) for p in payloads]

    def _parse(self, payload: Payload) -> _Parsed:
        """Decode and check ``payload``; raises :class:`_Rejected` when it is not a webhook."""
        env: Any = None
        if type(payload) is bytes:  # the receiver's common case, without the checks' call
            try:
                env = _loads(payload)
            except JSONDecodeError:
                env = None
        tag = env.get(TAG) if type(env) is dict else None
        if type(tag) is not str:
            try:
                env, _, tag = decode(payload)
            except ev.InvalidEvent as e:
                raise _Rejected(Outcome.MALFORMED, str(e), None, None) from None
        route = _ROUTES.get(tag)
        if route is None:
            if "\x00" in tag:  # no database keeps it as text
                raise _Rejected(Outcome.MALFORMED, f"{TAG} {tag!r} contains a NUL character",
                                None, env)
            raise _Rejected(Outcome.UNKNOWN_TYPE, f"unknown webhookType {tag!r}", tag, env)
        data: Any = env.get("data")
        try:
            key, warnings, _ = inspect_data(route[1], data)
        except ev.InvalidEvent as e:
            raise _Rejected(Outcome.MALFORMED, str(e), tag, env) from None
        if type(payload) is not bytes and type(payload) is not str:
            data = dict(data)  # the caller's mapping may change after feed returns
        return route, tag, key, data, env, warnings

    def _seen(self, recent: _Recent, parsed: _Parsed, payload: Payload, now: float,
              order: deque[tuple[float, tuple[str, ResourceKey]]] | None = None) -> bool:
        """Whether ``payload`` came for its resource within the window; remember it."""
        window = self.redelivery_window or 0.0
        if order is not None:  # forget what has left the window
            while order and order[0][0] < now - window:
                _, old = order.popleft()
                seen = recent[old]
                del seen[0]
                if not seen:
                    del recent[old]
        resource = (parsed[0][0], parsed[2])
        digest = _digest(encode_payload(payload)[0])
        seen = recent.setdefault(resource, [])
        hit = any(d == digest and now - t <= window for d, t in seen)
        seen.append((digest, now))
        if order is not None:
            order.append((now, resource))
        return hit

    def _step(
        self, parsed: _Parsed, seq: int, now: float, payload: Payload, tables: _Tables,
        redelivered: bool = False,
    ) -> FeedResult:
        """Classify a parsed event against ``tables`` and apply it there.

        A ``redelivered`` event is a duplicate with the ``redelivery`` warning that
        changes nothing. Raises :class:`LifecycleViolation` in strict mode before
        changing anything.
        """
        (name, _, steps, starts, restarts), tag, key, data, env, warnings = parsed
        resources = tables[name]
        res = resources.get(key)
        before = IDLE if res is None else res.state
        step, code = steps[before]
        if redelivered:
            outcome = Outcome.DUPLICATE
            code = (code & ~7) | _OUTCOME_CODE[outcome]
            warnings.append(REDELIVERY)
            starts = restarts = False
            step = Step(outcome, before)
        else:
            outcome = step.outcome
        if restarts and res is not None and res.cycle_id is not None:
            event_id = data.get("id")
            if isinstance(event_id, str) and (
                # a start repeating the finished cycle's id, or any other event of an
                # earlier cycle: a late delivery, not a step of the current cycle
                (event_id == res.cycle_id) if step.restart else (event_id != res.cycle_id)
            ):
                outcome = Outcome.OUT_OF_ORDER
                code = (code & ~7) | _OUTCOME_CODE[outcome]
        if starts:
            session_key: Any = (data.get("meetingId"), data.get("sessionId"))
            session = tables["session"].get(session_key)
            if session is not None and session.state == "ended":
                warnings.append(AFTER_SESSION_END)
        changed = outcome is Outcome.APPLIED or outcome is Outcome.GAP
        result = FeedResult(
            seq, outcome, name, key, tag, before, step.target if changed else before,
            step.missing if outcome is Outcome.GAP else (), tuple(warnings) if warnings else (),
            None, now, payload, env,
        )
        if self.strict and outcome is not Outcome.APPLIED and outcome is not Outcome.DUPLICATE:
            raise LifecycleViolation(result)
        if res is None:
            res = resources[key] = _Resource(before, now)
        if changed:
            res.state = step.target
            res.entered = now
            # never mutate a dict that a result or the caller may still hold
            res.data = data if step.restart or res.data is None else {**res.data, **data}
        if restarts and outcome is not Outcome.OUT_OF_ORDER and outcome is not Outcome.ILLEGAL:
            cycle_id = data.get("id")
            if isinstance(cycle_id, str):
                res.cycle_id = cycle_id
        h = res.history
        h.append((seq << 10) | code)
        h.append(now)
        if len(h) > self._history_cap:
            del h[:2]
        return result

    @staticmethod
    def _result(seq: int, now: float, payload: Payload, r: _Rejected) -> FeedResult:
        return FeedResult(seq, r.outcome, None, None, r.tag, None, None, (), (), r.reason, now,
                          payload, r.envelope)

    def _reject(self, result: FeedResult) -> FeedResult:
        if self.strict:
            raise LifecycleViolation(result)
        self._seq = result.seq
        self._anomalies.append(result)
        return result

    def _notify(self, result: FeedResult) -> None:
        for sub in tuple(self._subscriptions):
            if (sub.lifecycle is None or sub.lifecycle == result.lifecycle) and (
                sub.state is None or sub.state == result.after
            ):
                try:
                    sub.callback(result)
                except Exception:
                    log.exception("subscriber %r failed on event %d", sub.callback, result.seq)

    def subscribe(
        self,
        callback: Callable[[FeedResult], object],
        lifecycle: str | None = None,
        state: str | None = None,
    ) -> Callable[[], None]:
        """Call ``callback(result)`` after each change of state; returns an unsubscribe.

        Filter on a lifecycle and on the state entered. An exception in a callback is
        logged (logger ``lifecycle``) and does not stop the engine.
        """
        if lifecycle is not None:
            _lifecycle(lifecycle)
        sub = _Subscription(callback, lifecycle, state)
        self._subscriptions.append(sub)

        def unsubscribe() -> None:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)

        return unsubscribe

    # -- queries ------------------------------------------------------------------

    @property
    def events_fed(self) -> int:
        """How many payloads were fed (the last sequence number)."""
        return self._seq

    def status(self, lifecycle: str, *key: str, at: int | datetime | None = None,
               **ids: str) -> ResourceStatus | None:
        """The status of one resource, by its key values or snake_case key fields.

        ``engine.status("recording", meeting_id="m", session_id="s")``; None when the
        resource was never seen. ``at`` (a sequence number or a time) asks for an
        earlier state, which only an engine with an event log can answer.
        """
        lc = _lifecycle(lifecycle)
        return self._find(lc, _key_values(lc, key, ids), at)

    def _find(self, lc: Lifecycle, key: ResourceKey,
              at: int | datetime | None) -> ResourceStatus | None:
        """The status of one resource, now (or ``at`` an earlier point, from a log)."""
        if at is not None:
            raise _no_log("status(at=...)")
        res = self._tables[lc.name].get(key)
        return None if res is None else self._status(lc, key, res)

    def resources(
        self,
        lifecycle: str | None = None,
        meeting_id: str | None = None,
        session_id: str | None = None,
        state: str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ResourceStatus]:
        """Every tracked resource matching the filters, by lifecycle then first seen.

        ``limit`` and ``offset`` page through that order.
        """
        _check_page(limit, offset, "offset")
        if lifecycle is not None:
            _lifecycle(lifecycle)
        if _nul(meeting_id, session_id, state):
            return []
        return self._select_resources(lifecycle, meeting_id, session_id, state, limit, offset)

    def _select_resources(self, lifecycle: str | None, meeting_id: str | None,
                          session_id: str | None, state: str | None, limit: int | None,
                          offset: int) -> list[ResourceStatus]:
        """:meth:`resources` once its arguments are checked."""
        matching = (
            (lc, key, res)
            for lc in ([LIFECYCLES[lifecycle]] if lifecycle is not None else LIFECYCLES.values())
            for key, res in self._tables[lc.name].items()
            if (state is None or res.state == state)
            and (meeting_id is None or (res.data or {}).get("meetingId") == meeting_id)
            and (session_id is None or (res.data or {}).get("sessionId") == session_id)
        )
        stop = None if limit is None else offset + limit
        return [self._status(lc, key, res) for lc, key, res in islice(matching, offset, stop)]

    def state_counts(self) -> dict[str, dict[str, int]]:
        """How many resources are in each state: ``{lifecycle: {state: count}}``.

        Lifecycles in registry order, states in their lifecycle's order; only the
        states that have resources.
        """
        counts: dict[str, dict[str, int]] = {}
        for name, table in self._tables.items():
            for res in table.values():
                per = counts.setdefault(name, {})
                per[res.state] = per.get(res.state, 0) + 1
        return _ordered_counts(counts)

    def anomalies(
        self,
        lifecycle: str | None = None,
        outcome: Outcome | str | None = None,
        meeting_id: str | None = None,
        session_id: str | None = None,
        *,
        after: int = 0,
        limit: int | None = None,
    ) -> list[FeedResult]:
        """Every result that was not a clean ``applied``, with its payload, in feed order.

        That is every other outcome, and every applied event that carried warnings.
        ``after`` (a ``seq``, exclusive) and ``limit`` page through them.
        """
        _check_page(limit, after, "after")
        if _nul(meeting_id, session_id):
            return []
        want = Outcome(outcome) if outcome is not None else None
        return self._select_anomalies(lifecycle, want, meeting_id, session_id, after, limit)

    def _select_anomalies(self, lifecycle: str | None, want: Outcome | None,
                          meeting_id: str | None, session_id: str | None, after: int,
                          limit: int | None) -> list[FeedResult]:
        """:meth:`anomalies` once its arguments are checked."""
        start = bisect_right(self._anomalies, after, key=lambda r: r.seq)
        matching = (
            r for r in islice(self._anomalies, start, None)
            if (lifecycle is None or r.lifecycle == lifecycle)
            and (want is None or r.outcome is want)
            and (meeting_id is None or r.data.get("meetingId") == meeting_id)
            and (session_id is None or r.data.get("sessionId") == session_id)
        )
        return list(islice(matching, limit))

    def rebuild(self) -> list[tuple[str, ResourceKey, str | None, str]]:
        """Recompute every resource from the event log (needs ``Engine.open``)."""
        raise _no_log("rebuild()")

    def prune(self, before: datetime | float) -> int:
        """Drop old log rows of finished resources (needs ``Engine.open``)."""
        raise _no_log("prune()")

    def log(self, after: int = 0, limit: int | None = None) -> list[FeedResult]:
        """Logged results in sequence order, from ``after`` (needs ``Engine.open``)."""
        raise _no_log("log()")

    def close(self) -> None:
        """Release the store; nothing to do for an in-memory engine."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str],
        *,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        history_limit: int = 100,
        redelivery_window: float | None = None,
        synchronous: str = "NORMAL",
    ) -> Engine:
        """An engine whose state is stored at ``url``, created or migrated as needed.

        ``sqlite:///path.db`` or a bare path (WAL mode; ``synchronous`` is SQLite's
        pragma), or ``postgresql://user@host/db`` (psycopg 3) for several receivers.
        Raises :class:`StoreUnavailable` when the database cannot be opened.
        """
        from ._store import open_engine

        return open_engine(url, strict=strict, clock=clock, history_limit=history_limit,
                           redelivery_window=redelivery_window, synchronous=synchronous)

    def __iter__(self) -> Iterator[ResourceStatus]:
        return iter(self.resources())

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())

    @staticmethod
    def _status(lc: Lifecycle, key: ResourceKey, res: _Resource,
                history: tuple[HistoryEntry, ...] | None = None) -> ResourceStatus:
        """The status of ``res``, with its own packed history unless one is given."""
        if history is None:
            h = res.history
            history = tuple(
                HistoryEntry(int(h[i]) >> 10, _TYPES[(int(h[i]) >> 3) & 127],
                             _OUTCOMES[int(h[i]) & 7], _utc(h[i + 1]))
                for i in range(0, len(h), 2)
            )
        data = res.data or dict(zip(lc.definition.key_fields, key, strict=True))
        return ResourceStatus(lc.name, key, res.state, _utc(res.entered), data, history)

_Route = tuple[str, _Spec, dict[str, tuple[Step, int]], bool, bool]
_Parsed = tuple[_Route, str, ResourceKey, dict[str, Any], Mapping[str, Any], list[str]]
_Tables = Mapping[str, dict[ResourceKey, _Resource]]
_Recent = dict[tuple[str, ResourceKey], list[tuple[bytes, float]]]


def _digest(blob: bytes) -> bytes:
    """A digest of a payload's bytes as stored: what the redelivery window compares."""
    return hashlib.blake2b(blob, digest_size=16).digest()


def _route(lc: Lifecycle, tag: str) -> _Route:
    """All the hot path needs for one webhook type, gathered once."""
    d = lc.definition
    steps = {
        s: (row[tag], (_TYPE_CODE[tag] << 3) | _OUTCOME_CODE[row[tag].outcome])
        for s, row in lc.table.items()
    }
    starts = d.session_scoped and d.webhooks[tag] == lc.entry_state
    return (d.name, SPECS[tag], steps, starts, bool(d.restart))


_ROUTES = {tag: _route(lc, tag) for tag, lc in WEBHOOK_TYPES.items()}


class _Rejected(Exception):  # noqa: N818 - internal signal, never escapes feed
    """Raised by ``_parse`` for a payload that is malformed or of an unknown type."""

    def __init__(self, outcome: Outcome, reason: str, tag: str | None,
                 envelope: Mapping[str, Any] | None) -> None:
        super().__init__(reason)
        self.outcome, self.reason, self.tag, self.envelope = outcome, reason, tag, envelope


def _nul(*values: str | None) -> bool:
    """Whether a filter holds NUL, which no stored text does (PostgreSQL refuses it)."""
    return any(v is not None and "\x00" in v for v in values)


def _check_page(limit: int | None, start: int, name: str) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    if start < 0:
        raise ValueError(f"{name} must not be negative, not {start}")


def _ordered_counts(counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """``counts`` with lifecycles in registry order and states in their lifecycle's."""
    return {name: {s: counts[name][s] for s in lc.states if s in counts[name]}
            for name, lc in LIFECYCLES.items() if counts.get(name)}


def _no_log(what: str) -> TypeError:
    return TypeError(f"{what} needs an engine with an event log: Engine.open(url)")


def _key_values(lc: Lifecycle, key: tuple[str, ...], ids: Mapping[str, str]) -> ResourceKey:
    """The key of a resource from positional values or snake_case keyword ids."""
    fields = lc.definition.key_fields
    if ids:
        names = {_snake(f): f for f in fields}
        unknown = set(ids) - set(names)
        if key or unknown or len(ids) != len(fields):
            raise TypeError(
                f"{lc.name} resources are keyed by {', '.join(names)}"
                + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
            )
        return tuple(ids[n] for n in names)
    if len(key) != len(fields):
        raise TypeError(f"{lc.name} resources are keyed by {', '.join(fields)}")
    return tuple(key)


def _lifecycle(name: str) -> Lifecycle:
    try:
        return LIFECYCLES[name]
    except KeyError:
        raise ValueError(
            f"unknown lifecycle {name!r}; known: {', '.join(LIFECYCLES)}"
        ) from None
