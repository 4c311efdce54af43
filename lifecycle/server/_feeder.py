"""The server's engines, each on a thread of its own: one writes, one reads.

The writer feeds webhooks in arrival order: those that queue up while a batch is being
committed go in the next batch, one transaction for all of them (group commit), and each
is answered only once its batch has committed. The reader answers queries, so they never
wait behind a commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from .._engine import Engine
from .._records import FeedResult, Reconciled
from ..errors import StoreUnavailable
from ..stores.sqlite import sqlite_path
from ._signature import SignatureRefused, signature_problem

if TYPE_CHECKING:
    from ..reconcile import Reconciler

__all__ = ["EngineThread", "Engines", "GroupCommit", "Load", "QueueFull", "open_engines"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class EngineThread:
    """An engine with a thread of its own: calls run there, one at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifecycle")

    async def call(
        self, fn: Callable[Concatenate[Engine, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """``fn(engine, *args, **kwargs)`` on the engine's thread; what it returns or raises."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self.engine, *args, **kwargs))

    def close(self) -> None:
        """Close the engine on its thread, then end the thread."""
        self._pool.submit(self.engine.close).result()
        self._pool.shutdown()


def _verify_and_feed(
    engine: Engine,
    bodies: list[bytes],
    signatures: list[str | None],
    key: rsa.RSAPublicKey | None,
) -> list[FeedResult | str]:
    """Check each body's signature (with a key), feed the signed ones in one batch; for
    each, its result or why its signature was refused.

    It runs on the writer's thread: checking an RSA signature lets go of the GIL, so the
    event loop serves other requests meanwhile, on the other core.
    """
    problems = [
        None if key is None else signature_problem(key, signature, body)
        for body, signature in zip(bodies, signatures, strict=True)
    ]
    fed = iter(engine.feed_many([b for b, p in zip(bodies, problems, strict=True) if p is None]))
    return [next(fed) if problem is None else problem for problem in problems]


def _ping(engine: Engine) -> int:
    engine.ping()
    return engine.events_fed


class Load:
    """How many webhooks the app holds unanswered, against how many it takes: shared by
    the app's group commit (which counts) and the protocol (which sheds before the app
    is even called, the cheapest 503 there is)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.pending = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.pending >= self.limit


class QueueFull(Exception):  # noqa: N818 - the condition, as asyncio.QueueFull
    """The webhook queue holds ``max_queue`` webhooks: this one is not taken (503)."""


Queued = tuple[bytes, str | None, asyncio.Future[FeedResult]]
"""A webhook waiting for its batch: its body, its signature header, its answer."""


class GroupCommit:
    """Feeds webhooks in arrival order, each batch that queued up in one transaction.

    With a ``key``, each webhook's signature is checked first, on the writer's thread.
    When the store fails, ``reader`` (another engine of the same database) closes its
    connection too, so that both open afresh: a SQLite file that was read-only is
    reopened writable once it is so again (a connection left open would keep the
    process's view of it read-only).
    """

    def __init__(
        self,
        writer: EngineThread,
        max_batch: int,
        key: rsa.RSAPublicKey | None,
        reader: EngineThread | None = None,
        load: Load | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._on_change = on_change
        self.load = load or Load(None)
        """Webhooks fed and not yet answered (queued or in the batch), and the limit."""
        self._max_batch = max_batch
        self._key = key
        self._queue: asyncio.Queue[Queued] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def feed(self, body: bytes, signature: str | None) -> FeedResult:
        """What feeding ``body`` did, once its batch has committed.

        Raises :class:`SignatureRefused` when ``signature`` does not sign ``body`` (nothing
        is stored), :class:`~lifecycle.errors.StoreUnavailable` when the batch could not
        be committed: nothing of it was stored; :class:`QueueFull` at once, when
        ``max_queue`` webhooks wait already.
        """
        load = self.load
        if load.full:
            raise QueueFull(f"{load.limit} webhooks are waiting to be stored")
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        done: asyncio.Future[FeedResult] = asyncio.get_running_loop().create_future()
        load.pending += 1
        try:
            self._queue.put_nowait((body, signature, done))
            return await done
        finally:
            load.pending -= 1

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                outcomes = await self._writer.call(
                    _verify_and_feed, [b for b, _, _ in batch], [s for _, s, _ in batch], self._key
                )
            except Exception as e:  # the store failed: every webhook of the batch is retried
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(e)
                if isinstance(e, StoreUnavailable) and self._reader is not None:
                    await self._reader.call(Engine.close)
            else:
                if self._on_change is not None and any(
                    not isinstance(o, str) and o.changed for o in outcomes
                ):
                    self._on_change()
                for (_, _, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue
                    if isinstance(outcome, str):
                        done.set_exception(SignatureRefused(outcome))
                    else:
                        done.set_result(outcome)
            for _ in batch:
                self._queue.task_done()

    async def stop(self) -> None:
        """Feed and answer every webhook already queued, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()


class Engines:
    """The writing engine behind its group commit, the reading engine, and the one that
    reconciles (its calls to the provider's API wait on a thread of their own)."""

    def __init__(
        self,
        writer: EngineThread,
        reader: EngineThread,
        max_batch: int,
        key: rsa.RSAPublicKey | None = None,
        load: Load | None = None,
        reconciler: tuple[EngineThread, Reconciler] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._reconciler = reconciler
        self._feeder = GroupCommit(
            writer, max_batch, key, None if reader is writer else reader, load, on_change
        )

    async def feed(self, body: bytes, signature: str | None = None) -> FeedResult:
        """Feed one webhook body; see :meth:`GroupCommit.feed`."""
        return await self._feeder.feed(body, signature)

    async def health(self) -> int:
        """The number of events fed, once the writer has shown that it can take a batch
        now (on its own thread: never behind the reads); :class:`StoreUnavailable`
        when it cannot."""
        return await self._writer.call(_ping)

    async def read(
        self, fn: Callable[Concatenate[Engine, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """``fn(reading_engine, *args, **kwargs)`` on the reader's thread."""
        return await self._reader.call(fn, *args, **kwargs)

    async def write(
        self, fn: Callable[Concatenate[Engine, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """``fn(writing_engine, *args, **kwargs)`` on the writer's thread."""
        return await self._writer.call(fn, *args, **kwargs)

    async def sweep(self) -> list[FeedResult]:
        """``Engine.sweep`` on the writer's thread (one short transaction)."""
        return await self._writer.call(Engine.sweep)

    async def reconcile(self) -> list[Reconciled] | None:
        """``Engine.reconcile`` on the reconciler's thread; None without a reconciler."""
        if self._reconciler is None:
            return None
        thread, reconciler = self._reconciler
        return await thread.call(Engine.reconcile, reconciler)

    async def close(self) -> None:
        """Answer the queued webhooks, then close the engines."""
        await self._feeder.stop()
        threads = {id(t): t for t in (self._reader, self._writer)}
        if self._reconciler is not None:
            threads[id(self._reconciler[0])] = self._reconciler[0]
        for thread in threads.values():
            if thread is not self._writer:
                thread.close()
        self._writer.close()


@asynccontextmanager
async def open_engines(
    db: str,
    redelivery_window: float | None,
    max_batch: int,
    key: rsa.RSAPublicKey | None = None,
    load: Load | None = None,
    deadlines: Mapping[str, Any] | None = None,
    reconciler: Reconciler | None = None,
    on_change: Callable[[], None] | None = None,
) -> AsyncIterator[Engines]:
    """The engines of database ``db``, open while the context lasts; with ``key``, the
    writer checks each webhook's signature before feeding it; once ``load`` is full,
    :class:`QueueFull`. With a ``reconciler``, a third engine asks it. ``on_change`` is
    called after each batch that changed a resource commits.

    An in-memory database (``memory://``, ``sqlite://``) exists in its own engine only:
    then every call goes through the writing engine.
    """
    writer = EngineThread(Engine.open(db, redelivery_window=redelivery_window, deadlines=deadlines))
    shared = sqlite_path(db) == "" or urlsplit(db).scheme == "memory"

    def another() -> EngineThread:
        return writer if shared else EngineThread(Engine.open(db, deadlines=deadlines))

    reader = another()
    asking = None if reconciler is None else (another(), reconciler)
    engines = Engines(writer, reader, max_batch, key, load, asking, on_change)
    try:
        yield engines
    finally:
        await engines.close()
