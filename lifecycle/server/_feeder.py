"""The server's engines, each on a thread of its own: one writes, one reads.

The writer feeds webhooks in arrival order: those that queue up while a batch is being
committed go in the next batch, one transaction for all of them (group commit), and each
is answered only once its batch has committed. The reader answers queries, so they never
wait behind a commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

from .._engine import Engine
from .._records import FeedResult
from ..stores.sqlite import sqlite_path

__all__ = ["EngineThread", "Engines", "GroupCommit", "open_engines"]

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


class GroupCommit:
    """Feeds webhooks in arrival order, each batch that queued up in one transaction."""

    def __init__(self, writer: EngineThread, max_batch: int) -> None:
        self._writer = writer
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[FeedResult]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def feed(self, body: bytes) -> FeedResult:
        """What feeding ``body`` did, once its batch has committed.

        Raises :class:`~lifecycle.errors.StoreUnavailable` when the batch could not be
        committed: nothing of it was stored.
        """
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        done: asyncio.Future[FeedResult] = asyncio.get_running_loop().create_future()
        await self._queue.put((body, done))
        return await done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._writer.call(Engine.feed_many, [body for body, _ in batch])
            except Exception as e:  # the store failed: every webhook of the batch is retried
                for _, done in batch:
                    if not done.done():
                        done.set_exception(e)
            else:
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(result)
            for _ in batch:
                self._queue.task_done()

    async def stop(self) -> None:
        """Feed and answer every webhook already queued, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()


class Engines:
    """The writing engine behind its group commit, and the reading engine."""

    def __init__(self, writer: EngineThread, reader: EngineThread, max_batch: int) -> None:
        self._writer = writer
        self._reader = reader
        self._feeder = GroupCommit(writer, max_batch)

    async def feed(self, body: bytes) -> FeedResult:
        """Feed one webhook body; see :meth:`GroupCommit.feed`."""
        return await self._feeder.feed(body)

    async def read(
        self, fn: Callable[Concatenate[Engine, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """``fn(reading_engine, *args, **kwargs)`` on the reader's thread."""
        return await self._reader.call(fn, *args, **kwargs)

    async def close(self) -> None:
        """Answer the queued webhooks, then close both engines."""
        await self._feeder.stop()
        if self._reader is not self._writer:
            self._reader.close()
        self._writer.close()


@asynccontextmanager
async def open_engines(
    db: str, redelivery_window: float | None, max_batch: int
) -> AsyncIterator[Engines]:
    """The engines of database ``db``, open while the context lasts.

    An in-memory database (``memory://``, ``sqlite://``) exists in its own engine only:
    then reads go through the writing engine.
    """
    writer = EngineThread(Engine.open(db, redelivery_window=redelivery_window))
    shared = sqlite_path(db) == "" or urlsplit(db).scheme == "memory"
    reader = writer if shared else EngineThread(Engine.open(db))
    engines = Engines(writer, reader, max_batch)
    try:
        yield engines
    finally:
        await engines.close()
