"""The engine: one feed loop over a store; every fed payload gets exactly one outcome.

The engine parses a batch of payloads (``_core.parse``), asks its store for the
resources they touch (``Store.batch``), steps each event through the core
(``_core.step``), hands the results back to the store to write in one transaction, then
tells its subscribers. Strict mode, subscriptions and the checks of every argument live
here, once, for every store.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Self, cast

from attrs import frozen

from . import _core as core
from ._convert import Payload
from ._core import Parsed, Rejected, Replay, parse, status_of, step
from ._deadlines import Deadlines
from ._lifecycles import IDLE, LIFECYCLES, Lifecycle, Outcome
from ._records import (
    RECONCILED,
    Change,
    FeedResult,
    HistoryEntry,
    Overdue,
    Reconciled,
    ResourceKey,
    ResourceStatus,
    snake,
)
from .errors import InvalidArgument, LifecycleViolation, StoreUnavailable
from .stores import AnomalyQuery, ChangeQuery, MemoryStore, ResourceQuery, Store, open_store

if TYPE_CHECKING:
    from .reconcile import Reconciler

__all__ = ["Engine"]

# what a batch without a redelivery window has for its marks: never read nor filled (a new
# set for each feed costs 1 % of a memory engine's feed, in instructions)
_NO_MARKS: set[tuple[str, ResourceKey, bytes]] = set()
log = logging.getLogger("lifecycle")

Difference = tuple[str, ResourceKey, str | None, str]
"""What ``rebuild`` found: lifecycle, key, the stored state (None: absent), the rebuilt one."""


@frozen
class _Subscription:
    callback: Callable[[FeedResult], object]
    lifecycle: str | None
    state: str | None


class Engine:
    """Tracks every resource's lifecycle from the webhooks fed to it.

    ``Engine()`` keeps everything in memory (a :class:`~lifecycle.stores.MemoryStore`);
    ``Engine.open(url)`` in a database; ``Engine(store)`` in a store of your own making.
    ``strict=True`` raises :class:`LifecycleViolation` for any outcome but ``applied``
    and ``duplicate`` and changes nothing. ``clock`` returns epoch seconds.
    ``history_limit`` caps the events shown per resource (give it to the store instead
    when you give a store). ``redelivery_window`` (seconds) makes a byte-identical
    payload of the same resource within it a ``duplicate`` flagged ``redelivery``.

    Not thread-safe: one engine per thread or process.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 one engine over any store: every engine keeps an event log.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        history_limit: int | None = None,
        redelivery_window: float | None = None,
        deadlines: Mapping[str, Any] | None = None,
    ) -> None:
        if store is not None and history_limit is not None:
            raise InvalidArgument("history_limit belongs to the store when a store is given")
        if redelivery_window is not None and not redelivery_window > 0:
            raise InvalidArgument(
                f"redelivery_window must be a positive number of seconds, not {redelivery_window}"
            )
        self.store: Store = (
            store
            if store is not None
            else MemoryStore(history_limit=100 if history_limit is None else history_limit)
        )
        self.strict = strict
        self.redelivery_window = redelivery_window
        self.deadlines = Deadlines(deadlines)
        """The deadlines in force: the defaults with ``deadlines`` merged over them."""
        self._clock = clock
        self._subscriptions: list[_Subscription] = []

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str],
        *,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        history_limit: int = 100,
        redelivery_window: float | None = None,
        synchronous: str | None = None,
        read_only: bool = False,
        deadlines: Mapping[str, Any] | None = None,
    ) -> Engine:
        """An engine whose state is stored at ``url``, created or migrated as needed.

        ``sqlite:///path.db`` or a bare path (WAL mode; ``synchronous`` is SQLite's
        pragma, ``NORMAL`` by default), ``postgresql://user@host/db`` (psycopg 3) for
        several receivers, or ``memory://``. ``read_only`` opens an existing SQLite
        database for queries only, never creating, migrating or writing it (see
        :func:`~lifecycle.stores.open_store`). Raises :class:`InvalidArgument` for a URL
        of no known kind and :class:`StoreUnavailable` when the database cannot be
        opened.

        .. versionchanged:: 0.2 ``read_only``.
        """
        options: dict[str, Any] = {"history_limit": history_limit, "read_only": read_only}
        if synchronous is not None:
            options["synchronous"] = synchronous
        return cls(
            open_store(url, **options),
            strict=strict,
            clock=clock,
            redelivery_window=redelivery_window,
            deadlines=deadlines,
        )

    # -- feeding ------------------------------------------------------------------

    def feed(self, payload: Payload) -> FeedResult:
        """Feed one webhook payload (mapping, JSON text or bytes); never raises on bad input.

        On a database it is committed, with its state change, before ``feed`` returns.
        """
        return self._feed([parse(payload)])[0]

    def feed_many(self, payloads: Iterable[Payload]) -> list[FeedResult]:
        """Feed payloads in order, in one transaction; the results in the same order.

        The events of a batch share one received time. In strict mode the events before
        the first violation are kept, then :class:`LifecycleViolation` is raised for it.
        """
        items = list(map(parse, payloads))
        return self._feed(items) if items else []

    def _feed(self, items: list[Parsed | Rejected], now: float | None = None) -> list[FeedResult]:
        """Feed a batch; when it fails for any reason but an unavailable store (or a
        strict engine's violation), feed its payloads one at a time, and store the one
        that fails alone as ``malformed``, the failure its reason: a payload the store
        cannot keep never fails the others, nor gets an error its sender would retry."""
        if now is None:
            now = self._clock()
        try:
            return self._feed_batch(items, now)
        except (StoreUnavailable, LifecycleViolation):
            raise
        except Exception as e:
            if len(items) > 1:
                return [result for item in items for result in self._feed([item], now)]
            (item,) = items
            if type(item) is Rejected and item.reason.startswith(_UNSTORABLE):
                raise  # not even the payload as it came can be kept
            reason = f"{_UNSTORABLE}: {type(e).__name__}: {e}".replace("\x00", "\\x00")[:500]
            log.warning("%s (payload stored as malformed)", reason)
            rejected = Rejected(Outcome.MALFORMED, reason, item.webhook_type, item.payload)
            return self._feed_batch([rejected], now)

    def _feed_batch(self, items: list[Parsed | Rejected], now: float) -> list[FeedResult]:
        """The feed loop: parsed payloads stepped through the core in one batch."""
        window = self.redelivery_window
        since = None if window is None else now - window
        strict = self.strict
        results: list[FeedResult] = []
        # with a redelivery window, the digest of each result's payload (None: no resource)
        digests: list[bytes | None] = []
        fed: set[tuple[str, ResourceKey, bytes]] = set() if since is not None else _NO_MARKS
        violation: LifecycleViolation | None = None
        batch = self.store.begin(items, since)
        tables, cap, seqs = batch.tables, batch.history_cap, batch.seqs
        datas, slots = batch.datas, batch.data_slots
        try:
            for i, item in enumerate(items):  # not zip(..., strict=): its keyword costs more
                seq = seqs[i]
                if type(item) is Parsed:
                    redelivered = False
                    if since is not None:  # a redelivery window: has it come before?
                        digest = core.digest(item.payload)
                        mark = (item.route.lifecycle, item.key, digest)
                        redelivered = mark in fed or batch.seen(*mark, since)
                        fed.add(mark)
                        digests.append(digest)
                    result = step(item, tables, seq, now, redelivered, strict, cap, datas, slots)
                    results.append(result)
                else:
                    result = core.reject(cast(Rejected, item), seq, now)
                    if strict:
                        raise core.violation(result)
                    if since is not None:
                        digests.append(None)
                    results.append(result)
        except LifecycleViolation as v:  # strict: keep the events before it
            violation = v
            del digests[len(results) :]
        except BaseException:
            batch.abort()
            raise
        batch.commit(results, digests if since is not None else None)
        if self._subscriptions:
            for result in results:
                if result.changed:
                    self._notify(result)
        if violation is not None:
            raise violation
        return results

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
        """Call ``callback(result)`` after each change of state, and for each ``overdue``
        entry of :meth:`sweep`; returns an unsubscribe.

        Filter on a lifecycle and on the state entered (or overdue in). An exception in
        a callback is logged (logger ``lifecycle``) and does not stop the engine.

        .. versionchanged:: 0.3 told of overdue entries.
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
        """The sequence number of the last payload fed (counting pruned ones)."""
        return self.store.last_seq()

    @property
    def cursor(self) -> int:
        """The cursor of the newest committed change: ``changes(after=engine.cursor)``
        gives the changes that commit from now on.

        .. versionadded:: 0.3
        """
        return self.store.last_cursor()

    def status(
        self, lifecycle: str, *key: str, at: int | datetime | None = None, **ids: str
    ) -> ResourceStatus | None:
        """The status of one resource, by its key values or snake_case key fields.

        ``engine.status("recording", meeting_id="m", session_id="s")``; None when the
        resource was never seen. ``at`` (a sequence number or an aware ``datetime``)
        answers what it was then, replayed from the event log; :class:`LogPruned` when
        that part of the log is gone. Raises :class:`InvalidArgument` for an unknown
        lifecycle or a key of the wrong shape.
        """
        lc = _lifecycle(lifecycle)
        found = _key_values(lc, key, ids)
        if at is None:
            return self.store.status(lc.name, found)
        if not isinstance(at, int | datetime) or isinstance(at, bool):
            raise InvalidArgument(f"at must be a sequence number or a datetime, not {at!r}")
        return self._status_at(lc.name, found, at)

    def _status_at(self, name: str, key: ResourceKey, at: int | datetime) -> ResourceStatus | None:
        base, logged = self.store.resource_log(name, key, at)
        replay = Replay()
        if base is not None:
            replay.seed((name, key), base)
        for result in logged:
            replay.feed(result)
        res = replay.get((name, key))
        if res is None:
            return None
        history = tuple(
            HistoryEntry(r.seq, r.webhook_type or "", r.outcome, r.received_at) for r in logged
        )
        return status_of(name, key, res, history[-self.store.history_limit :])

    def resources(
        self,
        lifecycle: str | None = None,
        meeting_id: str | None = None,
        session_id: str | None = None,
        state: str | None = None,
        *,
        overdue: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ResourceStatus]:
        """Every tracked resource matching the filters, by lifecycle then first seen.

        ``overdue=True``: only those whose current visit to their state a :meth:`sweep`
        flagged overdue. ``limit`` and ``offset`` page through that order.

        .. versionchanged:: 0.3 ``overdue``.
        """
        _check_page(limit, offset, "offset")
        if lifecycle is not None:
            _lifecycle(lifecycle)
        if _nul(meeting_id, session_id, state):
            return []
        return self.store.resources(
            ResourceQuery(lifecycle, meeting_id, session_id, state, limit, offset, overdue)
        )

    def overdue(
        self, now: datetime | float | None = None, lifecycle: str | None = None
    ) -> list[Overdue]:
        """Every resource past its deadline at ``now`` (the engine's clock by default),
        of one ``lifecycle`` or all, the longest overdue first: in a state longer than
        its deadline allows, or unfinished longer than the grace after its meeting
        session ended (see docs/time.md). A query of the resources as they are, flagged
        by a :meth:`sweep` or not yet (``Overdue.flagged``): nothing is recorded.

        .. versionadded:: 0.3
        """
        if lifecycle is not None:
            _lifecycle(lifecycle)
        at = self._clock() if now is None else _epoch(now)
        found = self.store.overdue(self.deadlines, at, lifecycle)
        return sorted(found, key=lambda o: (o.due_at, o.status.lifecycle, o.status.key))

    def sweep(self, now: datetime | float | None = None) -> list[FeedResult]:
        """Flag every resource past its deadline at ``now`` (the engine's clock by
        default): once per visit to a state, an ``overdue`` entry in the event log, with
        its own sequence number; those entries, in the order the resources fell due.

        A resource flagged stays in :meth:`resources` ``(overdue=True)`` until it moves
        on; a later sweep does not flag the same visit again, nor does ``rebuild``
        lose or repeat a flag. Subscribers are told of each entry. With several
        receivers on one PostgreSQL, one sweeps at a time.

        .. versionadded:: 0.3
        """
        at = self._clock() if now is None else _epoch(now)
        made = self.store.sweep(self.deadlines, at)
        if self._subscriptions:
            for result in made:
                self._notify(result)
        return made

    def reconcile(
        self, reconciler: Reconciler, now: datetime | float | None = None
    ) -> list[Reconciled]:
        """Ask ``reconciler`` about each resource :meth:`overdue` lists, and feed the
        webhook each answer implies, with the warning ``reconciled`` and, under that key
        in its payload, the answer's reason and evidence (so that a replay needs no API
        call). An answer that implies nothing changes nothing; the first such answer in
        a visit to a state is logged, as a ``duplicate`` warned ``reconciled`` with the
        answer as evidence. Raises what the reconciler raises
        (:class:`~lifecycle.ProviderError`), after feeding the answers before it.

        .. versionadded:: 0.3
        """
        done = []
        for item in self.overdue(now):
            answer = reconciler.ask(item.status)
            status = item.status
            result = None
            if answer.webhook is not None:
                evidence = {"reason": answer.reason, "evidence": answer.evidence}
                result = self.feed({**answer.webhook, RECONCILED: evidence})
            elif not _answered(status):
                ref = (status.lifecycle, status.key)
                note = partial(
                    core.answer_entry,
                    ref=ref,
                    now=self._clock(),
                    reason=answer.reason,
                    evidence=answer.evidence,
                )
                result = self.store.append(ref, status.entered_at.timestamp(), note)
            done.append(Reconciled(item, answer, result))
        return done

    def state_counts(self) -> dict[str, dict[str, int]]:
        """How many resources are in each state: ``{lifecycle: {state: count}}``.

        Lifecycles in registry order, states in their lifecycle's order; only the
        states that have resources.
        """
        counts = self.store.state_counts()
        return {
            name: {s: counts[name][s] for s in lc.states if s in counts[name]}
            for name, lc in LIFECYCLES.items()
            if counts.get(name)
        }

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
        """Every logged result that was not a clean ``applied``, with its payload, in
        feed order.

        That is every other outcome, and every applied event that carried warnings.
        ``after`` (a ``seq``, exclusive) and ``limit`` page through them.
        """
        _check_page(limit, after, "after")
        if lifecycle is not None:
            _lifecycle(lifecycle)
        try:
            want = Outcome(outcome) if outcome is not None else None
        except ValueError:
            raise InvalidArgument(
                f"unknown outcome {outcome!r}; known: {', '.join(o.value for o in Outcome)}"
            ) from None
        if _nul(meeting_id, session_id):
            return []
        return self.store.anomalies(
            AnomalyQuery(lifecycle, want, meeting_id, session_id, after, limit)
        )

    def changes(
        self,
        after: int = 0,
        limit: int | None = None,
        *,
        lifecycle: str | None = None,
        state: str | None = None,
        meeting_id: str | None = None,
        session_id: str | None = None,
    ) -> list[Change]:
        """The change feed: each change of state (and each sweep's ``overdue`` flag)
        committed after cursor ``after``, in cursor order, at most ``limit``; filtered by
        lifecycle, state entered, meeting and session. Resume from the last ``cursor``
        seen and nothing is missed, even with several writers on one database (see
        docs/feed.md). Raises :class:`CursorGone` (with the ``oldest`` cursor to resume
        from) when changes after ``after`` were pruned.

        .. versionadded:: 0.3
        """
        _check_page(limit, after, "after")
        if lifecycle is not None:
            _lifecycle(lifecycle)
        if _nul(state, meeting_id, session_id):
            return []
        return self.store.changes(
            ChangeQuery(after, limit, lifecycle, state, meeting_id, session_id)
        )

    def follow(
        self,
        after: int = 0,
        *,
        poll: float = 0.5,
        lifecycle: str | None = None,
        state: str | None = None,
        meeting_id: str | None = None,
        session_id: str | None = None,
    ) -> Iterator[Change]:
        """The changes after cursor ``after``, then each new one as it commits (asked for
        again every ``poll`` seconds when none is newer): an endless iterator, to resume
        from the last ``cursor`` it gave. Filters as :meth:`changes`.

        .. versionadded:: 0.3
        """
        if not poll > 0:
            raise InvalidArgument(f"poll must be a positive number of seconds, not {poll}")
        while True:
            page = self.changes(
                after,
                1000,
                lifecycle=lifecycle,
                state=state,
                meeting_id=meeting_id,
                session_id=session_id,
            )
            yield from page
            if page:
                after = page[-1].cursor
            else:
                time.sleep(poll)

    def log(self, after: int = 0, limit: int | None = None) -> list[FeedResult]:
        """Logged results in sequence order, from ``after`` (exclusive)."""
        _check_page(limit, after, "after")
        return self.store.log(after, limit)

    # -- rebuild and retention -----------------------------------------------------

    def rebuild(self) -> list[Difference]:
        """Recompute every resource from the event log and store it; what had differed.

        Each difference is ``(lifecycle, key, stored state or None, rebuilt state)``;
        data, entry time and cycle id are compared too. On a consistent store the list
        is empty. Writers wait while it runs. A resource whose first events have left a
        bounded memory log cannot be recomputed and is kept as it is.
        """
        store = self.store
        with store.maintenance() as m:
            stored = m.resources()
            replay = Replay(whole_log=store.whole_log)
            for ref, kept in stored.items():
                if kept.base is not None:
                    replay.seed(ref, kept.base)
            for logged in m.events():
                replay.feed(logged)
            diffs: list[Difference] = []
            changed = {}
            for ref, res, seqs in replay.resources():
                old = stored.get(ref)
                if old is None or old.resource.fields() != res.fields():
                    diffs.append((*ref, old.resource.state if old else None, res.state))
                    changed[ref] = (res, seqs)
            removed = [ref for ref in stored if replay.get(ref) is None] if store.whole_log else []
            diffs += [(*ref, stored[ref].resource.state, IDLE) for ref in removed]
            if diffs:
                m.replace(changed, removed)
        return diffs

    def prune(self, before: datetime | float) -> int:
        """Drop the log of resources that entered a final state before ``before``.

        Their final state stays (with a snapshot that ``rebuild`` and ``status(at=...)``
        start from); anomalies of malformed and unknown payloads are kept. Returns the
        number of log entries dropped.
        """
        return self.store.prune(
            before.timestamp() if isinstance(before, datetime) else float(before)
        )

    # -- the rest --------------------------------------------------------------------

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store can take a batch now; a
        failing connection is replaced and tried once more first (a health check).

        .. versionadded:: 0.2
        """
        self.store.ping()

    def close(self) -> None:
        """Release the store's connections (a later call opens them again)."""
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[ResourceStatus]:
        return iter(self.resources())

    def __len__(self) -> int:
        return self.store.count()

    def __repr__(self) -> str:
        return f"Engine({type(self.store).__name__} at {self.store.url!r})"


_UNSTORABLE = "the store cannot keep it as given"


def _answered(status: ResourceStatus) -> bool:
    """Whether a reconciler's answer that implied nothing is logged in the current visit
    of the resource to its state (the last such entries are in its history)."""
    entered = status.entered_at
    return any(
        h.webhook_type == "" and h.outcome is Outcome.DUPLICATE and h.received_at >= entered
        for h in status.history
    )


def _epoch(t: datetime | float) -> float:
    return t.timestamp() if isinstance(t, datetime) else float(t)


def _nul(*values: str | None) -> bool:
    """Whether a filter holds NUL, which no stored text does (PostgreSQL refuses it)."""
    return any(v is not None and "\x00" in v for v in values)


def _check_page(limit: int | None, start: int, name: str) -> None:
    if limit is not None and limit < 0:
        raise InvalidArgument(f"limit must not be negative, not {limit}")
    if start < 0:
        raise InvalidArgument(f"{name} must not be negative, not {start}")


def _key_values(lc: Lifecycle, key: tuple[str, ...], ids: Mapping[str, str]) -> ResourceKey:
    """The key of a resource from positional values or snake_case keyword ids."""
    fields = lc.definition.key_fields
    if ids:
        names = {snake(f): f for f in fields}
        unknown = set(ids) - set(names)
        if key or unknown or len(ids) != len(fields):
            raise InvalidArgument(
                f"{lc.name} resources are keyed by {', '.join(names)}"
                + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
            )
        return tuple(ids[n] for n in names)
    if len(key) != len(fields):
        raise InvalidArgument(f"{lc.name} resources are keyed by {', '.join(fields)}")
    return tuple(key)


def _lifecycle(name: str) -> Lifecycle:
    try:
        return LIFECYCLES[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown lifecycle {name!r}; known: {', '.join(LIFECYCLES)}"
        ) from None
