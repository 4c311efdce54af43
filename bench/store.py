"""Durable stores (SQLite, PostgreSQL) against the least a log-plus-state design writes.

Usage: python bench/store.py [--events N] [--feed-events N] [--postgres URL]
                             [--profile VARIANT] [--streams scattered,clustered]

Two streams of webhook bodies (bytes as delivered), both from ``lifecycle._simulate``:

- scattered: ``--concurrent`` simulator streams (each of a few overlapping meetings)
  interleaved at random, as a busy account with hundreds of meetings at once sends
  them: a batch of 1,000 events touches about 700 distinct resources (measured and
  printed), so most of a batch's resources are loaded and written once;
- clustered: ``bench/engine.py``'s ``make_stream``, a few long meetings at a time whose
  resources see about ten events each: about 100 distinct resources a batch.

The floor is the least any durable design that keeps an event log and a current state
must write: ``executemany`` of the ``(seq, received_at, payload, outcome, lifecycle,
key)`` rows into a table with only its primary key, and an upsert of each touched
resource's ``(lifecycle, key, state)`` into a second table (primary key ``(lifecycle,
key)``), one transaction per batch, with the rows built before the clock starts (from
an in-memory engine's results). It runs with the store's own settings: for SQLite on a
connection set up by ``SqliteStore`` (WAL, ``synchronous=NORMAL``), ``BEGIN IMMEDIATE``
to ``COMMIT``; for PostgreSQL on the same server, on a connection made as the store
makes its own, in pipeline mode: ``BEGIN``, the rows and ``COMMIT`` sent before one
Sync, one round trip a transaction.

Variants, each beside its floor on fresh, empty tables:

- feed_many: ``Engine.open(url).feed_many`` of ``--batch`` (1,000) events a transaction,
  on ``--events`` events, beside the floor in ``--batch``-row transactions;
- feed, filled: then the next ``--filled-events`` events one transaction each, on the
  store (and the floor) just filled;
- feed: ``Engine.open(url).feed``, one transaction an event, on ``--feed-events``
  events of a fresh store, beside the floor in 1-row transactions.

Store and floor are fed the same chunk of the stream back to back (``--pair-events``
events for batches, 500 for one-by-one feeds), the order alternating, and the ratio
reported is the median of the pairs' ratios, so that it holds on a noisy machine. Every
store's outcomes are checked against the in-memory engine's.

With ``--postgres URL``, PostgreSQL runs in the database ``--pg-database`` (created
when missing; the store's and the floor's tables are dropped and recreated for each
variant), and the client-server round trips are counted by a proxy in this process
(see ``RoundTrips``: turns of the traffic, and waits the client cannot overlap): of
opening a store, of one ``feed``, of one ``feed_many`` of 1,000 events, and of the
floors.

``--profile VARIANT`` runs one store variant alone under cProfile, on the stream
``--profile-stream`` (scattered), and prints where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import platform
import pstats
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
from engine import make_stream  # bench/, the script's folder

from lifecycle import Engine, Outcome
from lifecycle._simulate import stream
from lifecycle.stores._sql import key_text, redact
from lifecycle.stores.postgres import DROP
from lifecycle.stores.sqlite import SqliteStore

TARGET_X_FLOOR = 5.0  # SQLite feed_many on the scattered stream, against its floor
ONE_BY_ONE_PAIR = 500  # events in a pair of one-transaction-an-event runs
WAIT_PROBE = 0.1  # seconds the proxy holds the server's answers, to count the waits

T = TypeVar("T")
Outcomes = list[Outcome]
LogRow = tuple[int, float, bytes, str, str | None, str | None]
StateRow = tuple[str, str, str]
Work = list[tuple[list[LogRow], list[StateRow]]]
"""What the floor writes for a chunk: each transaction's log rows and state upserts."""


# -- the streams -------------------------------------------------------------------------


def scattered_stream(events: int, concurrent: int, seed: int = 7) -> list[bytes]:
    """``events`` payloads of ``concurrent`` simulator streams interleaved at random.

    Each simulator stream runs a few overlapping meetings at a time; interleaving many
    spreads each resource's events far apart, as on an account with hundreds of
    meetings at once.
    """
    r = random.Random(seed)
    sources = [
        stream(10**9, seed=seed * 1_000 + i, duplicate=0.002) for i in range(concurrent)
    ]  # lazy: meetings are made as they are drawn
    return [orjson.dumps(next(sources[r.randrange(concurrent)])) for _ in range(events)]


@dataclass
class Stream:
    """A stream, what the in-memory engine made of it, and the floor's rows for it."""

    name: str
    payloads: list[bytes]
    expected: Outcomes
    log_rows: list[LogRow]
    state_rows: list[StateRow | None]  # the resource's state after each event, if any
    distinct: float  # distinct resources in a batch, on average

    @classmethod
    def of(cls, name: str, payloads: list[bytes], batch: int) -> Stream:
        reference = Engine()
        results = [reference.feed(p) for p in payloads]
        log_rows: list[LogRow] = []
        state_rows: list[StateRow | None] = []
        for r, p in zip(results, payloads, strict=True):
            key = key_text(r.key) if r.key is not None else None
            log_rows.append((r.seq, r.timestamp, p, r.outcome.value, r.lifecycle, key))
            state_rows.append(
                (r.lifecycle, key, r.after or "idle")
                if r.lifecycle is not None and key is not None
                else None
            )
        touched = [
            len({row[:2] for row in state_rows[i : i + batch] if row is not None})
            for i in range(0, len(payloads) - batch + 1, batch)
        ]
        return cls(
            name,
            payloads,
            [r.outcome for r in results],
            log_rows,
            state_rows,
            statistics.fmean(touched) if touched else 0.0,
        )

    def work(self, start: int, stop: int, batch: int) -> Work:
        """The floor's transactions for events ``start`` to ``stop``, ``batch`` a time."""
        out: Work = []
        for i in range(start, stop, batch):
            j = min(i + batch, stop)
            states = {row[:2]: row for row in self.state_rows[i:j] if row is not None}
            out.append((self.log_rows[i:j], list(states.values())))
        return out


# -- the floor ---------------------------------------------------------------------------

FLOOR_TABLES = (
    "CREATE TABLE floor_log (seq {bigint} PRIMARY KEY, received_at {real} NOT NULL, "
    "payload {blob} NOT NULL, outcome TEXT NOT NULL, lifecycle TEXT, resource_key TEXT)",
    "CREATE TABLE floor_state (lifecycle TEXT NOT NULL, resource_key TEXT NOT NULL, "
    "state TEXT NOT NULL, PRIMARY KEY (lifecycle, resource_key))",
)
FLOOR_LOG = (
    "INSERT INTO floor_log (seq, received_at, payload, outcome, lifecycle, resource_key) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
FLOOR_STATE = (
    "INSERT INTO floor_state (lifecycle, resource_key, state) VALUES (?, ?, ?) "
    "ON CONFLICT (lifecycle, resource_key) DO UPDATE SET state = excluded.state"
)


class Floor:
    """The log-plus-state floor on one connection, set up as the store's would be."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres
        types = (
            {"bigint": "BIGINT", "real": "DOUBLE PRECISION", "blob": "BYTEA"}
            if postgres
            else {"bigint": "INTEGER", "real": "REAL", "blob": "BLOB"}
        )
        if postgres:
            conn.execute("DROP TABLE IF EXISTS floor_log, floor_state")
        for sql in FLOOR_TABLES:
            conn.execute(sql.format(**types))
        self.log_sql, self.state_sql = FLOOR_LOG, FLOOR_STATE
        if postgres:
            self.log_sql, self.state_sql = (q.replace("?", "%s") for q in (FLOOR_LOG, FLOOR_STATE))

    def write(self, work: Work) -> None:
        """One transaction per item of ``work``."""
        conn, log_sql, state_sql = self.conn, self.log_sql, self.state_sql
        if self.postgres:
            for log, states in work:  # all sent before the one Sync: one round trip
                with conn.pipeline(), conn.cursor() as cur:
                    cur.execute("BEGIN")
                    cur.executemany(log_sql, log)
                    if states:
                        cur.executemany(state_sql, states)
                    cur.execute("COMMIT")
        else:
            for log, states in work:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(log_sql, log)
                conn.executemany(state_sql, states)
                conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


# -- where the stores live ---------------------------------------------------------------


class Target:
    """Fresh stores and floors of one kind: new SQLite files, or emptied PostgreSQL tables."""

    def __init__(self, name: str, folder: Path | None = None, url: str | None = None) -> None:
        self.name = name
        self.folder = folder
        self.url = url
        self._count = 0

    @property
    def postgres(self) -> bool:
        return self.url is not None

    def _drop(self, url: str) -> None:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for statement in DROP:
                conn.execute(statement)

    def engine(self, url: str | None = None) -> Engine:
        """An engine on a fresh, empty store (at ``url``, a proxy of the server, if given)."""
        self._count += 1
        if self.url is None:
            assert self.folder is not None
            return Engine.open(self.folder / f"store-{self._count}.db")
        self._drop(self.url)
        return Engine.open(url or self.url)

    def floor(self, url: str | None = None) -> Floor:
        """A floor on fresh tables, on a connection made as the store makes its own."""
        self._count += 1
        if self.url is None:
            assert self.folder is not None
            store = SqliteStore(self.folder / f"floor-{self._count}.db")
            return Floor(store._connection(), postgres=False)
        import psycopg

        conn = psycopg.connect(url or self.url, autocommit=True, connect_timeout=10)
        return Floor(conn, postgres=True)

    def settings(self) -> str:
        e = self.engine()
        try:
            conn: Any = e.store._connection()  # type: ignore[attr-defined]
            if self.url is None:
                journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
                sync = conn.execute("PRAGMA synchronous").fetchone()[0]
                names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
                return (
                    f"SQLite {sqlite3.sqlite_version}, journal_mode={journal}, "
                    f"synchronous={names.get(sync, sync)}, folder {self.folder}"
                )
            import psycopg

            version = conn.execute("SHOW server_version").fetchone()[0]
            fsync = conn.execute("SHOW fsync").fetchone()[0]
            commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
            return (
                f"PostgreSQL {version}, fsync={fsync}, synchronous_commit={commit}, "
                f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), {redact(self.url)}"
            )
        finally:
            e.close()


def bench_database(server: str, database: str) -> str:
    """The URL of ``database`` on the server of ``server``, created when missing."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if found is None:
            conn.execute(f'CREATE DATABASE "{database}"')
    parts = urlsplit(server)
    return urlunsplit(parts._replace(path=f"/{database}"))


# -- the store's side of a pair ----------------------------------------------------------


def feed(engine: Engine, payloads: Sequence[bytes], batch: int) -> Outcomes:
    """Feed ``payloads``: one at a time (``batch`` 1) or ``feed_many`` of ``batch``."""
    if batch == 1:
        one = engine.feed
        return [one(p).outcome for p in payloads]
    out: Outcomes = []
    for i in range(0, len(payloads), batch):
        out.extend(r.outcome for r in engine.feed_many(payloads[i : i + batch]))
    return out


def check(label: str, got: Outcomes, expected: Outcomes, offset: int) -> None:
    """The store classified the stream as the in-memory engine did."""
    if got != expected:
        wrong = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
        raise SystemExit(
            f"{label}: event {offset + wrong + 1} is {got[wrong]}, in memory {expected[wrong]}"
        )


@dataclass
class Measured:
    """A store variant and its floor, fed the same chunks in back-to-back pairs."""

    store: str  # "SQLite", "PostgreSQL"
    stream: str
    variant: str  # "feed_many", "feed", "feed, filled"
    batch: int  # events (and floor rows) a transaction
    events: int = 0
    floor_seconds: float = 0.0
    store_seconds: float = 0.0
    ratios: list[float] = field(default_factory=list)  # store / floor, pair by pair

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios or [float("nan")])

    @property
    def spread(self) -> str:
        """The middle half of the pairs' ratios."""
        ratios = self.ratios
        if len(ratios) < 4:
            return "-"
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return f"{q1:.1f}-{q3:.1f}"


def paired(
    floor: Floor,
    engine: Engine,
    s: Stream,
    start: int,
    stop: int,
    chunk: int,
    m: Measured,
) -> Measured:
    """Feed events ``start`` to ``stop`` to both, ``chunk`` events a pair; fill ``m``."""
    for k, i in enumerate(range(start, stop, chunk)):
        j = min(i + chunk, stop)
        work = s.work(i, j, m.batch)  # built before the clock starts
        payloads = s.payloads[i:j]
        got: Outcomes = []
        t_floor = t_store = 0.0
        for side in ("floor", "store") if k % 2 == 0 else ("store", "floor"):
            t = time.perf_counter()
            if side == "floor":
                floor.write(work)
                t_floor = time.perf_counter() - t
            else:
                got = feed(engine, payloads, m.batch)
                t_store = time.perf_counter() - t
        check(f"{m.store} {m.stream} {m.variant}", got, s.expected[i:j], i)
        m.ratios.append(t_store / t_floor)
        m.events += j - i
        m.floor_seconds += t_floor
        m.store_seconds += t_store
    return m


def measure(
    target: Target, s: Stream, events: int, filled: int, feed_n: int, batch: int, chunk: int
) -> Iterator[Measured]:
    """The rows of one kind of store on one stream; ``chunk`` events a pair of batches."""
    name = target.name
    gc.collect()
    floor, engine = target.floor(), target.engine()
    try:
        yield paired(floor, engine, s, 0, events, chunk, Measured(name, s.name, "feed_many", batch))
        if filled:
            later = Measured(name, s.name, "feed, filled", 1)
            yield paired(floor, engine, s, events, events + filled, ONE_BY_ONE_PAIR, later)
    finally:
        floor.close()
        engine.close()
    gc.collect()
    floor, engine = target.floor(), target.engine()
    try:
        yield paired(
            floor, engine, s, 0, feed_n, ONE_BY_ONE_PAIR, Measured(name, s.name, "feed", 1)
        )
    finally:
        floor.close()
        engine.close()


# -- PostgreSQL round trips --------------------------------------------------------------


class Trips(NamedTuple):
    """The round trips of one kind of call: the turns of each call, and the waits."""

    what: str
    turns: list[int]
    waits: float


class RoundTrips:
    """A TCP proxy to a PostgreSQL server that counts round trips through it.

    It counts two things. A turn is the traffic turning around on a connection: bytes
    from the client, then bytes from the server. Turns overcount a long pipeline: the
    server flushes its answers to the first statements (every 8 KiB) while the client
    still sends the rest, and the client reads them without waiting. A wait is what
    the client cannot overlap: with ``delay`` set, the proxy holds everything the server
    sends for that long, and the waits of a call are the time it gains over the same
    call without the delay, in delays. The proxy runs an asyncio loop in a thread of
    this process.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "localhost", parts.port or 5432)
        self.turns = 0
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"127.0.0.1:{port}"
        self.url = urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc}" if userinfo else netloc))

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _connection(
        self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter
    ) -> None:
        server, to_server = await asyncio.open_connection(*self._upstream)
        last = ["server"]  # who spoke last on this connection
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        clock = self._loop.time

        async def upstream() -> None:
            try:
                while data := await client.read(1 << 16):
                    last[0] = "client"
                    to_server.write(data)
                    await to_server.drain()
            except ConnectionError:
                pass
            finally:
                to_server.close()

        async def downstream() -> None:
            try:
                while data := await server.read(1 << 16):
                    if last[0] == "client":
                        self.turns += 1  # counted before the client can see the answer
                    last[0] = "server"
                    await held.put((clock() + self.delay, data))
            except ConnectionError:
                pass
            finally:
                await held.put((clock(), b""))

        async def forward() -> None:
            try:
                while (item := await held.get())[1]:
                    await asyncio.sleep(max(0.0, item[0] - clock()))
                    to_client.write(item[1])
                    await to_client.drain()
            except ConnectionError:
                pass
            finally:
                to_client.close()

        await asyncio.gather(upstream(), downstream(), forward())

    def counted(self, fn: Callable[..., T], *args: Any) -> tuple[int, float, T]:
        """The turns and the seconds ``fn(*args)`` takes, and what it returned."""
        before, t = self.turns, time.perf_counter()
        got = fn(*args)
        return self.turns - before, time.perf_counter() - t, got

    def calls(self, what: str, fn: Callable[[Any], object], items: Sequence[Any]) -> Trips:
        """``fn(item)`` for each of ``items``, every other one with the server's answers
        delayed: the turns of the others, and the median waits."""
        turns: list[int] = []
        plain: list[float] = []
        delayed: list[float] = []
        for i, item in enumerate(items):
            self.delay = WAIT_PROBE if i % 2 else 0.0
            n, t, _ = self.counted(fn, item)
            (delayed if i % 2 else plain).append(t)
            if not i % 2:
                turns.append(n)
        self.delay = 0.0
        waits = (statistics.median(delayed) - statistics.median(plain)) / WAIT_PROBE
        return Trips(what, turns, waits)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        """Stop listening and end the connections still relayed, before the loop stops."""
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def round_trips(target: Target, s: Stream, batch: int, calls: int = 20) -> list[Trips]:
    """Round trips of opening a store, ``feed``, ``feed_many`` and the floors."""
    assert target.url is not None
    proxy = RoundTrips(target.url)
    try:

        def open_new(_: object) -> None:
            target.engine(proxy.url).close()

        def reopen(_: object) -> None:
            Engine.open(proxy.url).close()

        out = [
            proxy.calls("open a new database (connect, create the schema)", open_new, [0, 0]),
            proxy.calls("open a database of this version (connect, check it)", reopen, [0, 0]),
        ]
        payloads = s.payloads
        n_many = max(1, min(calls, (len(payloads) - calls) // batch))  # a short stream: fewer
        ones = range(calls)
        manys = range(calls, calls + n_many * batch, batch)
        with target.engine(proxy.url) as e:
            out += [
                proxy.calls("`feed`, one event", e.feed, [payloads[i] for i in ones]),
                proxy.calls(
                    f"`feed_many`, {batch:,} events",
                    e.feed_many,
                    [payloads[i : i + batch] for i in manys],
                ),
            ]
        floor = target.floor(proxy.url)
        out += [
            proxy.calls(
                "floor, 1 row a transaction", floor.write, [s.work(i, i + 1, 1) for i in ones]
            ),
            proxy.calls(
                f"floor, {batch:,} rows a transaction",
                floor.write,
                [s.work(i, i + batch, batch) for i in manys],
            ),
        ]
        floor.close()
        return out
    finally:
        proxy.close()


# -- profile and report ------------------------------------------------------------------


def profile(target: Target, s: Stream, variant: str, n: int, batch: int, top: int) -> None:
    """Where one store variant's time goes, alone on a fresh store."""
    e = target.engine()
    prof = cProfile.Profile()
    prof.enable()
    got = feed(e, s.payloads[:n], batch if variant == "feed_many" else 1)
    prof.disable()
    e.close()
    check(f"{target.name} {s.name} {variant}", got, s.expected[:n], 0)
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def label(m: Measured) -> str:
    if m.variant == "feed_many":
        return f"`feed_many`, {m.batch:,} events a transaction"
    if m.variant == "feed":
        return "`feed`, one transaction an event"
    return "`feed`, one transaction an event, on the store `feed_many` filled"


def table(rows: Sequence[Measured]) -> list[str]:
    """The markdown table: each variant beside the floor it was paired with."""
    lines = [
        "| store | stream | variant | events | events/s | floor events/s "
        "| x floor (median of pairs) | middle half of pairs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        pairs = len(m.ratios)
        floor = (
            f"{m.events / m.floor_seconds:,.0f} ({m.batch:,} row{'s' if m.batch > 1 else ''}/tx)"
        )
        lines.append(
            f"| {m.store} | {m.stream} | {label(m)} | {m.events:,} | "
            f"{m.events / m.store_seconds:,.0f} | {floor} | {m.ratio:.1f} "
            f"({pairs} pair{'s' if pairs != 1 else ''}) | {m.spread} |"
        )
    return lines


def trips_table(trips: Sequence[Trips]) -> list[str]:
    lines = [
        "| PostgreSQL, through a counting proxy | turns | waits | calls (plain + delayed) |",
        "|---|---|---|---|",
    ]
    for what, turns, waits in trips:
        mean = statistics.fmean(turns)
        shown = f"{mean:.0f}" if mean == int(mean) else f"{mean:.1f}"
        if min(turns) != max(turns):
            shown += f" ({min(turns)}-{max(turns)})"
        lines.append(f"| {what} | {shown} | {waits:.1f} | {len(turns)} + {len(turns)} |")
    return lines


def verdicts(rows: Sequence[Measured]) -> list[str]:
    out = ["| target | measured | |", "|---|---|---|"]
    for m in rows:
        if m.store == "SQLite" and m.stream == "scattered" and m.variant == "feed_many":
            met = "met" if m.ratio <= TARGET_X_FLOOR else "**not met**"
            out.append(
                f"| SQLite `feed_many` on the scattered stream within {TARGET_X_FLOOR:g}x "
                f"of the log-plus-state floor | {m.ratio:.1f}x | {met} |"
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--events",
        type=int,
        default=200_000,
        help="events for feed_many, a stream (default 200,000)",
    )
    ap.add_argument(
        "--feed-events",
        type=int,
        default=10_000,
        help="events for feed, one transaction each, a stream (default 10,000)",
    )
    ap.add_argument(
        "--filled-events",
        type=int,
        default=5_000,
        help="events then fed one by one to the store feed_many filled (default 5,000)",
    )
    ap.add_argument("--batch", type=int, default=1_000, help="events a transaction")
    ap.add_argument(
        "--pair-events",
        type=int,
        default=10_000,
        help="events in a floor/store pair of feed_many (default 10,000)",
    )
    ap.add_argument(
        "--concurrent",
        type=int,
        default=60,
        help="simulator streams interleaved in the scattered stream (default 60: "
        "about 700 distinct resources a batch of 1,000)",
    )
    ap.add_argument(
        "--streams",
        default="scattered,clustered",
        help="which streams, comma-separated (default scattered,clustered)",
    )
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
        help="profile one store variant with cProfile instead of the table",
    )
    ap.add_argument(
        "--profile-stream",
        default="scattered",
        choices=["scattered", "clustered"],
        help="the stream --profile feeds (default scattered)",
    )
    ap.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    args = ap.parse_args()
    names = [n.strip() for n in args.streams.split(",") if n.strip()]
    if args.profile:
        names = [args.profile_stream]
    if unknown := set(names) - {"scattered", "clustered"}:
        raise SystemExit(f"unknown streams: {', '.join(sorted(unknown))}")
    feed_n = min(args.feed_events, args.events)
    total = args.events + args.filled_events

    started = time.perf_counter()
    streams = []
    for name in names:
        payloads = (
            scattered_stream(total, args.concurrent) if name == "scattered" else make_stream(total)
        )
        streams.append(Stream.of(name, payloads[:total], args.batch))

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        targets = [Target("SQLite", folder=Path(folder))]
        if args.postgres:
            url = bench_database(args.postgres, args.pg_database)
            targets.append(Target("PostgreSQL", url=url))
        if args.profile:
            kind, _, variant = args.profile.partition("-")
            chosen = [t for t in targets if t.postgres == (kind == "pg")]
            if not chosen:
                raise SystemExit("--profile pg-... needs --postgres URL")
            n = args.events if variant == "feed_many" else feed_n
            print(f"profile: {chosen[0].name} {variant}, {n:,} events of the {names[0]} stream")
            profile(chosen[0], streams[0], variant, n, args.batch, args.top)
            return

        print(f"Python {platform.python_version()}, {os.cpu_count()} cores")
        for s in streams:
            size = statistics.fmean(map(len, s.payloads))
            print(
                f"{s.name} stream: {len(s.payloads):,} events, {size:.0f} bytes each on "
                f"average, {s.distinct:.0f} distinct resources a batch of {args.batch:,} "
                "on average"
                + (f" ({args.concurrent} simulator streams)" if s.name == "scattered" else "")
            )
        for target in targets:
            print(f"{target.name}: {target.settings()}")
        if not args.postgres:
            print("PostgreSQL: skipped (no --postgres URL)")
        measured: list[Measured] = []
        for target in targets:
            for s in streams:
                for m in measure(
                    target, s, args.events, args.filled_events, feed_n, args.batch, args.pair_events
                ):
                    measured.append(m)
                    print(
                        f"  {m.store} {m.stream} {m.variant}: {m.events / m.store_seconds:,.0f}/s, "
                        f"{m.ratio:.1f}x floor",
                        flush=True,
                    )
        trips = round_trips(targets[-1], streams[0], args.batch) if args.postgres else []

    print()
    print("\n".join(table(measured)))
    if trips:
        print()
        print("\n".join(trips_table(trips)))
    print()
    print("\n".join(verdicts(measured)))
    print(f"\n(whole run: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
