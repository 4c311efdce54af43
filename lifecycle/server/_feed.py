"""The change feed over HTTP: what wakes the readers that wait for changes.

The table is the truth: a reader always asks the store for the changes after its
cursor. A :class:`Wakeup` only tells it when to ask again: when this server's writer
commits changes, when another receiver's do (PostgreSQL ``LISTEN``), and at the latest
every :data:`POLL` seconds (a change written by another process to a SQLite file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..stores.sqlite import sqlite_path

__all__ = ["POLL", "Wakeup", "listen"]

log = logging.getLogger("lifecycle.http")

POLL = 1.0
"""Seconds a waiting reader sleeps at most before it asks the store again."""

CHANNEL = "lifecycle_changes"
"""The PostgreSQL channel a store's commit of changes notifies."""


class Wakeup:
    """Wakes every reader waiting for changes at once.

    Take a :meth:`ticket` *before* asking the store, and :meth:`wait` on it after an
    empty answer: a change committed between the two has already set it, so no wake-up
    is lost.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, ticket: asyncio.Event, timeout: float) -> None:
        """Until ``ticket`` is set, or ``timeout`` seconds (at most :data:`POLL`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), min(timeout, POLL))


async def listen(db: str, wakeup: Wakeup) -> None:
    """Wake ``wakeup`` at each notification of another receiver's commit, for as long
    as it runs (a task, cancelled at shutdown); a PostgreSQL database only. A lost
    connection is opened again after a second, meanwhile readers poll."""
    if sqlite_path(db) is not None or db.startswith("memory:"):
        return
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                async for _ in conn.notifies():
                    wakeup.notify()
        except (psycopg.Error, OSError) as e:
            log.warning("listening for other receivers' changes failed: %s", e)
        await asyncio.sleep(1.0)
