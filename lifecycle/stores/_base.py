"""The interface between the engine and a store: what a backend implements.

A store keeps the resources and an event log, and answers queries about them. The
engine feeds through :meth:`Store.begin`: the store loads (and, when several writers
share it, locks) the resources a batch touches and hands out sequence numbers; the
engine steps the events through the core; :meth:`Batch.commit` writes the log entries
and the resource changes in that one transaction. Everything else is a plain query.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import attrs

from .._core import Parsed, Rejected
from .._deadlines import Deadlines
from .._lifecycles import Outcome
from .._records import (
    Change,
    FeedResult,
    Overdue,
    Resource,
    ResourceKey,
    ResourceRef,
    ResourceStatus,
    Snapshot,
)

__all__ = [
    "AnomalyQuery",
    "Batch",
    "ChangeQuery",
    "Maintenance",
    "ResourceQuery",
    "Store",
    "Stored",
]


@attrs.frozen
class ResourceQuery:
    """The filters and page of ``Engine.resources``, checked by the engine."""

    lifecycle: str | None = None
    meeting_id: str | None = None
    session_id: str | None = None
    state: str | None = None
    limit: int | None = None
    offset: int = 0
    overdue: bool = False
    """Only the resources whose current visit a sweep flagged overdue."""


@attrs.frozen
class AnomalyQuery:
    """The filters and page of ``Engine.anomalies``, checked by the engine."""

    lifecycle: str | None = None
    outcome: Outcome | None = None
    meeting_id: str | None = None
    session_id: str | None = None
    after: int = 0
    limit: int | None = None


@attrs.frozen
class ChangeQuery:
    """The cursor, page and filters of ``Engine.changes``, checked by the engine."""

    after: int = 0
    limit: int | None = None
    lifecycle: str | None = None
    state: str | None = None
    """The state entered (or, for an overdue flag, stuck in)."""
    meeting_id: str | None = None
    session_id: str | None = None


class Stored(NamedTuple):
    """A stored resource, with the snapshot its log starts from once pruned."""

    resource: Resource
    base: Snapshot | None


class Batch(Protocol):
    """One feeding transaction, as the engine sees it: begun by :meth:`Store.begin`,
    ended by :meth:`commit` or :meth:`abort`."""

    @property
    def seqs(self) -> Sequence[int]:
        """The sequence numbers of the batch's events, in order (a strict batch may use
        fewer)."""

    @property
    def tables(self) -> Mapping[str, MutableMapping[ResourceKey, Resource]]:
        """The resources the batch touches (and their sessions), by lifecycle and key:
        at least those, loaded (and locked) for this batch. ``_core.step`` changes them
        in place and adds the ones seen for the first time."""

    @property
    def history_cap(self) -> int:
        """How many floats of packed history each resource keeps (0: none; the store
        answers history from its log)."""

    @property
    def datas(self) -> MutableMapping[int, Any] | list[Any]:
        """Where ``_core.step`` puts the data of each changed resource after its change
        (the change feed's; a resource may change twice in a batch), at
        ``seq % data_slots``."""

    @property
    def data_slots(self) -> int:
        """The slots of :attr:`datas`: the size of a ring (the memory log's), or
        :data:`~lifecycle._core.ALL_SLOTS` for a mapping by ``seq``."""

    def seen(self, lifecycle: str, key: ResourceKey, digest: bytes, since: float) -> bool:
        """Whether this resource received a payload of this digest at ``since`` or later,
        before this batch (the engine knows the batch's own)."""

    def commit(
        self,
        results: Sequence[FeedResult],
        digests: Sequence[bytes | None] | None,
    ) -> None:
        """Log ``results`` (the batch's events, in order, maybe fewer than it began with),
        store the resources they changed, and end the transaction. ``digests`` are their
        redelivery digests, with a window (None without). Each result that changed its
        resource is a change of the feed, with a cursor above every committed one and
        its data from :attr:`datas`."""

    def abort(self) -> None:
        """End the transaction, writing nothing of it."""


class Maintenance(Protocol):
    """Exclusive access to the whole store, for ``rebuild``: writers wait meanwhile."""

    def resources(self) -> dict[ResourceRef, Stored]:
        """Every stored resource."""

    def events(self) -> Iterator[FeedResult]:
        """Every logged result, in sequence order."""

    def replace(
        self,
        changed: Mapping[ResourceRef, tuple[Resource, Sequence[int]]],
        removed: Collection[ResourceRef],
    ) -> None:
        """Store ``changed`` resources (with the numbers of their logged events, after
        their snapshot if any), delete ``removed`` ones (those without a snapshot)."""


class Store(Protocol):
    """Where an engine keeps its resources and event log.

    Backends: ``stores.memory``, ``stores.sqlite``, ``stores.postgres``; see
    docs/storage.md for how to add one.
    """

    url: str
    """Where the store is (a password in it is the caller's to hide)."""

    history_limit: int
    """How many events a resource's history shows."""

    whole_log: bool
    """True when the log keeps every event but the pruned ones (a snapshot stands in for
    them); False when older events may simply be forgotten (the memory store's bound)."""

    def begin(self, events: Sequence[Parsed | Rejected], since: float | None) -> Batch:
        """A transaction feeding ``events`` (``_core.touched`` tells what they touch).

        ``since`` (when not None) asks for the digests of payloads logged for them since
        then, for :meth:`Batch.seen`. Raises ``StoreUnavailable`` when the database
        fails (here or at commit); the transaction is then rolled back.
        """

    def maintenance(self) -> AbstractContextManager[Maintenance]:
        """Exclusive access for ``rebuild``, committed when the block ends."""

    def last_seq(self) -> int:
        """The highest sequence number handed out and logged, pruned or not."""

    def last_cursor(self) -> int:
        """The cursor of the newest committed change (0: none yet): every change after
        it commits later."""

    def count(self) -> int:
        """How many resources are tracked."""

    def status(self, lifecycle: str, key: ResourceKey) -> ResourceStatus | None:
        """One resource with its history, None when never seen."""

    def resource_log(
        self, lifecycle: str, key: ResourceKey, at: int | datetime
    ) -> tuple[Snapshot | None, list[FeedResult]]:
        """The snapshot a resource's log starts from (None: its first event), and its
        logged results up to ``at`` (a sequence number or a time), in order.

        Raises ``LogPruned`` when the log of the resource before ``at`` is gone.
        """

    def resources(self, query: ResourceQuery) -> list[ResourceStatus]:
        """The resources matching ``query``, by lifecycle (registry order) then first
        seen."""

    def state_counts(self) -> dict[str, dict[str, int]]:
        """How many resources are in each state, in any order."""

    def anomalies(self, query: AnomalyQuery) -> list[FeedResult]:
        """The logged anomalies matching ``query``, in sequence order."""

    def changes(self, query: ChangeQuery) -> list[Change]:
        """The changes after ``query.after`` matching it, in cursor order. Raises
        :class:`~lifecycle.errors.CursorGone` when changes after that cursor are no
        longer kept."""

    def overdue(self, deadlines: Deadlines, now: float, lifecycle: str | None) -> list[Overdue]:
        """Every resource (of ``lifecycle``, or any) past one of ``deadlines`` at ``now``
        (epoch seconds), by the index of states and entry times, in any order."""

    def sweep(self, deadlines: Deadlines, now: float) -> list[FeedResult]:
        """In one transaction, flag each resource past one of ``deadlines`` at ``now``
        whose current visit is not flagged yet: log an ``overdue`` entry for it
        (``_core.overdue_entry``), with its own sequence number, in the order of when it
        fell due (then lifecycle and key); those entries. With several writers, one
        sweeps at a time."""

    def append(
        self,
        ref: ResourceRef,
        entered: float,
        make: Callable[[int, Resource], FeedResult],
    ) -> FeedResult | None:
        """Log the entry ``make(seq, resource)`` returns for ``ref``, in one transaction,
        if the resource is still in the visit that began at ``entered``; None if not."""

    def log(self, after: int, limit: int | None) -> list[FeedResult]:
        """The logged results after ``after``, in sequence order."""

    def prune(self, before: float) -> int:
        """Drop the log of resources that entered a final state before ``before``
        (epoch seconds), keeping a snapshot of each; the number of entries dropped."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless a feeding transaction can begin and commit
        now (what a health check asks); a connection that fails is replaced by a fresh
        one and tried once more before saying so."""

    def close(self) -> None:
        """Release connections; a later call opens them again."""
