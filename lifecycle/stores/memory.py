"""The memory store: resources in dicts, and a bounded event log, in this process.

Each tracked resource is a small record whose history is packed as two floats per
event. The log is a ring of the last ``log_limit`` events (1,000 by default): for each,
one packed number (sequence number, outcome, state before, two warnings), its time and
its payload as fed, 24 bytes beside the payload. Everything else a result holds is
found again by parsing the payload when the log is read, so that feeding allocates
nothing that outlives the call but the resources. The anomalies are kept apart, as
results, the last ``anomaly_limit`` of them (10,000 by default). Older events and
anomalies are forgotten; resources never are. See docs/api.md (Memory).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from .._core import (
    ALL_SLOTS,
    OUTCOME_CODE,
    OUTCOMES,
    SHIFT,
    Parsed,
    Rejected,
    entry_of,
    overdue_entry,
    pack,
    parse,
    status_of,
)
from .._deadlines import Deadlines, Due
from .._lifecycles import IDLE, LIFECYCLES, Outcome
from .._records import (
    AFTER_SESSION_END,
    CHANGES,
    REDELIVERY,
    Change,
    FeedResult,
    Overdue,
    Resource,
    ResourceKey,
    ResourceRef,
    ResourceStatus,
    Snapshot,
    change_of,
    utc,
)
from ..errors import CursorGone, DefinitionError, InvalidArgument, LogPruned
from ._base import AnomalyQuery, ChangeQuery, ResourceQuery, Stored

__all__ = ["MemoryStore"]

# -- a logged event, packed: seq << 9 | after_session_end | redelivery | before | outcome
STATES = tuple(sorted({s for lc in LIFECYCLES.values() for s in lc.states}))
_STATE_CODE = {s: i for i, s in enumerate(STATES)}


def check_widths(states: int, outcomes: int) -> None:
    """Raise :class:`DefinitionError` unless that many state names and outcomes fit the
    bits of a memory log entry (checked when this module is built)."""
    if states > 16 or outcomes > 8:
        raise DefinitionError(
            f"{states} state names and {outcomes} outcomes do not fit the 4 and 3 bits of "
            "a memory log entry: widen them in stores.memory"
        )


check_widths(len(STATES), len(OUTCOMES))
_REDELIVERY, _AFTER_SESSION_END, _SEQ_SHIFT = 1 << 7, 1 << 8, 9
_NO_STATE = _STATE_CODE[IDLE]  # a result that names no resource has no state before
_PRUNED = object()  # the payload of an entry that prune() dropped
_APPLIED, _GAP = Outcome.APPLIED, Outcome.GAP


def _packed(r: FeedResult) -> int:
    flags = (
        (
            (_REDELIVERY if REDELIVERY in r.warnings else 0)
            | (_AFTER_SESSION_END if AFTER_SESSION_END in r.warnings else 0)
        )
        if r.warnings
        else 0
    )
    before = _NO_STATE if r.before is None else _STATE_CODE[r.before]
    return (r.seq << _SEQ_SHIFT) | flags | (before << 3) | OUTCOME_CODE[r.outcome]


def _unpacked(packed: int, timestamp: float, payload: Any) -> FeedResult:
    """The result an entry stands for: its payload parsed again, its outcome and state."""
    seq, outcome = packed >> _SEQ_SHIFT, OUTCOMES[packed & 7]
    p = parse(payload)
    if type(p) is Rejected:
        if outcome is not Outcome.MALFORMED and outcome is not Outcome.UNKNOWN_TYPE:
            made = entry_of(seq, outcome, timestamp, payload)  # no webhook made it
            if made is not None:
                return made
        return FeedResult(
            seq,
            outcome,
            None,
            None,
            p.webhook_type,
            None,
            None,
            (),
            (),
            p.reason,
            timestamp,
            payload,
        )
    assert type(p) is Parsed
    before = STATES[(packed >> 3) & 15]
    cell = p.route.steps[before]
    changed = outcome is _APPLIED or outcome is _GAP
    warnings = (
        *p.warnings,
        *((REDELIVERY,) if packed & _REDELIVERY else ()),
        *((AFTER_SESSION_END,) if packed & _AFTER_SESSION_END else ()),
    )
    return FeedResult(
        seq,
        outcome,
        p.route.lifecycle,
        p.key,
        p.webhook_type,
        before,
        cell.target if changed else before,
        cell.missing if outcome is _GAP else (),
        warnings,
        None,
        timestamp,
        payload,
    )


class MemoryStore:
    """Resources and a bounded event log in memory (the store of ``Engine()``).

    ``history_limit`` caps the events kept in each resource's history (the oldest are
    dropped); ``log_limit`` the events kept in the log, ``anomaly_limit`` the anomalies
    kept (None: every one). Do not change a payload after feeding it: the log keeps the
    object as fed.
    """

    whole_log = False

    def __init__(
        self,
        *,
        history_limit: int = 100,
        log_limit: int | None = 1_000,
        anomaly_limit: int | None = 10_000,
    ) -> None:
        if history_limit < 1:
            raise InvalidArgument(f"history_limit must be at least 1, not {history_limit}")
        for name, value in (("log_limit", log_limit), ("anomaly_limit", anomaly_limit)):
            if value is not None and value < 1:
                raise InvalidArgument(f"{name} must be at least 1 or None, not {value}")
        self.url = "memory://"
        self.history_limit = history_limit
        self.log_limit = log_limit
        self.tables: dict[str, dict[ResourceKey, Resource]] = {n: {} for n in LIFECYCLES}
        self.history_cap = 2 * history_limit  # two floats an entry
        self.seqs: Sequence[int] = ()
        self._seq = 0  # the last sequence number logged
        # the log: entry of seq n at (n - 1) % log_limit (at n - 1 when unbounded)
        size = log_limit or 0
        self._packed = array("q", bytes(8 * size))
        self._times = array("d", bytes(8 * size))
        self._payloads: list[Any] = [_PRUNED] * size
        # each change's resource data after it, at seq % data_slots: a ring beside the log
        # (only a change's slot is read: another entry's may keep an older value)
        self.datas: list[Any] | dict[int, Any] = [None] * size if size else {}
        self.data_slots = size or ALL_SLOTS
        self._pruned_change = 0  # the last change prune() dropped
        self.anomaly_limit = anomaly_limit
        self._anomalies: deque[FeedResult] = deque(maxlen=anomaly_limit)
        self._bases: dict[ResourceRef, Snapshot] = {}
        # digests of recent payloads per resource and when they came (redelivery window)
        self._recent: dict[ResourceRef, list[tuple[bytes, float]]] = {}
        self._recent_order: list[tuple[float, ResourceRef]] = []

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        history_limit: int = 100,
        log_limit: int | None = 1_000,
        anomaly_limit: int | None = 10_000,
    ) -> MemoryStore:
        """``memory://``: a new, empty store."""
        return cls(history_limit=history_limit, log_limit=log_limit, anomaly_limit=anomaly_limit)

    # -- feeding: the store is its own batch -----------------------------------------------

    def begin(self, events: Sequence[Parsed | Rejected], since: float | None) -> MemoryStore:
        n = len(events)  # a range costs more than a tuple of one (feed's case)
        self.seqs = (self._seq + 1,) if n == 1 else range(self._seq + 1, self._seq + 1 + n)
        if since is not None:
            self._forget_before(since)
        return self

    def seen(self, lifecycle: str, key: ResourceKey, digest: bytes, since: float) -> bool:
        return any(d == digest and t >= since for d, t in self._recent.get((lifecycle, key), ()))

    def commit(
        self,
        results: Sequence[FeedResult],
        digests: Sequence[bytes | None] | None,
    ) -> None:
        limit = self.log_limit
        for r in results:
            seq, outcome, _, _, _, before, _, _, warnings, _, now, payload = r
            entry = (
                (seq << _SEQ_SHIFT) | (_STATE_CODE[before] << 3) | OUTCOME_CODE[outcome]
                if not warnings and before is not None
                else _packed(r)
            )
            if limit is None:
                self._packed.append(entry)
                self._times.append(now)
                self._payloads.append(payload)
            else:
                i = (seq - 1) % limit
                self._packed[i] = entry
                self._times[i] = now
                self._payloads[i] = payload
            if warnings or outcome is not _APPLIED:
                self._anomalies.append(r)
            self._seq = seq
        if digests is not None:
            for r, digest in zip(results, digests, strict=True):
                if digest is not None and r.lifecycle is not None and r.key is not None:
                    ref = (r.lifecycle, r.key)
                    self._recent.setdefault(ref, []).append((digest, r.timestamp))
                    self._recent_order.append((r.timestamp, ref))

    def abort(self) -> None:
        """Nothing to undo: a memory batch writes its log only at commit (``_core.step``
        has changed its resources in place, up to the event that failed)."""

    def _forget_before(self, since: float) -> None:
        """Drop the digests that have left the redelivery window."""
        order, recent = self._recent_order, self._recent
        gone = 0
        while gone < len(order) and order[gone][0] < since:
            ref = order[gone][1]
            seen = recent[ref]
            del seen[0]
            if not seen:
                del recent[ref]
            gone += 1
        del order[:gone]

    # -- the log ----------------------------------------------------------------------------

    @property
    def _dropped(self) -> int:
        """The last seq that the bound pushed out of the log (0: none)."""
        return 0 if self.log_limit is None else max(0, self._seq - self.log_limit)

    def _entries(self, after: int = 0) -> Iterator[FeedResult]:
        """The logged results after ``after``, oldest first (pruned ones skipped)."""
        for seq in range(max(after, self._dropped) + 1, self._seq + 1):
            found = self._entry(seq)
            if found is not None:
                yield found

    def _index(self, seq: int) -> int:
        return seq - 1 if self.log_limit is None else (seq - 1) % self.log_limit

    def _entry(self, seq: int) -> FeedResult | None:
        """The logged result of ``seq``; None when it left the log or was pruned."""
        if not self._dropped < seq <= self._seq:
            return None
        i = self._index(seq)
        payload = self._payloads[i]
        return None if payload is _PRUNED else _unpacked(self._packed[i], self._times[i], payload)

    def _entries_of(self, lifecycle: str, key: ResourceKey) -> list[FeedResult]:
        """The logged results of one resource, oldest first."""
        res = self.tables[lifecycle].get(key)
        found: Iterator[FeedResult | None]
        if res is not None and len(res.history) < self.history_cap:  # its whole history
            found = (
                self._entry(int(res.history[i]) >> SHIFT) for i in range(0, len(res.history), 2)
            )
        else:
            found = self._entries()
        return [r for r in found if r is not None and r.key == key and r.lifecycle == lifecycle]

    # -- queries ----------------------------------------------------------------------------

    def last_seq(self) -> int:
        return self._seq

    def last_cursor(self) -> int:
        return self._seq  # a change's cursor is its seq here

    def count(self) -> int:
        return sum(len(t) for t in self.tables.values())

    def status(self, lifecycle: str, key: ResourceKey) -> ResourceStatus | None:
        res = self.tables[lifecycle].get(key)
        return None if res is None else status_of(lifecycle, key, res)

    def resource_log(
        self, lifecycle: str, key: ResourceKey, at: int | datetime
    ) -> tuple[Snapshot | None, list[FeedResult]]:
        if key not in self.tables[lifecycle]:
            return None, []
        entries = self._entries_of(lifecycle, key)
        base = self._bases.get((lifecycle, key))
        whole = (
            (bool(entries) and entries[0].before == IDLE)
            if base is None
            else (base.seq >= self._dropped)
        )
        if not whole:
            raise LogPruned(
                f"{lifecycle} {'/'.join(key)}: its earlier events have left the "
                f"memory log (it keeps the last {self.log_limit:,})"
            )
        if isinstance(at, datetime):
            bound = at.timestamp()
            if base is not None and base.resource.entered > bound:
                raise LogPruned(f"{lifecycle} {'/'.join(key)}: its log before {at} was pruned")
            return base, [r for r in entries if r.timestamp <= bound]
        if base is not None and base.seq > at:
            raise LogPruned(f"{lifecycle} {'/'.join(key)}: its log before {at} was pruned")
        return base, [r for r in entries if r.seq <= at]

    def resources(self, query: ResourceQuery) -> list[ResourceStatus]:
        q = query
        names = [q.lifecycle] if q.lifecycle is not None else list(LIFECYCLES)
        matching = (
            (name, key, res)
            for name in names
            for key, res in self.tables[name].items()
            if (q.state is None or res.state == q.state)
            and (q.meeting_id is None or (res.data or {}).get("meetingId") == q.meeting_id)
            and (q.session_id is None or (res.data or {}).get("sessionId") == q.session_id)
            and (not q.overdue or res.overdue)
        )
        stop = None if q.limit is None else q.offset + q.limit
        return [status_of(name, key, res) for name, key, res in islice(matching, q.offset, stop)]

    def state_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for name, table in self.tables.items():
            for res in table.values():
                per = counts.setdefault(name, {})
                per[res.state] = per.get(res.state, 0) + 1
        return counts

    def anomalies(self, query: AnomalyQuery) -> list[FeedResult]:
        q = query
        kept = self._anomalies
        start = bisect_right(kept, q.after, key=lambda r: r.seq)
        matching = (
            r
            for r in islice(kept, start, None)
            if (q.lifecycle is None or r.lifecycle == q.lifecycle)
            and (q.outcome is None or r.outcome is q.outcome)
            and (q.meeting_id is None or r.data.get("meetingId") == q.meeting_id)
            and (q.session_id is None or r.data.get("sessionId") == q.session_id)
        )
        return list(islice(matching, q.limit))

    def log(self, after: int, limit: int | None) -> list[FeedResult]:
        return list(islice(self._entries(after), limit))

    def changes(self, query: ChangeQuery) -> list[Change]:
        q = query
        gone = max(self._dropped, self._pruned_change)  # a cursor is its entry's seq here
        if q.after < gone:
            raise CursorGone(
                f"changes after cursor {q.after} have left the memory log (it keeps the "
                f"last {self.log_limit:,} events); resume after {gone}",
                gone,
            )
        found = (
            change_of(r.seq, r, self.datas[r.seq % self.data_slots])
            for r in self._entries(q.after)
            if r.outcome in CHANGES
        )
        matching = (
            c
            for c in found
            if (q.lifecycle is None or c.lifecycle == q.lifecycle)
            and (q.state is None or c.after == q.state)
            and (q.meeting_id is None or c.data.get("meetingId") == q.meeting_id)
            and (q.session_id is None or c.data.get("sessionId") == q.session_id)
        )
        return list(islice(matching, q.limit))

    # -- deadlines ------------------------------------------------------------------------

    def _due(
        self, deadlines: Deadlines, now: float, lifecycle: str | None
    ) -> list[tuple[ResourceRef, Resource, Due]]:
        ended = {k: r.entered for k, r in self.tables["session"].items() if r.state == "ended"}
        watched: dict[str, set[str]] = {}
        for name, state, _ in deadlines.watched():
            if lifecycle is None or name == lifecycle:
                watched.setdefault(name, set()).add(state)
        found = (
            ((name, key), res, ended.get(_session_of(res)))
            for name, states in watched.items()
            for key, res in self.tables[name].items()
            if res.state in states
        )
        return deadlines.pick(found, now)

    def overdue(self, deadlines: Deadlines, now: float, lifecycle: str | None) -> list[Overdue]:
        return [
            Overdue(status_of(*ref, res), due.deadline, due.seconds, utc(due.at), res.overdue)
            for ref, res, due in self._due(deadlines, now, lifecycle)
        ]

    def sweep(self, deadlines: Deadlines, now: float) -> list[FeedResult]:
        made: list[FeedResult] = []
        for ref, res, due in self._due(deadlines, now, None):
            if not res.overdue:
                made.append(overdue_entry(self._seq + 1 + len(made), ref, res, due, now))
                self.datas[made[-1].seq % self.data_slots] = res.data
                self._remember(res, made[-1])
        self.commit(made, None)
        return made

    def append(
        self, ref: ResourceRef, entered: float, make: Callable[[int, Resource], FeedResult]
    ) -> FeedResult | None:
        res = self.tables[ref[0]].get(ref[1])
        if res is None or res.entered != entered:
            return None
        made = make(self._seq + 1, res)
        self._remember(res, made)
        self.commit([made], None)
        return made

    def _remember(self, res: Resource, r: FeedResult) -> None:
        """Add an entry no webhook made to its resource's history."""
        res.history.extend((pack(r.seq, "", r.outcome), r.timestamp))
        del res.history[: -self.history_cap]

    # -- rebuild and retention ------------------------------------------------------------

    def maintenance(self) -> _Maintenance:
        return _Maintenance(self)

    def prune(self, before: float) -> int:
        last: dict[ResourceRef, int] = {}
        for r in self._entries():
            if r.lifecycle is not None and r.key is not None:
                last[(r.lifecycle, r.key)] = r.seq
        pruned = set()
        for (name, key), seq in last.items():
            res = self.tables[name][key]
            if res.state in LIFECYCLES[name].final_states and res.entered < before:
                self._bases[(name, key)] = Snapshot(res.copy(), seq)
                pruned.add((name, key))
        dropped = 0
        for r in list(self._entries()):
            if (r.lifecycle, r.key) in pruned:
                self._payloads[self._index(r.seq)] = _PRUNED
                dropped += 1
                if r.outcome in CHANGES:
                    self._pruned_change = max(self._pruned_change, r.seq)
        self._anomalies = deque(
            (r for r in self._anomalies if (r.lifecycle, r.key) not in pruned),
            maxlen=self.anomaly_limit,
        )
        return dropped

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def _session_of(res: Resource) -> tuple[Any, Any]:
    data = res.data or {}
    return data.get("meetingId"), data.get("sessionId")


class _Maintenance:
    """Rebuild's view of a memory store: nothing else runs meanwhile in this thread."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def __enter__(self) -> _Maintenance:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def resources(self) -> dict[ResourceRef, Stored]:
        s = self.store
        kept = {}
        for name, table in s.tables.items():
            for key, res in table.items():
                base = s._bases.get((name, key))
                # a snapshot from before the bound dropped events may miss some after it
                kept[(name, key)] = Stored(res, base if base and base.seq >= s._dropped else None)
        return kept

    def events(self) -> Iterator[FeedResult]:
        return iter(list(self.store._entries()))

    def replace(
        self,
        changed: Mapping[ResourceRef, tuple[Resource, Sequence[int]]],
        removed: Collection[ResourceRef],
    ) -> None:
        s = self.store
        for name, key in removed:
            s.tables[name].pop(key, None)
        for (name, key), (res, _) in changed.items():
            res.history = array("d")
            for r in s._entries_of(name, key):  # its history, from the log
                res.history.extend((pack(r.seq, r.webhook_type or "", r.outcome), r.timestamp))
            del res.history[: -s.history_cap]
            s.tables[name][key] = res
