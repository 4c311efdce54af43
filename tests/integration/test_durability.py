"""Durability: kill -9, concurrent feeders, lost connections and SQLite readers.

Child processes run ``tests/integration/_feeder.py``. Each PostgreSQL test gets a database of its
own on the test server (created and dropped here), so these tests neither see nor
disturb other tests running at the same time on the same server.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from lifecycle import Engine, FeedResult, ResourceStatus, StoreUnavailable
from lifecycle import Engine as StoredEngine
from lifecycle._simulate import stream

import _feeder
from support import ROOT, postgres_or_skip

FEEDER = Path(__file__).resolve().with_name("_feeder.py")
STARTUP_TIMEOUT = 60.0


# -- helpers --------------------------------------------------------------------------


def events_of(
    meetings: int, seed: int, *, shuffle: float = 0.0, duplicate: float = 0.0
) -> list[bytes]:
    """A simulated stream as the JSON bytes a receiver gets."""
    return [orjson.dumps(p) for p in stream(meetings, seed, shuffle=shuffle, duplicate=duplicate)]


def open_store(url: str) -> StoredEngine:
    """``Engine.open(url)``, typed as the stored engine it is (it has ``log()``)."""
    engine = Engine.open(url)
    assert isinstance(engine, StoredEngine)
    return engine


@contextmanager
def private_database(tag: str) -> Iterator[str]:
    """The URL of a fresh database on the test server, dropped afterwards."""
    import psycopg
    from psycopg import sql

    base = postgres_or_skip()
    name = f"lifecycle_durability_{tag}_{os.getpid()}_{secrets.token_hex(4)}"
    url = urlunsplit(urlsplit(base)._replace(path="/" + name))
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of this test alone."""
    with private_database("t") as url:
        yield url


def start_child(directory: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    """Start ``_feeder.py args`` with stdout and stderr going to ``directory/name.out|err``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    with (
        (directory / f"{name}.out").open("wb") as out,
        (directory / f"{name}.err").open("wb") as err,
    ):
        return subprocess.Popen(
            [sys.executable, str(FEEDER), *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )


def kill_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGKILL those of these children still running, and reap them."""
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


Spawn = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start ``_feeder.py`` children in ``tmp_path``; killed at the end if still alive."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        started.append(start_child(tmp_path, name, *args))
        return started[-1]

    yield start
    kill_all(started)


def lines_of(path: Path) -> list[str]:
    """The complete lines a child wrote (a line cut by a kill is not one)."""
    text = path.read_bytes().decode() if path.exists() else ""
    return text.split("\n")[:-1]


def wait_for(path: Path, prefix: str, proc: subprocess.Popen[bytes]) -> str:
    """The first line of a child's output starting with ``prefix`` (waits for it)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        exited = proc.poll() is not None
        for line in lines_of(path):
            if line.startswith(prefix):
                return line
        if exited or time.monotonic() > deadline:
            err = path.with_suffix(".err").read_text(errors="replace")
            pytest.fail(f"{path.stem}: no {prefix!r} line (exit {proc.returncode}):\n{err}")
        time.sleep(0.005)


def finish(proc: subprocess.Popen[bytes], out: Path) -> list[str]:
    """Wait for a child that should succeed; its output lines."""
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    err = out.with_suffix(".err").read_text(errors="replace")
    assert (0, "") == (proc.returncode, err), out.stem
    return lines_of(out)


Report = tuple[tuple[int, ...], tuple[int, ...], str]
"""What a child said it fed: stream positions, their sequence numbers, a digest."""


def reports(lines: Sequence[str]) -> list[Report]:
    """The ``e`` (one event) and ``b`` (one batch) lines of a feeder."""
    out: list[Report] = []
    for line in lines:
        kind, *fields = line.split()
        if kind == "e":
            pos, seq, dig = fields
            out.append(((int(pos),), (int(seq),), dig))
        elif kind == "b":
            start, end, seqs, dig = fields
            out.append(
                (tuple(range(int(start), int(end))), tuple(int(s) for s in seqs.split(",")), dig)
            )
    return out


def unreported(
    reported: Sequence[Report], logged: Sequence[FeedResult], events: Sequence[bytes]
) -> list[Report]:
    """The reports the log does not bear out: their events at those seqs with those bytes."""
    by_seq = {r.seq: r.payload for r in logged}
    wrong = []
    for positions, seqs, dig in reported:
        found = [by_seq.get(s) for s in seqs]
        payloads = [p for p in found if isinstance(p, bytes)]
        if (
            len(payloads) != len(seqs)
            or [events[i] for i in positions] != payloads
            or dig
            != (_feeder.digest(payloads[0]) if len(seqs) == 1 else _feeder.batch_digest(payloads))
        ):
            wrong.append((positions, seqs, dig))
    return wrong


def payloads_of(logged: Sequence[FeedResult]) -> list[bytes]:
    """The logged payloads (fed as bytes, so given back as bytes)."""
    out = [r.payload for r in logged]
    assert all(isinstance(p, bytes) for p in out)
    return [p for p in out if isinstance(p, bytes)]


def classification(r: FeedResult, *, warnings: bool = True) -> tuple[Any, ...]:
    """What a result says about its event, without its sequence number."""
    return (
        r.outcome,
        r.lifecycle,
        r.key,
        r.webhook_type,
        r.before,
        r.after,
        r.missing,
        r.warnings if warnings else None,
        r.reason,
    )


def status_row(s: ResourceStatus, seqs: Mapping[int, int]) -> tuple[Any, ...]:
    """A resource's whole status, history seqs translated through ``seqs``."""
    history = tuple(
        (seqs.get(h.seq, h.seq), h.webhook_type, h.outcome, h.received_at) for h in s.history
    )
    return (s.lifecycle, s.key, s.state, s.entered_at, dict(s.data), history)


def replay(logged: Sequence[FeedResult]) -> tuple[Engine, list[FeedResult]]:
    """An in-memory engine fed the logged payloads in log order, at their logged times."""
    now = 0.0

    def clock() -> float:
        return now

    memory = Engine(clock=clock)
    results = []
    for r in logged:
        now = r.timestamp
        results.append(memory.feed(r.payload))
    return memory, results


def assert_replays(engine: Engine, logged: Sequence[FeedResult]) -> None:
    """The stored resources are those of an in-memory engine fed the log in seq order."""
    memory, _ = replay(logged)
    seqs = {i: r.seq for i, r in enumerate(logged, 1)}
    stored = engine.resources()
    assert {(s.lifecycle, s.key, s.state) for s in memory.resources()} == {
        (s.lifecycle, s.key, s.state) for s in stored
    }
    assert [status_row(s, seqs) for s in memory.resources()] == [status_row(s, {}) for s in stored]


# -- 1. kill -9 at random moments -----------------------------------------------------

CRASH_MEETINGS = {"sqlite": 200, "postgresql": 120}
"""Meetings of each store's stream (about 27 events each): SQLite feeds the faster."""
KILLS = 4
DELAYS = (0.2, 1.5)
"""Kill delays after the feeder is ready, in seconds, shortened when the feeder is so fast
that it would reach the end of the stream before the last kill."""


def kill_delay(rng: random.Random, rates: Sequence[float], left: int, rounds: int) -> float:
    """A random delay that leaves events for the later rounds at the fastest rate seen."""
    low, high = DELAYS
    high = min(high, 0.7 * left / rounds / max(rates, default=10_000.0))
    return rng.uniform(min(low, high / 4), high)


def check_after_crash(
    url: str, events: Sequence[bytes], reported: Sequence[Report], note: str
) -> int:
    """Reported events are logged, the log is a whole-unit prefix, the state is the log's."""
    units = _feeder.plan(len(events))
    with closing(open_store(url)) as engine:
        logged = engine.log()
        payloads = payloads_of(logged)
        n = len(payloads)
        assert (
            [] == [i for i, (a, b) in enumerate(zip(events, payloads, strict=False)) if a != b][:5]
        ), f"{note}: the log is not the stream's prefix"
        assert [] == [(s, e) for s, e in units if s < n < e], f"{note}: a partial batch"
        assert [] == unreported(reported, logged, events), f"{note}: reported, not logged"
        assert [] == engine.rebuild(), f"{note}: stored state differs from the log's replay"
    return n


@pytest.mark.parametrize("kind", list(CRASH_MEETINGS))
def test_kill_9_loses_no_returned_feed_and_leaves_the_store_consistent(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, spawn: Spawn
) -> None:
    """A feeder killed with SIGKILL at random moments loses nothing it reported, no half batch."""
    url = (
        f"sqlite:///{tmp_path / 'crash.db'}"
        if kind == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    events = events_of(CRASH_MEETINGS[kind], 11, shuffle=0.05, duplicate=0.02)
    events_file = tmp_path / "events.jsonl"
    _feeder.write_events(events_file, events)
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    reported: list[Report] = []
    kills, progress, rates = 0, [0], list[float]()
    for round_ in range(KILLS + 1):
        note = f"{kind} round {round_} (seed {seed})"
        name = f"round{round_}"
        proc = spawn(name, url, "feed", str(events_file), "--resume")
        if round_ == 0:  # while it starts: importing, opening, creating the tables
            delay = rng.uniform(0.05, 0.3)
        else:
            wait_for(tmp_path / f"{name}.out", "ready", proc)
            delay = kill_delay(rng, rates, len(events) - progress[-1], KILLS + 1 - round_)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lines = lines_of(tmp_path / f"{name}.out")
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert (0, "done") == (proc.returncode, lines[-1]), note
        reported += reports(lines)
        progress.append(check_after_crash(url, events, reported, note))
        if round_ > 0:  # events a second, from the feeder's first
            rates.append((progress[-1] - progress[-2]) / delay)
        if proc.returncode == 0:
            break
    assert kills >= KILLS, f"kills that hit a running feeder (seed {seed})"
    assert progress == sorted(progress)
    assert 0 < progress[-1] < len(events), "the kills should land mid-stream"
    assert len(reported) > 100

    with closing(open_store(url)) as engine:  # finish the stream here
        start = len(engine.log())
        for s, e in _feeder.plan(len(events)):
            if s >= start and e - s == 1:
                engine.feed(events[s])
            elif s >= start:
                engine.feed_many(events[s:e])
        logged = engine.log()
        assert len(events) == len(logged)
        assert events == payloads_of(logged)
        assert [] == engine.rebuild()
        assert_replays(engine, logged)
        _, results = replay(logged)
        assert [classification(r) for r in results] == [classification(r) for r in logged]


# -- 2. concurrent feeders on PostgreSQL ----------------------------------------------

FEEDERS = 4


@dataclass(frozen=True)
class ConcurrentRun:
    """Four processes fed one shuffled stream, round robin, into one database at once."""

    url: str
    events: list[bytes]
    parts: list[list[Report]]
    """What each feeder reported, in its order."""


@pytest.fixture(scope="module")
def concurrent_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConcurrentRun]:
    """The store after :data:`FEEDERS` processes fed one stream at the same time."""
    tmp = tmp_path_factory.mktemp("concurrent")
    events = events_of(120, 23, shuffle=0.1, duplicate=0.02)
    events_file = tmp / "events.jsonl"
    _feeder.write_events(events_file, events)
    gate = tmp / "go"
    with private_database("c") as url:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for k in range(FEEDERS):
                procs.append(
                    start_child(
                        tmp,
                        f"feeder{k}",
                        url,
                        "feed",
                        str(events_file),
                        "--part",
                        f"{k}/{FEEDERS}",
                        "--gate",
                        str(gate),
                    )
                )
            for k, proc in enumerate(procs):
                wait_for(tmp / f"feeder{k}.out", "ready", proc)
            gate.touch()  # all at once
            parts = []
            for k, proc in enumerate(procs):
                lines = finish(proc, tmp / f"feeder{k}.out")
                assert "done" == lines[-1]
                parts.append(reports(lines))
        finally:
            kill_all(procs)
        yield ConcurrentRun(url, events, parts)


def test_concurrent_feeders_log_each_event_once_and_keep_every_resource_consistent(
    concurrent_run: ConcurrentRun,
) -> None:
    """Four processes feeding one stream at once: each event logged once, states = replay."""
    run = concurrent_run
    with closing(open_store(run.url)) as engine:
        logged = engine.log()
        seqs = [r.seq for r in logged]
        assert Counter(run.events) == Counter(payloads_of(logged))
        assert len(seqs) == len(set(seqs))
        assert sorted(seqs) == seqs
        for k, part in enumerate(run.parts):  # what each feeder said it fed, in its order
            mine = run.events[k::FEEDERS]
            assert [] == unreported(part, logged, mine)
            fed = [s for _, batch, _ in part for s in batch]
            assert len(mine) == len(fed)
            assert sorted(fed) == fed  # one process's events are logged in its feed order
        assert [] == engine.rebuild()
        assert_replays(engine, logged)


def test_concurrent_feeders_log_the_outcomes_of_the_log_order(
    concurrent_run: ConcurrentRun,
) -> None:
    """Each logged outcome, before/after and warning is what replaying the log gives."""
    with closing(open_store(concurrent_run.url)) as engine:
        logged = engine.log()
    _, results = replay(logged)
    assert [(r.seq, *classification(again)) for r, again in zip(logged, results, strict=True)] == [
        (r.seq, *classification(r)) for r in logged
    ]


MEETING = {"meetingId": "m", "sessionId": "s"}
SESSION_STARTED = orjson.dumps(
    {"webhookType": "session-started", "data": {**MEETING, "start": "2026-01-01T00:00:00.000Z"}}
)
SESSION_ENDED = orjson.dumps(
    {
        "webhookType": "session-ended",
        "data": {**MEETING, "start": "2026-01-01T00:00:00.000Z", "end": "2026-01-01T01:00:00.000Z"},
    }
)
RECORDING_STARTING = orjson.dumps({"webhookType": "recording-starting", "data": MEETING})


def waiting_for_locks(url: str) -> int:
    """How many backends of the database of ``url`` wait for a lock."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
            "current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_start_event_after_a_concurrent_session_end_is_logged_with_its_warning(
    pg_url: str,
) -> None:
    """session-ended (lower seq) and a start event fed at once: the log's warning = replay's."""
    import psycopg

    ender, starter = open_store(pg_url), open_store(pg_url)
    failures: list[BaseException] = []

    def feed(engine: Engine, payload: bytes) -> threading.Thread:
        def run() -> None:
            try:
                engine.feed(payload)
            except BaseException as e:  # handed to the test thread
                failures.append(e)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def until_waiting(n: int) -> None:
        deadline = time.monotonic() + 30
        while waiting_for_locks(pg_url) < n:
            assert time.monotonic() < deadline, f"never {n} feeds waiting"
            time.sleep(0.01)

    try:
        ender.feed(SESSION_STARTED)
        # both feeds take their seq, then wait to append to the log: the session end first
        with psycopg.connect(pg_url) as holder:
            holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            threads = [feed(ender, SESSION_ENDED)]
            until_waiting(1)
            threads.append(feed(starter, RECORDING_STARTING))
            until_waiting(2)
            holder.rollback()
        for thread in threads:
            thread.join(30)
        assert [] == failures
        logged = starter.log()
        assert [SESSION_STARTED, SESSION_ENDED, RECORDING_STARTING] == payloads_of(logged)
        _, results = replay(logged)
        assert [classification(r) for r in results] == [classification(r) for r in logged]
    finally:
        ender.close()
        starter.close()


# -- 3. a lost connection ------------------------------------------------------------


def terminate_backends(url: str, where: str = "true") -> int:
    """Terminate the other connections to the database of ``url``; how many."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE "
            f"pid <> pg_backend_pid() AND datname = current_database() AND {where}"
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def logged_payloads(url: str) -> list[bytes]:
    """The log's payloads, read by an engine of its own."""
    with closing(open_store(url)) as reader:
        return payloads_of(reader.log())


def test_lost_connection_raises_store_unavailable_and_the_retry_is_logged_once(pg_url: str) -> None:
    """After its backend is terminated a feed raises StoreUnavailable; feeding again works once."""
    first, second, *batch = events_of(1, 5)[:8]
    engine = open_store(pg_url)
    try:
        engine.feed(first)
        assert 1 == terminate_backends(pg_url)
        with pytest.raises(StoreUnavailable) as lost:
            engine.feed(second)
        message = str(lost.value)
        assert message.startswith(pg_url)
        assert "connection" in message.lower()
        assert [first] == logged_payloads(pg_url)
        engine.feed(second)  # reconnects
        assert [first, second] == logged_payloads(pg_url)

        assert 1 == terminate_backends(pg_url)
        with pytest.raises(StoreUnavailable):
            engine.feed_many(batch)
        assert [first, second] == logged_payloads(pg_url)
        assert len(batch) == len(engine.feed_many(batch))
        assert [first, second, *batch] == logged_payloads(pg_url)

        assert 1 == terminate_backends(pg_url)
        with pytest.raises(StoreUnavailable):
            engine.resources()
        assert 1 <= len(engine.resources())
        assert [] == engine.rebuild()
    finally:
        engine.close()


def test_connection_lost_inside_a_transaction_writes_nothing(pg_url: str) -> None:
    """A feed whose backend dies while it waits inside its transaction leaves no trace."""
    import psycopg

    first, second = events_of(1, 6)[:2]
    engine = open_store(pg_url)
    failures: list[BaseException] = []

    def feed() -> None:
        try:
            engine.feed(second)
        except BaseException as e:  # handed to the test thread
            failures.append(e)

    try:
        engine.feed(first)
        with psycopg.connect(pg_url) as holder:  # a transaction that blocks the feed
            holder.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
            feeder = threading.Thread(target=feed)
            feeder.start()
            deadline = time.monotonic() + 30
            while 0 == terminate_backends(pg_url, "wait_event_type = 'Lock'"):
                assert time.monotonic() < deadline, "the feed never waited for the lock"
                time.sleep(0.01)
            feeder.join(30)
            holder.rollback()
        assert [StoreUnavailable] == [type(e) for e in failures]
        assert [first] == logged_payloads(pg_url)
        engine.feed(second)
        assert [first, second] == logged_payloads(pg_url)
        assert [] == engine.rebuild()
    finally:
        engine.close()


def test_open_an_unreachable_server_raises_store_unavailable_naming_it() -> None:
    """Engine.open on a closed port raises StoreUnavailable with the URL (password hidden)."""
    url = "postgresql://postgres@127.0.0.1:1/none"
    with pytest.raises(StoreUnavailable, match=re.escape(url)):
        Engine.open(url)
    with pytest.raises(StoreUnavailable) as secret:
        Engine.open("postgresql://postgres:s3cr3t@127.0.0.1:1/none")
    assert "postgresql://postgres:***@127.0.0.1:1/none" in str(secret.value)
    assert "s3cr3t" not in str(secret.value)


# -- sequence numbers ---------------------------------------------------------------

RECORDING = [
    orjson.dumps({"webhookType": w, "data": MEETING})
    for w in ("recording-starting", "recording-started", "recording-stopped")
]


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        "postgresql",
    ],
)
def test_sequence_numbers_are_not_reused_after_prune(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """After prune() drops the newest log rows, the next event still gets a new, higher seq."""
    url = (
        f"sqlite:///{tmp_path / 'prune.db'}"
        if kind == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    with closing(open_store(url)) as engine:
        seen = [engine.feed(p).seq for p in RECORDING]
        assert len(RECORDING) == engine.prune(time.time() + 60)
        after = engine.feed(orjson.dumps({"webhookType": "hls-starting", "data": MEETING}))
        assert [after.seq] == [r.seq for r in engine.log(after=max(seen))]
        assert after.seq == engine.events_fed


# -- 4. SQLite: one writer, several readers --------------------------------------------


def test_sqlite_readers_alongside_a_writer_see_no_errors(tmp_path: Path, spawn: Spawn) -> None:
    """Two reader processes query while a writer feeds (WAL): no errors, a consistent store."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    events = events_of(300, 31, shuffle=0.05, duplicate=0.02)
    events_file = tmp_path / "events.jsonl"
    _feeder.write_events(events_file, events)
    gate = str(tmp_path / "go")
    seconds = "2.0"
    writer = spawn("writer", url, "feed", str(events_file), "--seconds", seconds, "--gate", gate)
    wait_for(tmp_path / "writer.out", "ready", writer)  # the writer created the tables
    readers = [
        spawn("reader0", url, "read", seconds, "--reopen", "--gate", gate),
        spawn("reader1", url, "read", seconds, "--gate", gate),
    ]
    for i, reader in enumerate(readers):
        wait_for(tmp_path / f"reader{i}.out", "ready", reader)
    Path(gate).touch()
    fed = reports(finish(writer, tmp_path / "writer.out"))
    for i, reader in enumerate(readers):
        kind, queries, last = finish(reader, tmp_path / f"reader{i}.out")[-1].split()
        assert "ok" == kind
        assert int(queries) >= 5, f"reader{i} ran {queries} queries"
        assert int(last) > 0, f"reader{i} never saw an event"
    n = check_after_crash(url, events, fed, "sqlite readers")
    assert sum(len(p) for p, _, _ in fed) == n
    with closing(open_store(url)) as engine:
        assert_replays(engine, engine.log())
