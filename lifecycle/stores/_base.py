"""The interface between the engine and a store: what a backend implements.

A store keeps the resources and an event log, and answers queries about them. The
engine feeds through :meth:`Store.batch`: the store loads (and, when several writers
share it, locks) the resources a batch touches, hands out sequence numbers, and writes
the batch's log entries and resource changes in one transaction when the batch ends
without an exception. Everything else the engine asks is a plain query.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import attrs

from .._lifecycles import Outcome
from .._records import FeedResult, Resource, ResourceKey, ResourceRef, ResourceStatus, Snapshot

__all__ = [
    "AnomalyQuery",
    "Batch",
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


@attrs.frozen
class AnomalyQuery:
    """The filters and page of ``Engine.anomalies``, checked by the engine."""

    lifecycle: str | None = None
    outcome: Outcome | None = None
    meeting_id: str | None = None
    session_id: str | None = None
    after: int = 0
    limit: int | None = None


class Stored(NamedTuple):
    """A stored resource, with the snapshot its log starts from once pruned."""

    resource: Resource
    base: Snapshot | None


class Batch(Protocol):
    """One transaction of feeding, as the engine sees it."""

    seqs: Collection[int]
    """The sequence numbers of this batch's events, in order; unused ones are skipped."""

    def get(self, lifecycle: str, key: ResourceKey) -> Resource | None:
        """A resource the batch touches (or its session), None when never seen.

        The engine changes the returned resource in place and hands it back to
        :meth:`add`.
        """

    def seen(self, lifecycle: str, key: ResourceKey, digest: bytes, since: float) -> bool:
        """Whether this resource received a payload of this digest at ``since`` or later."""

    def add(self, result: FeedResult, resource: Resource | None, data: Mapping[str, Any] | None,
            digest: bytes | None) -> None:
        """Log ``result``; ``resource`` is its resource after the step (None when the
        payload named none), ``data`` the payload's data, ``digest`` its redelivery
        digest (None without a window)."""


class Maintenance(Protocol):
    """Exclusive access to the whole store, for ``rebuild``: writers wait meanwhile."""

    def resources(self) -> dict[ResourceRef, Stored]:
        """Every stored resource."""

    def events(self) -> Iterator[FeedResult]:
        """Every logged result, in sequence order."""

    def replace(self, changed: Mapping[ResourceRef, tuple[Resource, int, int]],
                removed: Collection[ResourceRef]) -> None:
        """Store ``changed`` resources (with their first and last sequence numbers),
        delete ``removed`` ones (those without a snapshot)."""


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

    def batch(self, wanted: Collection[ResourceRef], size: int,
              since: float | None) -> AbstractContextManager[Batch]:
        """A transaction feeding ``size`` events that touch the ``wanted`` resources.

        ``since`` (when not None) asks for the digests of payloads logged for them since
        then, for :meth:`Batch.seen`. Committed when the block ends without an
        exception, rolled back otherwise. Raises ``StoreUnavailable`` when the database
        fails.
        """

    def maintenance(self) -> AbstractContextManager[Maintenance]:
        """Exclusive access for ``rebuild``, committed when the block ends."""

    def last_seq(self) -> int:
        """The highest sequence number handed out and logged, pruned or not."""

    def count(self) -> int:
        """How many resources are tracked."""

    def status(self, lifecycle: str, key: ResourceKey) -> ResourceStatus | None:
        """One resource with its history, None when never seen."""

    def resource_log(self, lifecycle: str, key: ResourceKey,
                     at: int | datetime) -> tuple[Snapshot | None, list[FeedResult]]:
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

    def log(self, after: int, limit: int | None) -> list[FeedResult]:
        """The logged results after ``after``, in sequence order."""

    def prune(self, before: float) -> int:
        """Drop the log of resources that entered a final state before ``before``
        (epoch seconds), keeping a snapshot of each; the number of entries dropped."""

    def close(self) -> None:
        """Release connections; a later call opens them again."""
