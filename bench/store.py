"""Durable engines (SQLite, PostgreSQL) against a bare INSERT floor, on one stream.

Usage: python bench/store.py [--events N] [--feed-events N] [--postgres URL]
                             [--profile VARIANT]

The stream is ``bench/engine.py``'s ``make_stream`` (webhook bodies as bytes). Each
durable variant but one starts from a fresh, empty store made by ``Engine.open``:

- memory: ``Engine().feed(bytes)``, the in-memory engine;
- feed: ``Engine.open(url).feed(bytes)``, one transaction per event, on the first
  ``--feed-events`` events;
- feed_many: ``feed_many`` of ``--batch`` events at a time, one transaction per batch,
  on ``--events`` events;
- feed on the filled store: the next ``--filled-events`` events of the stream fed one
  by one to the store ``feed_many`` filled (a store that has seen some traffic);
- floor: the rows the engine would append to its ``events`` log (``_event_row`` of the
  results of an in-memory engine, built before the clock starts), inserted into a fresh
  store's ``events`` table by ``executemany`` in ``--batch``-row transactions, on the
  store's own connection: the write without reading, locking or classifying anything.
  "floor, 1 row/tx" does the same one row per transaction (what ``feed`` commits).

Every store's outcomes are checked against the in-memory engine's. The batch floor,
``feed_many`` and the in-memory engine are the best of ``--repeat`` runs (2), so that
their ratio holds on a noisy machine; the one-by-one variants are timed once.

SQLite runs in a temporary folder (``--dir``), with the defaults of ``Engine.open``:
WAL and ``synchronous=NORMAL``. PostgreSQL runs in the database ``--pg-database``
(created when missing) on the server of ``--postgres``; its tables are dropped and
recreated for each variant. Without ``--postgres`` PostgreSQL is skipped.

``--profile VARIANT`` runs one durable variant under cProfile instead, and prints where
its time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from engine import best, engine, make_stream  # bench/, the script's folder

from lifecycle import Engine, Outcome
from lifecycle._store import _EVENT_COLUMNS, StoredEngine, _event_row

INSERT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join(['?'] * 16)})"
PG_TABLES = "DROP TABLE IF EXISTS events, resources, lifecycle_meta"
PG_SEQUENCE = "DROP SEQUENCE IF EXISTS lifecycle_events_seq"
TARGET_SQLITE_MANY = 50_000
TARGET_SQLITE_FEED = 3_000
TARGET_X_FLOOR = 3.0

T = TypeVar("T")


class Store:
    """Fresh stores of one kind: a new SQLite file or emptied PostgreSQL tables each."""

    def __init__(self, name: str, folder: Path | None = None, url: str | None = None) -> None:
        self.name = name
        self._folder = folder
        self._url = url
        self._count = 0

    def fresh(self) -> StoredEngine:
        self._count += 1
        if self._url is None:
            assert self._folder is not None
            opened = Engine.open(self._folder / f"bench-{self._count}.db")
        else:
            import psycopg

            with psycopg.connect(self._url, autocommit=True) as conn:
                conn.execute(PG_TABLES)
                conn.execute(PG_SEQUENCE)
            opened = Engine.open(self._url)
        assert isinstance(opened, StoredEngine)
        return opened

    def settings(self) -> str:
        e = self.fresh()
        try:
            conn: Any = e._connection()
            if self._url is None:
                journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
                sync = conn.execute("PRAGMA synchronous").fetchone()[0]
                names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
                return (
                    f"SQLite {sqlite3.sqlite_version}, journal_mode={journal}, "
                    f"synchronous={names.get(sync, sync)}, folder {self._folder}"
                )
            version = conn.execute("SHOW server_version").fetchone()[0]
            fsync = conn.execute("SHOW fsync").fetchone()[0]
            commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
            return (
                f"PostgreSQL {version}, fsync={fsync}, synchronous_commit={commit}, "
                f"{_redact(self._url)}"
            )
        finally:
            e.close()


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def bench_database(server: str, database: str) -> str:
    """The URL of ``database`` on the server of ``server``, created when missing."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if found is None:
            conn.execute(f'CREATE DATABASE "{database}"')
    parts = urlsplit(server)
    return urlunsplit(parts._replace(path=f"/{database}"))


# -- the timed variants ---------------------------------------------------------------

Outcomes = list[Outcome]


def feed(store: StoredEngine, payloads: Sequence[bytes]) -> Outcomes:
    one = store.feed
    return [one(p).outcome for p in payloads]


def feed_many(store: StoredEngine, payloads: Sequence[bytes], batch: int) -> Outcomes:
    out: Outcomes = []
    for i in range(0, len(payloads), batch):
        out.extend(r.outcome for r in store.feed_many(payloads[i : i + batch]))
    return out


def insert(store: StoredEngine, rows: Sequence[tuple[Any, ...]], batch: int) -> None:
    """Append ``rows`` to the store's log, ``batch`` rows a transaction, on its connection."""
    conn: Any = store._connection()
    if isinstance(conn, sqlite3.Connection):
        for i in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, rows[i : i + batch])
            conn.execute("COMMIT")
    else:
        sql = INSERT.replace("?", "%s")
        for i in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows[i : i + batch])


def timed(fn: Callable[..., T], *args: Any) -> tuple[float, T]:
    """Seconds taken by ``fn(*args)``, and what it returned."""
    t = time.perf_counter()
    got = fn(*args)
    return time.perf_counter() - t, got


@dataclass(frozen=True)
class Row:
    store: str  # "memory", "SQLite", "PostgreSQL"
    variant: str
    events: int
    seconds: float
    floor: str = ""  # the floor row it is compared with, or "" (a floor or memory)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


BATCH_FLOOR = "floor: INSERT, batches"
ROW_FLOOR = "floor: INSERT, 1 row/tx"
FILLED = "feed, filled"


def measure(
    store: Store,
    payloads: Sequence[bytes],
    events: int,
    feed_n: int,
    batch: int,
    rows: Sequence[tuple[Any, ...]],
    expected: Outcomes,
    repeat: int,
) -> list[Row]:
    """The durable rows of one kind of store, each but one on a fresh store.

    ``payloads`` holds ``events`` events, then those fed one by one to the store that
    ``feed_many`` filled. The batch floor and ``feed_many`` are the best of ``repeat``
    runs, each on a fresh store.
    """
    out: list[Row] = []
    times = []
    for _ in range(repeat):
        e = store.fresh()
        times.append(timed(insert, e, rows, batch)[0])
        e.close()
    out.append(Row(store.name, BATCH_FLOOR, events, min(times)))

    e = store.fresh()
    out.append(Row(store.name, ROW_FLOOR, feed_n, timed(insert, e, rows[:feed_n], 1)[0]))
    e.close()

    times = []
    for _ in range(repeat):
        e = store.fresh()
        t, got = timed(feed_many, e, payloads[:events], batch)
        check(store.name, "feed_many", got, expected[:events])
        times.append(t)
        e.close()
    out.append(Row(store.name, "feed_many", events, min(times), BATCH_FLOOR))
    later = payloads[events:]
    if later:
        t, got = timed(feed, e, later)  # the last store feed_many filled, reopened
        check(store.name, "feed on the filled store", got, expected[events:])
        out.append(Row(store.name, FILLED, len(later), t, ROW_FLOOR))
        e.close()

    e = store.fresh()
    t, got = timed(feed, e, payloads[:feed_n])
    check(store.name, "feed", got, expected[:feed_n])
    out.append(Row(store.name, "feed", feed_n, t, ROW_FLOOR))
    e.close()
    return out


def check(name: str, variant: str, got: Outcomes, expected: Outcomes) -> None:
    """The store classified the stream as the in-memory engine did."""
    if got != expected:
        wrong = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
        raise SystemExit(
            f"{name} {variant}: event {wrong + 1} is {got[wrong]}, in memory {expected[wrong]}"
        )


def profile(store: Store, variant: str, payloads: Sequence[bytes], batch: int, top: int) -> None:
    e = store.fresh()
    prof = cProfile.Profile()
    prof.enable()
    if variant.endswith("feed_many"):
        feed_many(e, payloads, batch)
    else:
        feed(e, payloads)
    prof.disable()
    e.close()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


# -- the report -----------------------------------------------------------------------


def label(row: Row, batch: int) -> str:
    if row.variant == BATCH_FLOOR:
        return f"{row.store} floor: bare `INSERT`, {batch:,} rows a transaction"
    if row.variant == ROW_FLOOR:
        return f"{row.store} floor: bare `INSERT`, one row a transaction"
    if row.variant == "feed_many":
        return f"{row.store} `feed_many`, {batch:,} events a transaction"
    if row.variant == "feed":
        return f"{row.store} `feed`, one transaction an event"
    if row.variant == FILLED:
        return f"{row.store} `feed`, on the store `feed_many` filled"
    return f"{row.store} {row.variant}"


def table(rows: Sequence[Row], batch: int) -> list[str]:
    """The markdown table; "x floor" is against the batch floor of the same store."""
    floors = {(r.store, r.variant): r.rate for r in rows if r.variant in (BATCH_FLOOR, ROW_FLOOR)}
    lines = [
        "| variant | events | events/s | x floor | x floor of 1 row/tx |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        x_batch = x_row = "-"
        if (r.store, BATCH_FLOOR) in floors:
            x_batch = f"{floors[(r.store, BATCH_FLOOR)] / r.rate:.1f}"
        if r.floor == ROW_FLOOR or r.variant == ROW_FLOOR:
            x_row = f"{floors[(r.store, ROW_FLOOR)] / r.rate:.1f}"
        lines.append(f"| {label(r, batch)} | {r.events:,} | {r.rate:,.0f} | {x_batch} | {x_row} |")
    return lines


def verdicts(rows: Sequence[Row]) -> list[str]:
    rate = {(r.store, r.variant): r.rate for r in rows}
    out = ["| target | measured | |", "|---|---|---|"]

    def line(what: str, value: str, met: bool | None) -> None:
        verdict = "reported" if met is None else ("met" if met else "**not met**")
        out.append(f"| {what} | {value} | {verdict} |")

    for store in ("SQLite", "PostgreSQL"):
        if (store, "feed") not in rate:
            continue
        many, one = rate[(store, "feed_many")], rate[(store, "feed")]
        x = rate[(store, BATCH_FLOOR)] / many
        sqlite = store == "SQLite"
        line(
            f"{store} `feed_many` >= {TARGET_SQLITE_MANY:,} events/s",
            f"{many:,.0f}",
            many >= TARGET_SQLITE_MANY if sqlite else None,
        )
        line(
            f"{store} `feed_many` within {TARGET_X_FLOOR:g}x of the bare insert floor",
            f"{x:.1f}x",
            x <= TARGET_X_FLOOR if sqlite else None,
        )
        line(
            f"{store} `feed` >= {TARGET_SQLITE_FEED:,} events/s",
            f"{one:,.0f}",
            one >= TARGET_SQLITE_FEED if sqlite else None,
        )
        filled = rate.get((store, FILLED))
        if filled is not None:
            line(
                f"{store} `feed` >= {TARGET_SQLITE_FEED:,} events/s, on the filled store",
                f"{filled:,.0f}",
                filled >= TARGET_SQLITE_FEED if sqlite else None,
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--events",
        type=int,
        default=200_000,
        help="events for memory, feed_many and the floor (default 200,000)",
    )
    ap.add_argument(
        "--feed-events",
        type=int,
        default=20_000,
        help="events for feed, one transaction each (default 20,000)",
    )
    ap.add_argument(
        "--filled-events",
        type=int,
        default=5_000,
        help="events then fed one by one to the store feed_many filled",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs of the batch floor and feed_many, the best kept (default 2)",
    )
    ap.add_argument("--batch", type=int, default=1_000, help="events a transaction")
    ap.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="a PostgreSQL server, e.g. postgresql://postgres@127.0.0.1/postgres",
    )
    ap.add_argument(
        "--pg-database",
        default="lifecycle_bench",
        help="the database used (created, its tables dropped) on that server",
    )
    ap.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the SQLite files go (default: a new temporary folder)",
    )
    ap.add_argument(
        "--profile",
        default=None,
        choices=["sqlite-feed", "sqlite-feed_many", "pg-feed", "pg-feed_many"],
        help="profile one variant with cProfile instead of the table",
    )
    ap.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    args = ap.parse_args()
    feed_n = min(args.feed_events, args.events)

    started = time.perf_counter()
    payloads = make_stream(args.events + args.filled_events)
    size = sum(map(len, payloads)) / len(payloads)
    reference = Engine()
    results = [reference.feed(p) for p in payloads]
    expected = [r.outcome for r in results]
    rows = [_event_row(r) for r in results[: args.events]]
    del results, reference

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        stores = [Store("SQLite", folder=Path(folder))]
        if args.postgres:
            stores.append(Store("PostgreSQL", url=bench_database(args.postgres, args.pg_database)))
        if args.profile:
            kind, _, variant = args.profile.partition("-")
            chosen = [s for s in stores if s.name == {"pg": "PostgreSQL"}.get(kind, "SQLite")]
            if not chosen:
                raise SystemExit("--profile pg-... needs --postgres URL")
            n = args.events if variant == "feed_many" else feed_n
            profile(chosen[0], variant, payloads[:n], args.batch, args.top)
            return

        print(
            f"stream: {args.events:,} + {args.filled_events:,} events, {size:.0f} bytes "
            "each on average; "
            f"Python {platform.python_version()}, {os.cpu_count()} cores"
        )
        for store in stores:
            print(f"{store.name}: {store.settings()}")
        if not args.postgres:
            print("PostgreSQL: skipped (no --postgres URL)")
        first = payloads[: args.events]
        t_memory, _ = best(engine, first, max(args.repeat, 1))
        measured = [Row("memory", "`Engine().feed(bytes)`", len(first), t_memory)]
        for store in stores:
            measured += measure(
                store, payloads, args.events, feed_n, args.batch, rows, expected, args.repeat
            )
    print()
    print("\n".join(table(measured, args.batch)))
    print()
    print("\n".join(verdicts(measured)))
    print(f"\n(whole run: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
