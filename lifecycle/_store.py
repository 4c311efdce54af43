"""Durable engines: an append-only event log and a current-state table, in SQL.

SQLite (embedded, the default of ``Engine.open``) and PostgreSQL (several receivers
sharing one database) speak the same SQL here but for a few dialect words. A batch of
payloads is parsed first, then fed in one transaction: lock the resources it touches,
load them, run the engine's own ``_step`` on them, append the log rows and upsert the
resources, commit. The log row and the state change therefore commit together.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import orjson

from ._convert import Payload, _dumps, decode, encode_payload
from ._engine import (
    _CHANGES,
    REDELIVERY,
    Engine,
    FeedResult,
    HistoryEntry,
    LifecycleViolation,
    ResourceKey,
    ResourceStatus,
    _digest,
    _ordered_counts,
    _Parsed,
    _Recent,
    _Rejected,
    _Resource,
    _Tables,
    _utc,
)
from ._events import InvalidEvent
from ._lifecycles import LIFECYCLES, Lifecycle, Outcome

__all__ = ["SCHEMA_VERSION", "StoreUnavailable", "StoredEngine", "open_engine", "sqlite_path"]


class StoreUnavailable(Exception):  # noqa: N818 - the condition, as users meet it
    """The database cannot be reached or failed during the call; its transaction was
    rolled back, so feeding the same payload again once the database is back is safe
    (only a connection lost during the commit itself leaves it unknown whether the
    event was logged: then it may be logged twice, the second time as a duplicate).

    .. versionadded:: 0.1
    """


@attrs.frozen
class Dialect:
    """The few words in which SQLite and PostgreSQL differ here."""

    name: str
    param: str
    blob: str
    real: str
    bigint: str

    def sql(self, text: str) -> str:
        return text.replace("?", self.param) if self.param != "?" else text


SQLITE = Dialect("sqlite", "?", "BLOB", "REAL", "INTEGER")
POSTGRES = Dialect("postgresql", "%s", "BYTEA", "DOUBLE PRECISION", "BIGINT")

Step = str | Callable[[Any, Dialect], None]


def _backfill_filters(conn: Any, dialect: Dialect) -> None:
    """Version 2: fill the new meeting/session/anomaly columns from the stored rows."""
    rows = conn.execute("SELECT seq, payload, payload_kind, outcome, warnings FROM events")
    updates = []
    for seq, blob, kind, outcome, warnings in rows.fetchall():
        meeting, session = _ids(_data_of(decode_payload(bytes(blob), kind)))
        anomaly = int(outcome != "applied" or warnings != "[]")
        updates.append((meeting, session, anomaly, seq))
    _many(conn, dialect, "UPDATE events SET meeting_id = ?, session_id = ?, anomaly = ? "
          "WHERE seq = ?", updates)
    rows = conn.execute("SELECT lifecycle, resource_key, data FROM resources")
    _many(conn, dialect, "UPDATE resources SET meeting_id = ?, session_id = ? "
          "WHERE lifecycle = ? AND resource_key = ?",
          [(*_ids(orjson.loads(data) if data else {}), lc, key)
           for lc, key, data in rows.fetchall()])


MIGRATIONS: Sequence[tuple[int, Sequence[Step]]] = (
    (1, (
        """CREATE TABLE events (
            seq {bigint} PRIMARY KEY,
            received_at {real} NOT NULL,
            payload {blob} NOT NULL,
            payload_kind TEXT NOT NULL,
            outcome TEXT NOT NULL,
            lifecycle TEXT,
            resource_key TEXT,
            webhook_type TEXT,
            before_state TEXT,
            after_state TEXT,
            missing TEXT NOT NULL,
            warnings TEXT NOT NULL,
            reason TEXT)""",
        "CREATE INDEX events_by_resource ON events (lifecycle, resource_key, seq)",
        """CREATE TABLE resources (
            lifecycle TEXT NOT NULL,
            resource_key TEXT NOT NULL,
            state TEXT NOT NULL,
            entered_at {real} NOT NULL,
            data TEXT,
            cycle_id TEXT,
            first_seq {bigint} NOT NULL,
            last_seq {bigint} NOT NULL,
            PRIMARY KEY (lifecycle, resource_key))""",
    )),
    (2, (  # filters and anomalies by index; prune snapshots
        "ALTER TABLE events ADD COLUMN meeting_id TEXT",
        "ALTER TABLE events ADD COLUMN session_id TEXT",
        "ALTER TABLE events ADD COLUMN anomaly INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE resources ADD COLUMN meeting_id TEXT",
        "ALTER TABLE resources ADD COLUMN session_id TEXT",
        "ALTER TABLE resources ADD COLUMN base TEXT",
        _backfill_filters,
        "CREATE INDEX events_anomalies ON events (anomaly, seq)",
        "CREATE INDEX resources_by_session ON resources (session_id, meeting_id)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
"""The schema version this release writes; older databases are migrated on open."""

_MIGRATION_LOCK = 0x6C6966656379636C  # the advisory lock id of migrations on PostgreSQL


def _many(conn: Any, dialect: Dialect, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        if dialect is SQLITE:
            conn.executemany(sql, rows)
        else:
            with conn.cursor() as cur:
                cur.executemany(dialect.sql(sql), rows)


def migrate(conn: Any, dialect: Dialect, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``target`` inside the caller's transaction; the version before."""
    conn.execute("CREATE TABLE IF NOT EXISTS lifecycle_meta "
                 "(name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = conn.execute("SELECT value FROM lifecycle_meta WHERE name = 'schema_version'")
    found = row.fetchone()
    version = int(found[0]) if found else 0
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the database has schema version {version}, newer than this release's "
            f"{SCHEMA_VERSION}: upgrade videosdk-lifecycle")
    for number, steps in MIGRATIONS:
        if version < number <= target:
            for step in steps:
                if callable(step):
                    step(conn, dialect)
                else:
                    conn.execute(step.format(blob=dialect.blob, real=dialect.real,
                                             bigint=dialect.bigint))
    if target > version:
        if dialect is POSTGRES and version == 0:
            conn.execute("CREATE SEQUENCE IF NOT EXISTS lifecycle_events_seq")
        conn.execute(dialect.sql(
            "INSERT INTO lifecycle_meta (name, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value"), (str(target),))
    return version


# -- payloads and rows ----------------------------------------------------------------

def decode_payload(blob: bytes, kind: str) -> Payload:
    """The payload as it was fed (a mapping for ``json``, the text of a ``repr``)."""
    if kind == "bytes":
        return blob
    if kind == "json":
        loaded: dict[str, Any] = orjson.loads(blob)
        return loaded
    return blob.decode("utf-8", "surrogatepass")


def _data_of(payload: Payload) -> Mapping[str, Any]:
    try:
        data = decode(payload)[0].get("data")
    except InvalidEvent:
        return {}
    return data if isinstance(data, Mapping) else {}


def _ids(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    meeting, session = data.get("meetingId"), data.get("sessionId")
    return (meeting if isinstance(meeting, str) and "\x00" not in meeting else None,
            session if isinstance(session, str) and "\x00" not in session else None)


def _key_text(key: ResourceKey) -> str:
    return orjson.dumps(key).decode()


def _lock_id(lifecycle: str, key: str) -> int:
    digest = hashlib.blake2b(f"{lifecycle}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_EVENT_COLUMNS = ("seq, received_at, payload, payload_kind, outcome, lifecycle, resource_key, "
                  "webhook_type, before_state, after_state, missing, warnings, reason, "
                  "meeting_id, session_id, anomaly")
_REGISTRY_ORDER = "CASE r.lifecycle {} END".format(  # lifecycle names are identifiers
    " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(LIFECYCLES)))
_RESOURCE_COLUMNS = ("lifecycle, resource_key, state, entered_at, data, cycle_id, first_seq, "
                     "last_seq, meeting_id, session_id")


def _json_list(items: tuple[str, ...]) -> str:
    return orjson.dumps(items).decode() if items else "[]"


def _event_row(r: FeedResult) -> tuple[Any, ...]:
    blob, kind = encode_payload(r.payload)
    meeting, session = _ids(r.data)
    return (r.seq, r.timestamp, blob, kind, r.outcome.value, r.lifecycle,
            _key_text(r.key) if r.key is not None else None, r.webhook_type, r.before, r.after,
            _json_list(r.missing), _json_list(r.warnings), r.reason,
            meeting, session, int(bool(r.warnings) or r.outcome is not Outcome.APPLIED))


def _result_of(row: Sequence[Any]) -> FeedResult:
    (seq, received, blob, kind, outcome, lifecycle, key, webhook_type, before, after, missing,
     warnings, reason) = row[:13]
    payload = decode_payload(bytes(blob), kind)
    try:
        envelope: Mapping[str, Any] | None = decode(payload)[0]
    except InvalidEvent:
        envelope = None
    return FeedResult(
        int(seq), Outcome(outcome), lifecycle, tuple(orjson.loads(key)) if key else None,
        webhook_type, before, after, tuple(orjson.loads(missing)), tuple(orjson.loads(warnings)),
        reason, float(received), payload, envelope,
    )


def _resource_of(row: Sequence[Any]) -> _Resource:
    state, entered, data, cycle_id = row
    res = _Resource(state, float(entered))
    res.data = orjson.loads(data) if data else None
    res.cycle_id = cycle_id
    return res


def _resource_row(lc: str, key: ResourceKey, res: _Resource, first: int,
                  last: int) -> tuple[Any, ...]:
    return (lc, _key_text(key), res.state, res.entered,
            _dumps(res.data).decode() if res.data is not None else None,
            res.cycle_id, first, last, *_ids(res.data or {}))


def _upsert(conn: Any, dialect: Dialect, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert or update resource rows (``first_seq`` stays what it was)."""
    _many(conn, dialect, f"INSERT INTO resources ({_RESOURCE_COLUMNS}) VALUES "
          f"({', '.join(['?'] * 10)}) ON CONFLICT (lifecycle, resource_key) DO UPDATE SET "
          "state = excluded.state, entered_at = excluded.entered_at, data = excluded.data, "
          "cycle_id = excluded.cycle_id, last_seq = excluded.last_seq, "
          "meeting_id = excluded.meeting_id, session_id = excluded.session_id", rows)


def _snapshot(res: _Resource, seq: int) -> str:
    return _dumps({"state": res.state, "entered": res.entered, "data": res.data,
                   "cycle_id": res.cycle_id, "seq": seq}).decode()


def _from_snapshot(text: str) -> tuple[_Resource, int]:
    snap = orjson.loads(text)
    res = _Resource(snap["state"], snap["entered"])
    res.data, res.cycle_id = snap["data"], snap["cycle_id"]
    return res, int(snap["seq"])


# -- the engine -----------------------------------------------------------------------

class StoredEngine(Engine):
    """An :class:`Engine` whose state lives in SQLite or PostgreSQL (see ``Engine.open``).

    Not thread-safe: give each thread or process its own engine; on PostgreSQL any
    number of them, on any hosts, may feed the same database at once.
    """

    def __init__(self, connect: Callable[[], Any], dialect: Dialect, url: str, *,
                 errors: tuple[type[Exception], ...], strict: bool = False,
                 clock: Callable[[], float] = time.time, history_limit: int = 100,
                 redelivery_window: float | None = None) -> None:
        super().__init__(strict=strict, clock=clock, history_limit=history_limit,
                         redelivery_window=redelivery_window)
        self.url = url
        self._connect = connect
        self._dialect = dialect
        self._errors = errors  # the driver's errors: they become StoreUnavailable
        self._conn: Any = None
        with self._transaction(exclusive=True) as conn:
            if dialect is POSTGRES:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            migrate(conn, dialect)

    # -- connection and transactions ---------------------------------------------------

    def close(self) -> None:
        """Close the database connection (reopened by the next call)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> Any:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except Exception as e:
                raise StoreUnavailable(f"cannot open {_redact(self.url)}: {e}") from e
        return self._conn

    @contextmanager
    def _transaction(self, exclusive: bool = False) -> Iterator[Any]:
        """One transaction; a lost or failing database becomes :class:`StoreUnavailable`."""
        conn = self._connection()
        try:
            if self._dialect is SQLITE:
                conn.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                with conn.transaction():
                    yield conn
        except self._errors as e:
            self.close()
            raise StoreUnavailable(f"{_redact(self.url)}: {type(e).__name__}: {e}".strip()) from e

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._transaction() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(self._dialect.sql(sql), params).fetchall()
            return rows

    # -- feeding ---------------------------------------------------------------------

    def feed(self, payload: Payload) -> FeedResult:
        """Feed one payload and commit it with its state change before returning."""
        return self.feed_many([payload])[0]

    def feed_many(self, payloads: Iterable[Payload]) -> list[FeedResult]:
        """Feed payloads in order, committed together in one transaction.

        In strict mode the events before the first violation are committed, then
        :class:`LifecycleViolation` is raised for it.
        """
        items: list[tuple[Payload, _Parsed | _Rejected]] = []
        for p in payloads:
            try:
                items.append((p, self._parse(p)))
            except _Rejected as r:
                items.append((p, r))
        if not items:
            return []
        results: list[FeedResult] = []
        violation: LifecycleViolation | None = None
        now = self._clock()
        with self._transaction(exclusive=True) as conn:
            parsed = [i for _, i in items if not isinstance(i, _Rejected)]
            tables = self._load(conn, parsed)
            recent = self._recent_payloads(conn, parsed, now)
            touched: dict[tuple[str, ResourceKey], list[int]] = {}
            for (payload, item), seq in zip(items, self._next_seqs(conn, len(items)),
                                            strict=True):
                try:
                    if isinstance(item, _Rejected):
                        result = self._result(seq, now, payload, item)
                        if self.strict:
                            raise LifecycleViolation(result)
                    else:
                        redelivered = recent is not None and self._seen(recent, item, payload, now)
                        result = self._step(item, seq, now, payload, tables, redelivered)
                        touched.setdefault((item[0][0], item[2]), [seq, seq])[1] = seq
                except LifecycleViolation as v:
                    violation = v
                    break
                results.append(result)
            self._write(conn, results, tables, touched)
        for done in results:
            if done.outcome in _CHANGES and self._subscriptions:
                self._notify(done)
        if violation is not None:
            raise violation
        return results

    def _next_seqs(self, conn: Any, n: int) -> list[int]:
        if self._dialect is SQLITE:  # the write lock is ours: no one else numbers events
            top = _high_water(conn, self._dialect)
            return list(range(top + 1, top + 1 + n))
        rows = conn.execute("SELECT nextval('lifecycle_events_seq') "
                            "FROM generate_series(1, %s)", (n,)).fetchall()
        return [int(r[0]) for r in rows]

    def _load(self, conn: Any, parsed: Sequence[_Parsed]) -> _Tables:
        """Lock (PostgreSQL) and load the resources the batch touches, and its sessions."""
        keys = {(p[0][0], _key_text(p[2])) for p in parsed}
        # a start event reads its session's state (after_session_end): lock that too, so
        # the warning is the one a replay of the log in sequence order gives
        session_keys: Iterator[Any] = ((p[3].get("meetingId"), p[3].get("sessionId"))
                                       for p in parsed if p[0][3])
        sessions = {("session", _key_text(k)) for k in session_keys}
        if self._dialect is POSTGRES and keys:
            locks = sorted({_lock_id(lc, k) for lc, k in keys | sessions})
            conn.execute("SELECT count(pg_advisory_xact_lock(k)) FROM "
                         "(SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS locks",
                         (locks,))
        tables: dict[str, dict[ResourceKey, _Resource]] = {n: {} for n in LIFECYCLES}
        for lc, key, *rest in self._rows_of(
                conn, "SELECT lifecycle, resource_key, state, entered_at, data, cycle_id "
                "FROM resources", keys | sessions):
            tables[lc][tuple(orjson.loads(key))] = _resource_of(rest)
        return tables

    def _rows_of(self, conn: Any, select: str, wanted: Iterable[tuple[str, str]],
                 where: str = "", params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of ``select`` for these (lifecycle, resource key) pairs, by the index.

        ``where`` adds a condition (with its ``params``); pairs go 400 to a query.
        """
        pairs = sorted(wanted)
        for i in range(0, len(pairs), 400):
            chunk = pairs[i: i + 400]
            values = ", ".join(["(?, ?)"] * len(chunk))
            yield from conn.execute(self._dialect.sql(
                f"{select} WHERE (lifecycle, resource_key) IN "  # not (a, b) IN (VALUES ...):
                f"(SELECT column1, column2 FROM (VALUES {values}) AS wanted)"  # SQLite scans
                f"{where}"), [*(v for pair in chunk for v in pair), *params]).fetchall()

    def _recent_payloads(self, conn: Any, parsed: Sequence[_Parsed], now: float) -> _Recent | None:
        """The digests of the payloads logged for these resources within the window."""
        if self.redelivery_window is None:
            return None
        recent: _Recent = {}
        for lc, key, blob, t in self._rows_of(
                conn, "SELECT lifecycle, resource_key, payload, received_at FROM events",
                {(p[0][0], _key_text(p[2])) for p in parsed}, " AND received_at >= ? ORDER BY seq",
                [now - self.redelivery_window]):
            recent.setdefault((lc, tuple(orjson.loads(key))), []).append(
                (_digest(bytes(blob)), float(t)))
        return recent

    def _write(self, conn: Any, results: Sequence[FeedResult], tables: _Tables,
               touched: Mapping[tuple[str, ResourceKey], list[int]]) -> None:
        d = self._dialect
        _many(conn, d, f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES "
              f"({', '.join(['?'] * 16)})", [_event_row(r) for r in results])
        rows = []
        for (lc, key), (first, last) in touched.items():
            rows.append(_resource_row(lc, key, tables[lc][key], first, last))
        _upsert(conn, d, rows)

    # -- queries ---------------------------------------------------------------------

    @property
    def events_fed(self) -> int:
        """The sequence number of the last event logged (pruned or not)."""
        with self._transaction() as conn:
            return _high_water(conn, self._dialect)

    def __len__(self) -> int:
        return int(self._query("SELECT count(*) FROM resources")[0][0])

    def _find(self, lc: Lifecycle, key: ResourceKey,
              at: int | datetime | None) -> ResourceStatus | None:
        if at is not None:
            return self._status_at(lc.name, key, at)
        found = self._select_resources(lc.name, None, None, None, None, 0, key=key)
        return found[0] if found else None

    def _select_resources(self, lifecycle: str | None, meeting_id: str | None,
                          session_id: str | None, state: str | None, limit: int | None,
                          offset: int, key: ResourceKey | None = None) -> list[ResourceStatus]:
        """The resources matching the checked filters (and ``key``), from the database."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("lifecycle", lifecycle), ("meeting_id", meeting_id),
                              ("session_id", session_id), ("state", state)):
            if value is not None:
                where.append(f"r.{column} = ?")
                params.append(value)
        if key is not None:
            where.append("r.resource_key = ?")
            params.append(_key_text(key))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        page = ""
        if limit is not None or offset:
            page = " LIMIT ? OFFSET ?"
            no_limit = -1 if self._dialect is SQLITE else None  # what each reads as none
            params += [no_limit if limit is None else limit, offset]
        chosen = (f"SELECT r.lifecycle, r.resource_key FROM resources r {clause} "
                  f"ORDER BY {_REGISTRY_ORDER}, r.first_seq{page}")
        with self._transaction() as conn:
            rows = conn.execute(self._dialect.sql(
                "SELECT r.lifecycle, r.resource_key, r.state, r.entered_at, r.data, r.cycle_id "
                f"FROM resources r JOIN ({chosen}) AS p ON p.lifecycle = r.lifecycle AND "
                f"p.resource_key = r.resource_key ORDER BY {_REGISTRY_ORDER}, r.first_seq"),
                params).fetchall()
            history = conn.execute(self._dialect.sql(  # the last history_limit of each
                "SELECT lifecycle, resource_key, seq, webhook_type, outcome, received_at FROM "
                "(SELECT e.lifecycle, e.resource_key, e.seq, e.webhook_type, e.outcome, "
                "e.received_at, row_number() OVER (PARTITION BY e.lifecycle, e.resource_key "
                f"ORDER BY e.seq DESC) AS age FROM events e JOIN ({chosen}) AS p ON "
                "p.lifecycle = e.lifecycle AND p.resource_key = e.resource_key) AS h "
                "WHERE age <= ? ORDER BY seq"), [*params, self._history_limit]).fetchall()
        entries: dict[tuple[str, str], list[HistoryEntry]] = {}
        for lc, k, seq, w, outcome, t in history:
            entries.setdefault((lc, k), []).append(
                HistoryEntry(int(seq), w, Outcome(outcome), _utc(float(t))))
        return [self._status(LIFECYCLES[lc], tuple(orjson.loads(k)), _resource_of(rest),
                             tuple(entries.get((lc, k), ()))) for lc, k, *rest in rows]

    def state_counts(self) -> dict[str, dict[str, int]]:
        """How many resources are in each state: ``{lifecycle: {state: count}}``."""
        counts: dict[str, dict[str, int]] = {}
        for lc, state, n in self._query(
                "SELECT lifecycle, state, count(*) FROM resources GROUP BY lifecycle, state"):
            counts.setdefault(lc, {})[state] = int(n)
        return _ordered_counts(counts)

    def _select_anomalies(self, lifecycle: str | None, want: Outcome | None,
                          meeting_id: str | None, session_id: str | None, after: int,
                          limit: int | None) -> list[FeedResult]:
        """The logged anomalies matching the checked filters, in log order."""
        where = ["anomaly = 1", "seq > ?"]
        params: list[Any] = [after]
        for column, value in (("lifecycle", lifecycle),
                              ("outcome", want.value if want is not None else None),
                              ("meeting_id", meeting_id), ("session_id", session_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_result_of(r) for r in self._query(sql, params)]

    def log(self, after: int = 0, limit: int | None = None) -> list[FeedResult]:
        """Logged results in sequence order, from ``after`` (exclusive)."""
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq"
        params: list[Any] = [after]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_result_of(r) for r in self._query(sql, params)]

    # -- replay, rebuild and retention -------------------------------------------------

    def _status_at(self, lifecycle: str, key: ResourceKey,
                   at: int | datetime) -> ResourceStatus | None:
        column, bound = ("seq", at) if isinstance(at, int) else ("received_at", at.timestamp())
        with self._transaction() as conn:
            base = conn.execute(self._dialect.sql(
                "SELECT base FROM resources WHERE lifecycle = ? AND resource_key = ?"),
                (lifecycle, _key_text(key))).fetchone()
            rows = conn.execute(self._dialect.sql(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE lifecycle = ? AND resource_key = ? "
                f"AND {column} <= ? ORDER BY seq"), (lifecycle, _key_text(key), bound)).fetchall()
        replay = _Replay(self._history_limit)
        if base and base[0]:
            res, seq = _from_snapshot(base[0])
            if (seq if column == "seq" else res.entered) > bound:
                raise ValueError(f"{lifecycle} {'/'.join(key)}: its log before {at} was pruned")
            replay.seed(lifecycle, key, res)
        logged = [_result_of(r) for r in rows]
        for result in logged:
            replay.feed(result)
        return replay.status(lifecycle, key, logged)

    def rebuild(self) -> list[tuple[str, ResourceKey, str | None, str]]:
        """Recompute every resource from the log and store it; what had differed.

        Each difference is ``(lifecycle, key, stored state or None, rebuilt state)``;
        data, entry time and cycle id are compared too. On a consistent store the list
        is empty. Writers wait while it runs.
        """
        replay = _Replay(self._history_limit)
        with self._transaction(exclusive=True) as conn:
            if self._dialect is POSTGRES:
                conn.execute("LOCK TABLE events, resources IN EXCLUSIVE MODE")
            stored: dict[tuple[str, ResourceKey], _Resource] = {}
            for lc, k, state, entered, data, cycle_id, base, first, last in conn.execute(
                    "SELECT lifecycle, resource_key, state, entered_at, data, cycle_id, base, "
                    "first_seq, last_seq FROM resources").fetchall():
                key = tuple(orjson.loads(k))
                stored[(lc, key)] = _resource_of((state, entered, data, cycle_id))
                if base:
                    replay.seed(lc, key, _from_snapshot(base)[0], int(first), int(last))
            cursor = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY seq")
            while batch := cursor.fetchmany(1000):
                for row in batch:
                    replay.feed(_result_of(row))
            diffs = [(lc, key, old.state if old else None, res.state)
                     for (lc, key), res, _ in replay.resources()
                     if (old := stored.get((lc, key))) is None or _fields(old) != _fields(res)]
            diffs += [(lc, key, old.state, "idle") for (lc, key), old in stored.items()
                      if not replay.has(lc, key)]
            if diffs:
                conn.execute("DELETE FROM resources WHERE base IS NULL")
                _upsert(conn, self._dialect, [
                    _resource_row(lc, key, res, *seqs) for (lc, key), res, seqs in
                    replay.resources()])
        return diffs

    def prune(self, before: datetime | float) -> int:
        """Drop the log rows of resources that reached a final state before ``before``.

        Their final state stays (with a snapshot that rebuild starts from); anomalies of
        malformed and unknown payloads are kept. Returns the number of rows dropped.
        """
        limit = before.timestamp() if isinstance(before, datetime) else float(before)
        finals = [(n, s) for n, lc in LIFECYCLES.items() for s in sorted(lc.final_states)]
        values = ", ".join(["(?, ?)"] * len(finals))
        dropped = 0
        with self._transaction(exclusive=True) as conn:
            rows = conn.execute(self._dialect.sql(
                "SELECT lifecycle, resource_key, state, entered_at, data, cycle_id, last_seq "
                "FROM resources r WHERE entered_at < ? AND (lifecycle, state) IN "
                f"(SELECT column1, column2 FROM (VALUES {values}) AS final) AND EXISTS (SELECT 1 "
                "FROM events e WHERE e.lifecycle = r.lifecycle AND e.resource_key = r.resource_key)"
            ), [limit, *[v for pair in finals for v in pair]]).fetchall()
            if rows:  # sequence numbers are never handed out again, even once pruned
                conn.execute(self._dialect.sql(
                    "INSERT INTO lifecycle_meta (name, value) VALUES ('pruned_seq', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"),
                    (str(_high_water(conn, self._dialect)),))
            for lc, key, state, entered, data, cycle_id, last_seq in rows:
                res = _resource_of((state, entered, data, cycle_id))
                cur = conn.execute(self._dialect.sql(
                    "DELETE FROM events WHERE lifecycle = ? AND resource_key = ? AND seq <= ?"),
                    (lc, key, last_seq))
                dropped += max(cur.rowcount, 0)
                conn.execute(self._dialect.sql(
                    "UPDATE resources SET base = ? WHERE lifecycle = ? AND resource_key = ?"),
                    (_snapshot(res, int(last_seq)), lc, key))
        return dropped


def _high_water(conn: Any, dialect: Dialect) -> int:
    """The highest sequence number ever logged, counting the pruned ones."""
    (top,) = conn.execute(
        "SELECT max(coalesce((SELECT max(seq) FROM events), 0), "
        "coalesce((SELECT CAST(value AS BIGINT) FROM lifecycle_meta "
        "WHERE name = 'pruned_seq'), 0))" if dialect is SQLITE else
        "SELECT greatest(coalesce((SELECT max(seq) FROM events), 0), "
        "coalesce((SELECT CAST(value AS BIGINT) FROM lifecycle_meta "
        "WHERE name = 'pruned_seq'), 0))").fetchone()
    return int(top)


def _fields(res: _Resource) -> tuple[Any, ...]:
    return (res.state, round(res.entered, 6), res.data, res.cycle_id)


class _Replay:
    """An in-memory engine fed logged results again, with their logged times."""

    def __init__(self, history_limit: int) -> None:
        self._now = 0.0
        self.engine = Engine(clock=lambda: self._now, history_limit=history_limit)
        self.seqs: dict[tuple[str, ResourceKey], list[int]] = {}

    def seed(self, lifecycle: str, key: ResourceKey, res: _Resource, first: int = 0,
             last: int = 0) -> None:
        self.engine._tables[lifecycle][key] = res
        self.seqs[(lifecycle, key)] = [first, last]

    def feed(self, logged: FeedResult) -> None:
        if logged.lifecycle is not None and logged.key is not None:
            self._now = logged.timestamp
            if REDELIVERY in logged.warnings:  # it changed nothing then: nor does it now
                engine = self.engine
                engine._seq = logged.seq
                engine._step(engine._parse(logged.payload), logged.seq, logged.timestamp,
                             logged.payload, engine._tables, redelivered=True)
            else:
                self.engine.feed(logged.payload)
            self.seqs.setdefault((logged.lifecycle, logged.key), [logged.seq, 0])[1] = logged.seq

    def has(self, lifecycle: str, key: ResourceKey) -> bool:
        return key in self.engine._tables[lifecycle]

    def resources(self) -> Iterator[tuple[tuple[str, ResourceKey], _Resource, list[int]]]:
        for lc, table in self.engine._tables.items():
            for key, res in table.items():
                yield (lc, key), res, self.seqs[(lc, key)]

    def status(self, lifecycle: str, key: ResourceKey,
               logged: Sequence[FeedResult]) -> ResourceStatus | None:
        found = self.engine.status(lifecycle, *key)
        if found is None:
            return None
        history = tuple(HistoryEntry(r.seq, r.webhook_type or "", r.outcome, r.received_at)
                        for r in logged)[-self.engine._history_limit:]
        return attrs.evolve(found, history=history)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL or path; ``""`` for an in-memory one, None if not SQLite."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in ("", "sqlite"):
        return None
    path = unquote(urlsplit(url).path[1:]) if scheme == "sqlite" else url
    return "" if path == ":memory:" else path


def open_engine(url: str | os.PathLike[str], *, strict: bool = False,
                clock: Callable[[], float] = time.time, history_limit: int = 100,
                redelivery_window: float | None = None,
                synchronous: str = "NORMAL") -> StoredEngine:
    """An engine on ``url``: ``sqlite:///path.db``, a bare path, or ``postgresql://...``."""
    text = str(url)
    scheme = urlsplit(text).scheme if "://" in text else ""
    options = {"strict": strict, "clock": clock, "history_limit": history_limit,
               "redelivery_window": redelivery_window}
    if scheme in ("postgresql", "postgres"):
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - an install without the extra
            raise StoreUnavailable(
                "PostgreSQL needs psycopg: pip install 'videosdk-lifecycle[postgresql]'") from e

        def connect_pg() -> Any:
            return psycopg.connect(text, autocommit=True, connect_timeout=10)

        return StoredEngine(connect_pg, POSTGRES, text, errors=(psycopg.Error,),
                            **options)  # type: ignore[arg-type]
    path = sqlite_path(text)
    if path is None:
        raise ValueError(f"unsupported database URL {text!r}: use sqlite:///path.db, a path, "
                         "or postgresql://user@host/dbname")
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")

    def connect_sqlite() -> sqlite3.Connection:
        conn = sqlite3.connect(path or ":memory:", isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        if path:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        return conn

    if path and not Path(path).parent.exists():
        raise StoreUnavailable(f"cannot open {text}: folder {Path(path).parent} does not exist")
    return StoredEngine(connect_sqlite, SQLITE, text, errors=(sqlite3.Error,),
                        **options)  # type: ignore[arg-type]
