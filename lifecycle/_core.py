"""The pure core: parse a payload, route it to its lifecycle, classify and apply one step.

Nothing here touches a store. :func:`parse` turns a payload into a :class:`Parsed` event
(or a :class:`Rejected` one), :func:`step` classifies it against the resource it names
and applies it, and :class:`Replay` feeds logged results through the same two again
(``rebuild`` and ``status(at=...)``). The hot path reads the compiled tables of
``_lifecycles``: no graph search and no ``transitions`` machine per resource.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, NamedTuple

from orjson import JSONDecodeError
from orjson import loads as _loads

from ._convert import (
    MAX_DEPTH,
    SPECS,
    TAG,
    Payload,
    _dumps,
    _Spec,
    decode,
    encode_payload,
    inspect_data,
)
from ._deadlines import Due
from ._lifecycles import IDLE, LIFECYCLES, WEBHOOK_TYPES, Lifecycle, Outcome, Step
from ._records import (
    AFTER_SESSION_END,
    RECONCILED,
    REDELIVERY,
    FeedResult,
    HistoryEntry,
    Resource,
    ResourceKey,
    ResourceRef,
    ResourceStatus,
    Snapshot,
    utc,
)
from .errors import DefinitionError, InvalidEvent, LifecycleViolation

__all__ = [
    "OVERDUE",
    "Parsed",
    "Rejected",
    "Replay",
    "Route",
    "answer_entry",
    "digest",
    "digest_bytes",
    "entry_of",
    "history_of",
    "overdue_entry",
    "pack",
    "parse",
    "reject",
    "session_ref",
    "status_of",
    "step",
    "touched",
]

# -- packed history entries -------------------------------------------------------------
# A history entry is two floats: (seq << 10 | type << 3 | outcome) and its time. A float
# holds integers exactly below 2**53, so sequence numbers up to 2**43 fit.
OUTCOME_BITS, TYPE_BITS = 3, 7
OUTCOMES = tuple(Outcome)
OUTCOME_CODE = {o: i for i, o in enumerate(OUTCOMES)}
TYPES = (*WEBHOOK_TYPES, "")  # "": an entry that no webhook made
TYPE_CODE = {w: i for i, w in enumerate(TYPES)}


def check_widths(outcomes: int, types: int) -> None:
    """Raise :class:`DefinitionError` unless that many outcomes and webhook types fit
    the bits of a packed history entry (checked when this module is built)."""
    if outcomes > 1 << OUTCOME_BITS or types > 1 << TYPE_BITS:
        raise DefinitionError(
            f"{outcomes} outcomes and {types} webhook types do not fit the {OUTCOME_BITS} "
            f"and {TYPE_BITS} bits of a history entry: widen them in _core"
        )


check_widths(len(OUTCOMES), len(TYPES))
SHIFT = OUTCOME_BITS + TYPE_BITS


def pack(seq: int, webhook_type: str, outcome: Outcome) -> int:
    """A history entry's number: its sequence number, webhook type and outcome."""
    return (seq << SHIFT) | (TYPE_CODE[webhook_type] << OUTCOME_BITS) | OUTCOME_CODE[outcome]


def history_of(res: Resource) -> tuple[HistoryEntry, ...]:
    """The entries packed in ``res.history``, oldest first."""
    h = res.history
    entries = []
    for i in range(0, len(h), 2):
        n = int(h[i])
        entries.append(
            HistoryEntry(
                n >> SHIFT, TYPES[(n >> OUTCOME_BITS) & 127], OUTCOMES[n & 7], utc(h[i + 1])
            )
        )
    return tuple(entries)


def status_of(
    lifecycle: str, key: ResourceKey, res: Resource, history: tuple[HistoryEntry, ...] | None = None
) -> ResourceStatus:
    """The public status of ``res``; its own packed history unless one is given."""
    data = res.data or dict(zip(LIFECYCLES[lifecycle].definition.key_fields, key, strict=True))
    return ResourceStatus(
        lifecycle,
        key,
        res.state,
        utc(res.entered),
        data,
        history_of(res) if history is None else history,
    )


# -- parsing and routing ----------------------------------------------------------------


class Route(NamedTuple):
    """All the hot path needs for one webhook type, gathered once."""

    lifecycle: str
    spec: _Spec
    steps: Mapping[str, Step]
    """The compiled cell of this type in each state."""
    starts: bool
    """It enters a session-scoped lifecycle: flagged when that session has ended."""
    restarts: bool
    """Its lifecycle has restart edges: cycle ids tell a late event from a new cycle."""
    code: int
    """The type's bits in a packed history entry."""


def _route(lc: Lifecycle, tag: str) -> Route:
    d = lc.definition
    steps = {s: row[tag] for s, row in lc.table.items()}
    starts = d.session_scoped and d.webhooks[tag] == lc.entry_state
    return Route(
        d.name,
        SPECS[tag],
        steps,
        starts,
        bool(d.restart),
        TYPE_CODE[tag] << OUTCOME_BITS,
    )


ROUTES = {tag: _route(lc, tag) for tag, lc in WEBHOOK_TYPES.items()}


class Parsed(NamedTuple):
    """A payload that names a resource: what :func:`step` needs of it."""

    route: Route
    webhook_type: str
    key: ResourceKey
    data: dict[str, Any]
    warnings: tuple[str, ...]
    payload: Payload


_new = tuple.__new__


class Rejected(NamedTuple):
    """A payload that names no resource: ``malformed`` or ``unknown_type``, and why."""

    outcome: Outcome
    reason: str
    webhook_type: str | None
    payload: Payload


def parse(payload: Payload) -> Parsed | Rejected:
    """Decode, check and route ``payload``; never raises on bad input."""
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
        except InvalidEvent as e:
            return Rejected(Outcome.MALFORMED, str(e), None, payload)
    route = ROUTES.get(tag)
    if route is None:
        if "\x00" in tag:  # no database keeps it as text
            return Rejected(
                Outcome.MALFORMED, f"{TAG} {tag!r} contains a NUL character", None, payload
            )
        return Rejected(Outcome.UNKNOWN_TYPE, f"unknown webhookType {tag!r}", tag, payload)
    data: Any = env.get("data")
    # a body too short to hold MAX_DEPTH opening and closing brackets, or with fewer
    # brackets than that, cannot nest deeper: no need to look (the common case is free)
    nested = type(payload) is not bytes or (
        len(payload) > 2 * MAX_DEPTH and payload.count(b"{") + payload.count(b"[") > MAX_DEPTH
    )
    try:
        key, warnings, _ = inspect_data(route.spec, data, nested)
    except InvalidEvent as e:
        return Rejected(Outcome.MALFORMED, str(e), tag, payload)
    if RECONCILED in env:  # implied by the provider's REST API, not sent by it
        warnings = (*warnings, RECONCILED)
    if type(payload) is not bytes and type(payload) is not str:
        data = dict(data)  # the caller's mapping may change after feed returns
    # tuple.__new__ directly: a named tuple's own __new__ is a Python call (hot path)
    return _new(Parsed, (route, tag, key, data, warnings, payload))


def touched(events: Iterable[Parsed | Rejected]) -> set[ResourceRef]:
    """The resources a batch of events reads or changes: each event's own, and the
    session of each start event (its ``after_session_end`` warning reads it)."""
    refs = set()
    for p in events:
        if type(p) is Parsed:
            refs.add((p.route.lifecycle, p.key))
            if p.route.starts and (ref := session_ref(p)) is not None:
                refs.add(ref)
    return refs


def session_ref(p: Parsed) -> ResourceRef | None:
    """The meeting session a start event belongs to, when its data names one."""
    meeting, session = p.data.get("meetingId"), p.data.get("sessionId")
    if type(meeting) is str and type(session) is str:
        return ("session", (meeting, session))
    return None


def digest(payload: Payload) -> bytes:
    """A digest of a payload's bytes as stored: what the redelivery window compares."""
    return digest_bytes(encode_payload(payload)[0])


def digest_bytes(blob: bytes) -> bytes:
    """The digest of a payload stored as ``blob``."""
    return hashlib.blake2b(blob, digest_size=16).digest()


# -- one step ---------------------------------------------------------------------------


def reject(r: Rejected, seq: int, now: float) -> FeedResult:
    """The result of a payload that names no resource."""
    return FeedResult(
        seq, r.outcome, None, None, r.webhook_type, None, None, (), (), r.reason, now, r.payload
    )


def violation(result: FeedResult) -> LifecycleViolation:
    """What a strict engine raises for ``result``."""
    if result.lifecycle is None:  # malformed or unknown_type
        text = f"{result.outcome.value}: {result.reason}"
    else:
        text = (
            f"{result.outcome.value} on {result.lifecycle} {'/'.join(result.key or ())}"
            f": {result.webhook_type} in state {result.before!r}"
        )
    return LifecycleViolation(text, result)


_DUPLICATE = Outcome.DUPLICATE
_APPLIED, _GAP = Outcome.APPLIED, Outcome.GAP
_OUT_OF_ORDER, _ILLEGAL = Outcome.OUT_OF_ORDER, Outcome.ILLEGAL


Tables = Mapping[str, MutableMapping[ResourceKey, Resource]]
"""Resources by lifecycle name and key: what :func:`step` reads and changes."""


ALL_SLOTS = 2**63
"""The ``slots`` of a ``datas`` that maps every ``seq`` to its change's data (a
database batch's), where a ring has as many slots as it holds (the memory log's)."""


def step(
    p: Parsed,
    tables: Tables,
    seq: int,
    now: float,
    redelivered: bool = False,
    strict: bool = False,
    history_cap: int = 0,
    datas: MutableMapping[int, Any] | list[Any] | None = None,
    slots: int = 0,
) -> FeedResult:
    """Classify ``p`` against its resource in ``tables``, apply it there, and return the
    result.

    A start event reads its meeting session in ``tables`` (``after_session_end``). A
    ``redelivered`` event is a duplicate with the ``redelivery`` warning that changes
    nothing. ``strict`` raises :class:`LifecycleViolation` before changing anything. A
    resource seen for the first time is added to ``tables``; any other is changed in
    place. ``history_cap`` is how many floats of packed history a resource keeps (0:
    none, for stores that answer history from their log). ``datas``, when given, gets
    the resource's data after a change, at ``seq % slots`` (the change feed's: a ring of
    ``slots``, or a mapping by ``seq`` with :data:`ALL_SLOTS`).
    """
    route, webhook_type, key, data, warnings, payload = p
    name, _, steps, starts, restarts, code = route
    table = tables[name]
    res = table.get(key)
    before = IDLE if res is None else res.state
    cell = steps[before]
    if redelivered:
        outcome = _DUPLICATE
        warnings = (*warnings, REDELIVERY)
        restarts = False
        cell = Step(outcome, before)
    else:
        outcome = cell.outcome
        if starts:  # session_ref(p), inlined on the hot path
            meeting, session_id = data.get("meetingId"), data.get("sessionId")
            if type(meeting) is str and type(session_id) is str:
                session = tables["session"].get((meeting, session_id))
                if (
                    session is not None
                    and session.state == "ended"
                    and not LIFECYCLES[name].definition.late_by_design(data)
                ):
                    warnings = (*warnings, AFTER_SESSION_END)
    if restarts and res is not None and res.cycle_id is not None:
        event_id = data.get("id")
        if isinstance(event_id, str) and (
            # a start repeating the finished cycle's id, or any other event of an earlier
            # cycle: a late delivery, not a step of the current cycle
            (event_id == res.cycle_id) if cell.restart else (event_id != res.cycle_id)
        ):
            outcome = _OUT_OF_ORDER
    changed = outcome is _APPLIED or outcome is _GAP
    result = _new(
        FeedResult,
        (  # a named tuple's own __new__ is a Python call
            seq,
            outcome,
            name,
            key,
            webhook_type,
            before,
            cell.target if changed else before,
            cell.missing if outcome is _GAP else (),
            warnings,
            None,
            now,
            payload,
        ),
    )
    if strict and outcome is not _APPLIED and outcome is not _DUPLICATE:
        raise violation(result)
    if res is None:
        res = table[key] = Resource(before, now)
    if changed:
        res.state = cell.target
        res.entered = now
        res.flagged = None  # a new visit: no sweep has flagged it
        # never mutate a dict that a result or the caller may still hold
        res.data = data if cell.restart or res.data is None else {**res.data, **data}
        if datas is not None:
            datas[seq % slots] = res.data
    if restarts and outcome is not _OUT_OF_ORDER and outcome is not _ILLEGAL:
        cycle_id = data.get("id")
        if isinstance(cycle_id, str) and "\x00" not in cycle_id:  # no database keeps NUL
            res.cycle_id = cycle_id
    if history_cap:
        h = res.history
        h.append((seq << SHIFT) | code | OUTCOME_CODE[outcome])  # pack(), inlined
        h.append(now)
        if len(h) > history_cap:
            del h[:2]
    return result


# -- entries that no webhook made -------------------------------------------------------
# Their payload holds the facts under one key (``overdue``, ``reconciled``), the resource
# as it was (lifecycle, key, state and since when) and its data; everything else an entry
# holds is found again from that payload (the memory store keeps no more).

OVERDUE = "overdue"
"""The payload key of a sweep's flag."""


def overdue_entry(seq: int, ref: ResourceRef, res: Resource, due: Due, now: float) -> FeedResult:
    """Flag the current visit of ``res`` overdue at ``now`` (``due`` says which deadline
    it passed): its log entry."""
    res.flagged = now
    facts = {"deadline": due.deadline, "seconds": due.seconds, "dueAt": _iso(due.at)}
    return _entry(seq, Outcome.OVERDUE, now, ref, res, OVERDUE, facts)


def answer_entry(
    seq: int, res: Resource, *, ref: ResourceRef, now: float, reason: str, evidence: object
) -> FeedResult:
    """The log entry of a reconciler's answer that implied no webhook: a ``duplicate``
    (nothing new) warned ``reconciled``, with the answer as evidence."""
    facts = {"reason": reason, "evidence": evidence}
    return _entry(seq, Outcome.DUPLICATE, now, ref, res, RECONCILED, facts)


def _entry(
    seq: int,
    outcome: Outcome,
    now: float,
    ref: ResourceRef,
    res: Resource,
    what: str,
    facts: Mapping[str, Any],
) -> FeedResult:
    since = _iso(res.entered)
    resource = {"lifecycle": ref[0], "key": ref[1], "state": res.state, "since": since}
    payload = _dumps({what: facts, "resource": resource, "data": res.data or {}})
    reason, warnings = _about(what, facts, res.state, since)
    state = res.state
    return FeedResult(
        seq, outcome, ref[0], ref[1], None, state, state, (), warnings, reason, now, payload
    )


def _about(
    what: str, facts: Mapping[str, Any], state: str, since: str
) -> tuple[str, tuple[str, ...]]:
    """The reason and warnings of an entry no webhook made, from its facts."""
    if what == OVERDUE:
        return (
            f"in {state} since {since}: past its deadline {facts['deadline']} "
            f"({facts['seconds']:g} s) at {facts['dueAt']}"
        ), ()
    return str(facts["reason"]), (RECONCILED,)


def entry_of(seq: int, outcome: Outcome, now: float, payload: Payload) -> FeedResult | None:
    """The result that an entry no webhook made stands for, from its payload; None when
    the payload is not such an entry's."""
    try:
        doc: Any = _loads(payload) if isinstance(payload, bytes | str) else payload
        resource = doc["resource"]
        lifecycle, key, state = resource["lifecycle"], tuple(resource["key"]), resource["state"]
        what = OVERDUE if OVERDUE in doc else RECONCILED
        reason, warnings = _about(what, doc[what], state, resource["since"])
    except (JSONDecodeError, LookupError, TypeError, ValueError):
        return None
    return FeedResult(
        seq, outcome, lifecycle, key, None, state, state, (), warnings, reason, now, payload
    )


def _iso(t: float) -> str:
    return utc(t).isoformat().replace("+00:00", "Z")


# -- replay -----------------------------------------------------------------------------


class Replay:
    """Resources recomputed by feeding logged results through the core again.

    Each result is stepped with its logged sequence number and time, and as a
    redelivery when it was logged as one. ``whole_log`` says whether the log holds each
    resource's first event (or a snapshot before it): when not (a bounded memory log),
    a resource whose first kept event is not its first event is left out, as
    ``truncated``.
    """

    def __init__(self, whole_log: bool = True) -> None:
        self.whole_log = whole_log
        self.tables: dict[str, dict[ResourceKey, Resource]] = {n: {} for n in LIFECYCLES}
        self.seqs: dict[ResourceRef, list[int]] = {}  # the events of each (after its base)
        self.truncated: set[ResourceRef] = set()

    def get(self, ref: ResourceRef) -> Resource | None:
        return self.tables[ref[0]].get(ref[1])

    def seed(self, ref: ResourceRef, base: Snapshot) -> None:
        """Start ``ref`` from a snapshot (the log before it was pruned)."""
        self.tables[ref[0]][ref[1]] = base.resource.copy()
        self.seqs[ref] = []

    def feed(self, logged: FeedResult) -> None:
        if logged.lifecycle is None:
            return
        if logged.webhook_type is None:  # an entry no webhook made: a flag, an answer
            ref = (logged.lifecycle, logged.key or ())
            res = self.get(ref)
            if res is not None and ref not in self.truncated:
                if logged.outcome is Outcome.OVERDUE and res.state == logged.before:
                    res.flagged = logged.timestamp
                self.seqs.setdefault(ref, []).append(logged.seq)
            return
        p = parse(logged.payload)
        if type(p) is not Parsed:  # a payload the rules of this release refuse
            return
        ref = (p.route.lifecycle, p.key)
        if ref in self.truncated or (
            not self.whole_log and logged.before != IDLE and self.get(ref) is None
        ):
            self.truncated.add(ref)  # its log starts after its first event
            return
        step(p, self.tables, logged.seq, logged.timestamp, REDELIVERY in logged.warnings)
        self.seqs.setdefault(ref, []).append(logged.seq)

    def resources(self) -> Iterator[tuple[ResourceRef, Resource, list[int]]]:
        """Every recomputed resource, with the numbers of its events (after its base)."""
        for (name, key), seqs in self.seqs.items():
            yield (name, key), self.tables[name][key], seqs
