"""The memory store: resources in dicts, and a bounded event log, in this process.

Each tracked resource is a small record whose history is packed as two floats per
event. The log keeps the last ``log_limit`` results (10,000 by default), the objects
``feed`` returned, with the payloads as fed; older ones are forgotten, and with them
their anomalies. Resources are never forgotten. See docs/api.md (Memory).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime
from itertools import islice
from typing import Any

from .._core import pack, status_of
from .._lifecycles import IDLE, LIFECYCLES, Outcome
from .._records import (
    FeedResult,
    Resource,
    ResourceKey,
    ResourceRef,
    ResourceStatus,
    Snapshot,
)
from ..errors import InvalidArgument, LogPruned
from ._base import AnomalyQuery, ResourceQuery, Stored

__all__ = ["MemoryStore"]

_APPLIED = Outcome.APPLIED


class MemoryStore:
    """Resources and a bounded event log in memory (the store of ``Engine()``).

    ``history_limit`` caps the events kept in each resource's history (the oldest are
    dropped); ``log_limit`` the results kept in the log (None: every one).
    """

    whole_log = False

    def __init__(self, *, history_limit: int = 100, log_limit: int | None = 10_000) -> None:
        if history_limit < 1:
            raise InvalidArgument(f"history_limit must be at least 1, not {history_limit}")
        if log_limit is not None and log_limit < 1:
            raise InvalidArgument(f"log_limit must be at least 1 or None, not {log_limit}")
        self.url = "memory://"
        self.history_limit = history_limit
        self.log_limit = log_limit
        self._cap = 2 * history_limit
        self._tables: dict[str, dict[ResourceKey, Resource]] = {n: {} for n in LIFECYCLES}
        self._log: deque[FeedResult] = deque(maxlen=log_limit)
        self._anomalies: deque[FeedResult] = deque(maxlen=log_limit)
        self._dropped = 0  # the last seq the bound pushed out of the log
        self._bases: dict[ResourceRef, Snapshot] = {}
        # digests of recent payloads per resource and when they came (redelivery window)
        self._recent: dict[ResourceRef, list[tuple[bytes, float]]] = {}
        self._recent_order: deque[tuple[float, ResourceRef]] = deque()
        self._seq = 0
        self.seqs: range = range(0)

    @classmethod
    def from_url(cls, url: str, *, history_limit: int = 100,
                 log_limit: int | None = 10_000) -> MemoryStore:
        """``memory://``: a new, empty store."""
        return cls(history_limit=history_limit, log_limit=log_limit)

    # -- feeding: the store is its own batch -----------------------------------------------

    def batch(self, wanted: Collection[ResourceRef], size: int,
              since: float | None) -> MemoryStore:
        self.seqs = range(self._seq + 1, self._seq + 1 + size)
        if since is not None:
            self._forget_before(since)
        return self

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get(self, lifecycle: str, key: ResourceKey) -> Resource | None:
        return self._tables[lifecycle].get(key)

    def seen(self, lifecycle: str, key: ResourceKey, digest: bytes, since: float) -> bool:
        return any(d == digest and t >= since for d, t in self._recent.get((lifecycle, key), ()))

    def add(self, result: FeedResult, resource: Resource | None, data: Mapping[str, Any] | None,
            digest: bytes | None) -> None:
        self._seq = result.seq
        log = self._log
        if len(log) == self.log_limit:
            self._dropped = log[0].seq
        log.append(result)
        if result.warnings or result.outcome is not _APPLIED:
            self._anomalies.append(result)
        lifecycle, key, webhook_type = result.lifecycle, result.key, result.webhook_type
        if resource is None or lifecycle is None or key is None or webhook_type is None:
            return
        self._tables[lifecycle][key] = resource
        h = resource.history
        h.append(pack(result.seq, webhook_type, result.outcome))
        h.append(result.timestamp)
        if len(h) > self._cap:
            del h[:2]
        if digest is not None:
            ref = (lifecycle, key)
            self._recent.setdefault(ref, []).append((digest, result.timestamp))
            self._recent_order.append((result.timestamp, ref))

    def _forget_before(self, since: float) -> None:
        """Drop the digests that have left the redelivery window."""
        order, recent = self._recent_order, self._recent
        while order and order[0][0] < since:
            _, ref = order.popleft()
            seen = recent[ref]
            del seen[0]
            if not seen:
                del recent[ref]

    # -- queries ----------------------------------------------------------------------------

    def last_seq(self) -> int:
        return self._seq

    def count(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def status(self, lifecycle: str, key: ResourceKey) -> ResourceStatus | None:
        res = self._tables[lifecycle].get(key)
        return None if res is None else status_of(lifecycle, key, res)

    def resource_log(self, lifecycle: str, key: ResourceKey,
                     at: int | datetime) -> tuple[Snapshot | None, list[FeedResult]]:
        if key not in self._tables[lifecycle]:
            return None, []
        entries = [r for r in self._log if r.lifecycle == lifecycle and r.key == key]
        base = self._bases.get((lifecycle, key))
        whole = (entries and entries[0].before == IDLE) if base is None else (
            base.seq >= self._dropped)
        if not whole:
            raise LogPruned(f"{lifecycle} {'/'.join(key)}: its earlier events have left the "
                            f"memory log (it keeps the last {self.log_limit:,})")
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
            for key, res in self._tables[name].items()
            if (q.state is None or res.state == q.state)
            and (q.meeting_id is None or (res.data or {}).get("meetingId") == q.meeting_id)
            and (q.session_id is None or (res.data or {}).get("sessionId") == q.session_id)
        )
        stop = None if q.limit is None else q.offset + q.limit
        return [status_of(name, key, res) for name, key, res in islice(matching, q.offset, stop)]

    def state_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for name, table in self._tables.items():
            for res in table.values():
                per = counts.setdefault(name, {})
                per[res.state] = per.get(res.state, 0) + 1
        return counts

    def anomalies(self, query: AnomalyQuery) -> list[FeedResult]:
        q = query
        kept = self._anomalies
        start = bisect_right(kept, max(q.after, self._dropped), key=lambda r: r.seq)
        matching = (
            r for r in islice(kept, start, None)
            if (q.lifecycle is None or r.lifecycle == q.lifecycle)
            and (q.outcome is None or r.outcome is q.outcome)
            and (q.meeting_id is None or r.data.get("meetingId") == q.meeting_id)
            and (q.session_id is None or r.data.get("sessionId") == q.session_id)
        )
        return list(islice(matching, q.limit))

    def log(self, after: int, limit: int | None) -> list[FeedResult]:
        start = bisect_right(self._log, after, key=lambda r: r.seq)
        return list(islice(self._log, start, None if limit is None else start + limit))

    # -- rebuild and retention ------------------------------------------------------------

    def maintenance(self) -> _Maintenance:
        return _Maintenance(self)

    def prune(self, before: float) -> int:
        logged = {(r.lifecycle, r.key): r.seq for r in self._log
                  if r.lifecycle is not None and r.key is not None}
        pruned: set[tuple[str | None, ResourceKey | None]] = set()
        for (name, key), last in logged.items():
            res = self._tables[name][key]
            if res.state in LIFECYCLES[name].final_states and res.entered < before:
                self._bases[(name, key)] = Snapshot(res.copy(), last)
                pruned.add((name, key))
        if not pruned:
            return 0
        kept = len(self._log)
        self._log = self._without(self._log, pruned)
        self._anomalies = self._without(self._anomalies, pruned)
        return kept - len(self._log)

    def _without(self, results: Iterable[FeedResult],
                 refs: Collection[tuple[str | None, ResourceKey | None]]) -> deque[FeedResult]:
        return deque((r for r in results if (r.lifecycle, r.key) not in refs),
                     maxlen=self.log_limit)

    def close(self) -> None:
        pass


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
        for name, table in s._tables.items():
            for key, res in table.items():
                base = s._bases.get((name, key))
                # a snapshot from before the bound dropped events may miss some after it
                kept[(name, key)] = Stored(res, base if base and base.seq >= s._dropped else None)
        return kept

    def events(self) -> Iterator[FeedResult]:
        return iter(list(self.store._log))

    def replace(self, changed: Mapping[ResourceRef, tuple[Resource, int, int]],
                removed: Collection[ResourceRef]) -> None:
        s = self.store
        for (name, key) in removed:
            s._tables[name].pop(key, None)
        for (name, key), (res, _, _) in changed.items():
            res.history = _history(s._log, name, key, s._cap)
            s._tables[name][key] = res


def _history(log: Iterable[FeedResult], lifecycle: str, key: ResourceKey,
             cap: int) -> array[float]:
    """The packed history of a resource, from the log."""
    h = array("d")
    for r in log:
        if r.lifecycle == lifecycle and r.key == key:
            h.extend((pack(r.seq, r.webhook_type or "", r.outcome), r.timestamp))
    return h[-cap:] if len(h) > cap else h

