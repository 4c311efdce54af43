"""What the SQL stores share: the schema and its migrations, the statements, the rows.

An event log (``events``) and a current-state table (``resources``). A batch runs in
one transaction: lock (where several writers share the database) and load the resources
it touches, let the engine step them, append the log rows and upsert the resources,
commit; the log row and the state change therefore commit together. The few places
where SQLite and PostgreSQL differ are the hooks a backend overrides (``sqlite.py``,
``postgres.py``); nothing here asks which database it talks to.
"""

from __future__ import annotations

import abc
import sys
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from itertools import chain, repeat
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

from .._convert import Payload, _dumps, decode, encode_payload, keyable
from .._core import ALL_SLOTS, Parsed, Rejected, digest_bytes, overdue_entry, status_of, touched
from .._deadlines import Deadlines, Due
from .._lifecycles import LIFECYCLES, Outcome
from .._records import (
    CHANGES,
    Change,
    Delivery,
    FeedResult,
    HistoryEntry,
    Overdue,
    Resource,
    ResourceKey,
    ResourceRef,
    ResourceStatus,
    Snapshot,
    utc,
)
from ..errors import CursorGone, InvalidEvent, LogPruned, StoreRefused, StoreUnavailable
from ._base import AnomalyQuery, ChangeQuery, ResourceQuery, Stored

__all__ = ["SCHEMA_VERSION", "SqlStore", "redact"]

Migration = str | Callable[["SqlStore", Any], None]
Recent = dict[ResourceRef, list[tuple[bytes, float]]]
"""The digests and times of the payloads recently logged for each resource."""


def _backfill_filters(store: SqlStore, conn: Any) -> None:
    """Version 2: fill the new meeting/session/anomaly columns from the stored rows."""
    rows = conn.execute("SELECT seq, payload, payload_kind, outcome, warnings FROM events")
    updates = []
    for seq, blob, kind, outcome, warnings in rows.fetchall():
        meeting, session = _ids(_data_of(decode_payload(bytes(blob), kind)))
        anomaly = int(outcome != "applied" or warnings != "[]")
        updates.append((meeting, session, anomaly, seq))
    store._many(
        conn, "UPDATE events SET meeting_id = ?, session_id = ?, anomaly = ? WHERE seq = ?", updates
    )
    rows = conn.execute("SELECT lifecycle, resource_key, data FROM resources")
    store._many(
        conn,
        "UPDATE resources SET meeting_id = ?, session_id = ? "
        "WHERE lifecycle = ? AND resource_key = ?",
        [(*_ids(orjson.loads(data) if data else {}), lc, key) for lc, key, data in rows.fetchall()],
    )


MIGRATIONS: Sequence[tuple[int, Sequence[Migration]]] = (
    (
        1,
        (
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
            lambda store, conn: store._create_sequence(conn),
        ),
    ),
    (
        2,
        (  # filters and anomalies by index; prune snapshots
            "ALTER TABLE events ADD COLUMN meeting_id TEXT",
            "ALTER TABLE events ADD COLUMN session_id TEXT",
            "ALTER TABLE events ADD COLUMN anomaly INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE resources ADD COLUMN meeting_id TEXT",
            "ALTER TABLE resources ADD COLUMN session_id TEXT",
            "ALTER TABLE resources ADD COLUMN base TEXT",
            _backfill_filters,
            "CREATE INDEX events_anomalies ON events (anomaly, seq)",
            "CREATE INDEX resources_by_session ON resources (session_id, meeting_id)",
        ),
    ),
    (
        3,
        (  # each resource lists its events (appended, not an index of random inserts);
            # index only the anomalies, not every event
            "ALTER TABLE resources ADD COLUMN seqs {blob}",
            lambda store, conn: _backfill_seqs(store, conn),
            "DROP INDEX events_by_resource",
            "DROP INDEX events_anomalies",
            "CREATE INDEX events_anomalies_only ON events (seq) WHERE anomaly = 1",
        ),
    ),
    (
        4,
        (  # deadlines: resources by state and entry time; the visit a sweep flagged; a
            # session's own row found by its ids
            "ALTER TABLE resources ADD COLUMN flagged_at {real}",
            "CREATE INDEX resources_by_state ON resources (lifecycle, state, entered_at)",
            "DROP INDEX resources_by_session",
            "CREATE INDEX resources_in_session ON resources (session_id, meeting_id, lifecycle)",
        ),
    ),
    (
        5,
        (  # the change feed: a cursor in commit order, and the resource's data after it
            "ALTER TABLE events ADD COLUMN cursor {bigint}",
            "ALTER TABLE events ADD COLUMN change_data TEXT",
            "UPDATE events SET cursor = seq WHERE lifecycle IS NOT NULL AND outcome IN "
            "('applied', 'gap', 'overdue')",
            "CREATE UNIQUE INDEX events_changes ON events (cursor) WHERE cursor IS NOT NULL",
            "CREATE TABLE lifecycle_cursor (last {bigint} NOT NULL)",
            "INSERT INTO lifecycle_cursor (last) SELECT coalesce(max(cursor), 0) FROM events",
        ),
    ),
    (
        6,
        (  # forwarding: each endpoint's cursor and lease, and its deliveries that failed
            """CREATE TABLE lifecycle_forwards (
            endpoint TEXT PRIMARY KEY,
            cursor {bigint} NOT NULL,
            holder TEXT,
            lease_until {real})""",
            """CREATE TABLE lifecycle_deliveries (
            id TEXT PRIMARY KEY,
            endpoint TEXT NOT NULL,
            cursor {bigint} NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT,
            body TEXT NOT NULL,
            updated_at {real} NOT NULL)""",
            "CREATE INDEX deliveries_by_status ON lifecycle_deliveries (status, endpoint, cursor)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
"""The schema version this release writes; older databases are migrated on open."""


def _backfill_seqs(store: SqlStore, conn: Any) -> None:
    """Version 3: list each resource's logged events in its row."""
    logged: dict[tuple[str, str], array[int]] = {}
    for lc, key, seq in conn.execute(
        "SELECT lifecycle, resource_key, seq FROM events WHERE lifecycle IS NOT NULL ORDER BY seq"
    ).fetchall():
        logged.setdefault((lc, key), array("q")).append(int(seq))
    store._many(
        conn,
        "UPDATE resources SET seqs = ? WHERE lifecycle = ? AND resource_key = ?",
        [(pack_seqs(seqs), lc, key) for (lc, key), seqs in logged.items()],
    )


# -- payloads and rows ----------------------------------------------------------------


def pack_seqs(seqs: array[int]) -> bytes:
    """A resource's event numbers as stored: little-endian 64-bit integers."""
    if sys.byteorder == "big":  # pragma: no cover - no such machine here
        seqs = array("q", seqs)
        seqs.byteswap()
    return seqs.tobytes()


def unpack_seqs(blob: bytes | None) -> array[int]:
    """The event numbers of a stored ``seqs`` column (empty for NULL)."""
    seqs = array("q")
    if blob:
        seqs.frombytes(bytes(blob))
        if sys.byteorder == "big":  # pragma: no cover
            seqs.byteswap()
    return seqs


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
    """The meeting and session ``data`` names, each when it could be a key (indexed)."""
    meeting, session = data.get("meetingId"), data.get("sessionId")
    return (meeting if _indexable(meeting) else None, session if _indexable(session) else None)


def _indexable(value: object) -> bool:
    """A value the id columns and their index keep: one that may be a key value, or
    empty (kept as given)."""
    return value == "" or keyable(value)


def key_text(key: ResourceKey) -> str:
    """A key as stored: its values as a JSON array."""
    return orjson.dumps(key).decode()


_PING = "UPDATE lifecycle_meta SET value = value WHERE name = 'schema_version'"
EVENT_COLUMNS = (
    "seq, received_at, payload, payload_kind, outcome, lifecycle, resource_key, "
    "webhook_type, before_state, after_state, missing, warnings, reason, "
    "meeting_id, session_id, anomaly"
)
# a change's cursor: the counter, raised by the batch's changes in the same transaction
# (its row stays locked until the commit, so cursors follow the commit order), less the
# change's distance from the batch's last one; NULL for an event that changed nothing
_INSERT_EVENT = (
    f"INSERT INTO events ({EVENT_COLUMNS}, cursor, change_data) VALUES "
    f"({', '.join(['?'] * 16)}, (SELECT last FROM lifecycle_cursor) - ?, ?)"
)
_RAISE_CURSOR = "UPDATE lifecycle_cursor SET last = last + ?"
_CHANGE_COLUMNS = (
    "cursor, seq, outcome, lifecycle, resource_key, webhook_type, before_state, "
    "after_state, warnings, received_at, change_data"
)
_KEYED_BY_SESSION = frozenset(
    name
    for name, lc in LIFECYCLES.items()
    if {"meetingId", "sessionId"} <= set(lc.definition.key_fields)
)
_REGISTRY_ORDER = "CASE r.lifecycle {} END".format(  # lifecycle names are identifiers
    " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(LIFECYCLES))
)
_RESOURCE_COLUMNS = (
    "lifecycle, resource_key, state, entered_at, data, cycle_id, flagged_at, first_seq, "
    "last_seq, meeting_id, session_id, seqs"
)


_UPSERT = (
    f"INSERT INTO resources ({_RESOURCE_COLUMNS}) VALUES ({', '.join(['?'] * 12)}) "
    "ON CONFLICT (lifecycle, resource_key) DO UPDATE SET state = excluded.state, "
    "entered_at = excluded.entered_at, data = excluded.data, cycle_id = excluded.cycle_id, "
    "flagged_at = excluded.flagged_at, last_seq = excluded.last_seq, seqs = excluded.seqs"
)
_SET_IDS = ", meeting_id = excluded.meeting_id, session_id = excluded.session_id"
_FLAG = (
    "UPDATE resources SET flagged_at = ?, last_seq = ?, seqs = ? "
    "WHERE lifecycle = ? AND resource_key = ?"
)


def _json_list(items: tuple[str, ...]) -> str:
    return orjson.dumps(items).decode() if items else "[]"


_VALUE = {o: o.value for o in Outcome}  # an enum's .value is a Python-level property
_APPLIED = Outcome.APPLIED


def event_row(r: FeedResult, data: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """The ``events`` row of a result; ``data`` is its payload's (decoded when None)."""
    seq, outcome, lifecycle, key, webhook_type, before, after, missing, warnings, reason, t, p = r
    blob, kind = (p, "bytes") if type(p) is bytes else encode_payload(p)
    meeting, session = _ids(r.data if data is None else data)
    return (
        seq,
        t,
        blob,
        kind,
        _VALUE[outcome],
        lifecycle,
        key_text(key) if key is not None else None,
        webhook_type,
        before,
        after,
        _json_list(missing),
        _json_list(warnings),
        reason,
        meeting,
        session,
        1 if warnings or outcome is not _APPLIED else 0,
    )


def result_of(row: Sequence[Any]) -> FeedResult:
    """The result an ``events`` row holds."""
    (
        seq,
        received,
        blob,
        kind,
        outcome,
        lifecycle,
        key,
        webhook_type,
        before,
        after,
        missing,
        warnings,
        reason,
    ) = row[:13]
    return FeedResult(
        int(seq),
        Outcome(outcome),
        lifecycle,
        tuple(orjson.loads(key)) if key else None,
        webhook_type,
        before,
        after,
        tuple(orjson.loads(missing)),
        tuple(orjson.loads(warnings)),
        reason,
        float(received),
        decode_payload(bytes(blob), kind),
    )


def _equal(*filters: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """The ``column = ?`` conditions of the filters that are given (not None), and their
    parameters: what every query with optional filters is built from."""
    given = [(column, value) for column, value in filters if value is not None]
    return [f"{column} = ?" for column, _ in given], [value for _, value in given]


def _change_of(row: Sequence[Any]) -> Change:
    """The change a row of :data:`_CHANGE_COLUMNS` holds."""
    cursor, seq, outcome, lifecycle, key, webhook_type, before, after, warnings, t, data = row
    return Change(
        int(cursor),
        int(seq),
        Outcome(outcome),
        lifecycle,
        tuple(orjson.loads(key)),
        webhook_type,
        before,
        after,
        tuple(orjson.loads(warnings)),
        float(t),
        orjson.loads(data) if data else {},
    )


_DELIVERY_COLUMNS = "id, endpoint, cursor, status, attempts, error, body, updated_at"
_DELIVERY_UPSERT = (
    f"INSERT INTO lifecycle_deliveries ({_DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts, "
    "error = excluded.error, updated_at = excluded.updated_at"
)


def _delivery_of(row: Sequence[Any]) -> Delivery:
    did, endpoint, cursor, status, attempts, error, body, updated = row
    return Delivery(did, endpoint, int(cursor), status, int(attempts), error, body, float(updated))


def _resource_of(
    state: str,
    entered: float,
    data: str | None,
    cycle_id: str | None,
    flagged: float | None = None,
) -> Resource:
    return Resource(
        state,
        float(entered),
        orjson.loads(data) if data else None,
        cycle_id,
        None if flagged is None else float(flagged),
    )


def _resource_row(ref: ResourceRef, res: Resource, seqs: array[int]) -> tuple[Any, ...]:
    """The ``resources`` row of a resource whose logged events are ``seqs``."""
    return (
        ref[0],
        key_text(ref[1]),
        res.state,
        res.entered,
        _dumps(res.data).decode() if res.data is not None else None,
        res.cycle_id,
        res.flagged,
        seqs[0] if seqs else 0,  # first_seq, kept from the first insert
        seqs[-1] if seqs else 0,
        *_ids(res.data or {}),
        pack_seqs(seqs),
    )


def _snapshot_text(base: Snapshot) -> str:
    res = base.resource
    return _dumps(
        {
            "state": res.state,
            "entered": res.entered,
            "data": res.data,
            "cycle_id": res.cycle_id,
            "seq": base.seq,
        }
    ).decode()


def _snapshot_of(text: str) -> Snapshot:
    snap = orjson.loads(text)
    return Snapshot(
        Resource(snap["state"], snap["entered"], snap["data"], snap["cycle_id"]), int(snap["seq"])
    )


def redact(url: str) -> str:
    """``url`` with its password, if any, hidden."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


# -- the store ------------------------------------------------------------------------


class SqlStore(abc.ABC):
    """A store in a SQL database; a backend fills in its connection and dialect hooks.

    Not thread-safe: one per thread or process.
    """

    whole_log = True
    read_only = False
    """Opened for queries only: never created, migrated or written."""
    blob: ClassVar[str] = "BLOB"
    real: ClassVar[str] = "REAL"
    bigint: ClassVar[str] = "INTEGER"
    no_limit: ClassVar[object] = None
    """What ``LIMIT ?`` reads as no limit."""
    several_writers: ClassVar[bool] = False
    """Whether other writers may change a resource between two statements of a
    transaction (they must be locked first); SQLite's ``BEGIN IMMEDIATE`` keeps them
    out of the whole transaction."""
    errors: tuple[type[Exception], ...] = ()
    """The driver's errors: :class:`StoreRefused` those that :meth:`_refused` names,
    :class:`StoreUnavailable` the others."""

    def __init__(self, url: str, *, history_limit: int = 100) -> None:
        self.url = url
        self.history_limit = history_limit
        self._conn: Any = None
        with self._transaction(exclusive=True) as conn:
            self._lock_schema(conn)
            self._migrate(conn)

    # -- the hooks of a backend ----------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new connection (autocommit: transactions are begun explicitly)."""

    @abc.abstractmethod
    @contextmanager
    def _begin(self, conn: Any, exclusive: bool, pipeline: bool) -> Iterator[None]:
        """One transaction on ``conn``; ``exclusive`` when it will write, ``pipeline``
        when its statements may be sent before the answers of earlier ones are read."""

    def sql(self, text: str) -> str:
        """A statement written with ``?`` parameters, in the driver's own style."""
        return text

    def _many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row."""
        if rows:
            conn.executemany(self.sql(sql), rows)

    def _lock_schema(self, conn: Any) -> None:  # noqa: B027 - a hook, empty unless needed
        """Keep other connections out while the schema is checked and migrated."""

    def _create_sequence(self, conn: Any) -> None:  # noqa: B027
        """Create what hands out sequence numbers, when the database needs one."""

    def _lock_all(self, conn: Any) -> None:  # noqa: B027
        """Keep other writers off every table until the transaction ends (rebuild)."""

    def _notify(self, conn: Any) -> None:  # noqa: B027
        """Tell the database's other connections that changes are committing (on
        commit), where it can."""

    @abc.abstractmethod
    def _next_seqs(self, conn: Any, n: int) -> list[int]:
        """``n`` new sequence numbers, increasing."""

    @abc.abstractmethod
    def _high_water(self, conn: Any) -> int:
        """The highest sequence number ever logged, counting the pruned ones."""

    def _forget(self) -> None:  # noqa: B027
        """Drop whatever the backend keeps of the database between transactions."""

    def _refused(self, error: Exception) -> bool:
        """Whether the driver's ``error`` refuses the values given (retrying cannot
        help), rather than saying that the database is unavailable (it may)."""
        return False

    # -- connection and transactions -------------------------------------------------------

    def ping(self) -> None:
        try:
            self._ping()
        except StoreUnavailable:  # the connection was closed: try once on a fresh one
            self._ping()

    def _ping(self) -> None:
        """A transaction that writes (a row rewritten as it is): a database that can be
        read but not written fails it."""
        with self._transaction(exclusive=True) as conn:
            conn.execute(_PING)

    def close(self) -> None:
        """Close the database connection (reopened by the next call)."""
        self._forget()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> Any:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except Exception as e:
                raise StoreUnavailable(f"cannot open {redact(self.url)}: {e}") from e
        return self._conn

    @contextmanager
    def _transaction(self, exclusive: bool = False, pipeline: bool = False) -> Iterator[Any]:
        """One transaction; a lost or failing database becomes :class:`StoreUnavailable`,
        values it refuses :class:`StoreRefused`."""
        conn = self._connection()
        try:
            with self._begin(conn, exclusive, pipeline):
                yield conn
        except self.errors as e:
            self.close()
            text = f"{redact(self.url)}: {type(e).__name__}: {e}".strip()
            raise (StoreRefused if self._refused(e) else StoreUnavailable)(text) from e
        except BaseException:
            self._forget()
            raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._transaction() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(self.sql(sql), params).fetchall()
            return rows

    def _has_table(self, conn: Any, name: str) -> bool:
        """Whether the database has a table of that name."""
        found = conn.execute(self.sql("SELECT to_regclass(?) IS NOT NULL"), (name,)).fetchone()
        return bool(found[0])

    def _migrate(self, conn: Any) -> int:
        """Bring the schema to this release's version; the version found. Read-only,
        check that it is this release's version instead."""
        if self.read_only:
            found = (
                self._has_table(conn, "lifecycle_meta")
                and conn.execute(
                    "SELECT value FROM lifecycle_meta WHERE name = 'schema_version'"
                ).fetchone()
            )
            version = int(found[0]) if found else 0
            if version != SCHEMA_VERSION:
                has = f"schema version {version}" if version else "no lifecycle tables"
                raise StoreUnavailable(
                    f"cannot read {redact(self.url)}: it has {has}, this release reads "
                    f"version {SCHEMA_VERSION} (open it once for writing to create or "
                    "migrate them)"
                )
            return version
        conn.execute(
            "CREATE TABLE IF NOT EXISTS lifecycle_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        found = conn.execute(
            "SELECT value FROM lifecycle_meta WHERE name = 'schema_version'"
        ).fetchone()
        version = int(found[0]) if found else 0
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the database has schema version {version}, newer than this release's "
                f"{SCHEMA_VERSION}: upgrade videosdk-lifecycle"
            )
        for number, steps in MIGRATIONS:
            if version < number:
                for step in steps:
                    if callable(step):
                        step(self, conn)
                    else:
                        conn.execute(
                            step.format(blob=self.blob, real=self.real, bigint=self.bigint)
                        )
        if version < SCHEMA_VERSION:
            conn.execute(
                self.sql(
                    "INSERT INTO lifecycle_meta (name, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                ),
                (str(SCHEMA_VERSION),),
            )
        return version

    # -- feeding -----------------------------------------------------------------------------

    def begin(self, events: Sequence[Parsed | Rejected], since: float | None) -> _SqlBatch:
        transaction = self._transaction(exclusive=True, pipeline=True)
        conn = transaction.__enter__()
        try:
            kept, seqs, recent = self._load(conn, touched(events), len(events), since)
        except BaseException as e:
            transaction.__exit__(type(e), e, e.__traceback__)  # may raise StoreUnavailable
            raise
        return _SqlBatch(self, transaction, conn, events, kept, seqs, recent)

    def _load(
        self, conn: Any, wanted: Collection[ResourceRef], size: int, since: float | None
    ) -> tuple[dict[ResourceRef, Kept], list[int], Recent]:
        """Load what a batch needs: its resources, seqs and recent digests (a backend
        with several writers locks the resources first)."""
        kept = self._load_resources(conn, wanted)
        seqs = self._next_seqs(conn, size)
        recent = self._recent(conn, kept, since) if since is not None else {}
        return kept, seqs, recent

    def _load_resources(
        self, conn: Any, wanted: Collection[ResourceRef]
    ) -> dict[ResourceRef, Kept]:
        return _kept(self._rows_of(conn, LOAD, wanted))

    def _rows_of(
        self,
        conn: Any,
        select: str,
        wanted: Iterable[ResourceRef],
        where: str = "",
        params: Sequence[Any] = (),
    ) -> Iterator[tuple[Any, ...]]:
        """The rows of ``select`` for these resources, by the index.

        ``where`` adds a condition (with its ``params``); resources go 400 to a query.
        Every query is sent before the first answer is read (one round trip where the
        driver pipelines them).
        """
        for cur in self._send(conn, select, wanted, where, params):
            yield from cur.fetchall()

    def _send(
        self,
        conn: Any,
        select: str,
        wanted: Iterable[ResourceRef],
        where: str = "",
        params: Sequence[Any] = (),
    ) -> list[Any]:
        """The cursors of :meth:`_rows_of`'s queries, sent but not read."""
        pairs = sorted((lc, key_text(key)) for lc, key in wanted)
        cursors = []
        for i in range(0, len(pairs), 400):
            chunk = pairs[i : i + 400]
            values = ", ".join(["(?, ?)"] * len(chunk))
            cursors.append(
                conn.execute(
                    self.sql(
                        # not (a, b) IN (VALUES ...), which SQLite plans as a scan
                        f"{select} WHERE (lifecycle, resource_key) IN "
                        f"(SELECT column1, column2 FROM (VALUES {values}) AS wanted)"
                        f"{where}"
                    ),
                    [*(v for pair in chunk for v in pair), *params],
                )
            )
        return cursors

    def _by_seq(
        self,
        conn: Any,
        select: str,
        seqs: Iterable[int],
        where: str = "",
        params: Sequence[Any] = (),
    ) -> list[tuple[Any, ...]]:
        """The rows of ``select`` for these event numbers (by the primary key), in
        ``seq`` order; ``where`` adds a condition (with its ``params``)."""
        wanted = sorted(seqs)
        cursors = [
            conn.execute(
                self.sql(f"{select} WHERE seq IN ({', '.join(['?'] * len(chunk))}){where}"),
                [*chunk, *params],
            )
            for chunk in (wanted[i : i + 500] for i in range(0, len(wanted), 500))
        ]
        rows = [row for cur in cursors for row in cur.fetchall()]
        rows.sort(key=lambda row: int(row[0]))
        return rows

    def _recent(self, conn: Any, kept: Mapping[ResourceRef, Kept], since: float) -> Recent:
        """The digests of the payloads logged for these resources since ``since``."""
        owner = {seq: ref for ref, (_, seqs) in kept.items() for seq in seqs}
        recent: Recent = {}
        for seq, blob, t in self._by_seq(conn, RECENT, owner, " AND received_at >= ?", [since]):
            recent.setdefault(owner[int(seq)], []).append((digest_bytes(bytes(blob)), float(t)))
        return recent

    def _write(
        self,
        conn: Any,
        batch: _SqlBatch,
        results: Sequence[FeedResult],
        entries: bool = False,
    ) -> dict[ResourceRef, list[int]]:
        """Append the batch's log rows and upsert the resources its results touched
        (their lists of events grown by this batch's); those resources, with the
        numbers of their events in the batch. A change's data is what ``step`` put in
        ``batch.datas``; an entry's, its resource's data now. ``entries``: the results
        are entries no webhook made, which change only a resource's flag and list of
        events."""
        changed = batch.changed(results)
        for ref, new in changed.items():
            seqs = batch.logged.get(ref)
            if seqs is None:
                seqs = batch.logged[ref] = array("q")
            seqs.extend(new)
        rows = [
            event_row(r, e.data if type(e) is Parsed else None)
            # a batch of entries that no webhook made has no events
            for r, e in zip(results, chain(batch.events, repeat(None)), strict=False)
        ]
        changes = [j for j, r in enumerate(results) if r.outcome in CHANGES]
        if changes:
            conn.execute(self.sql(_RAISE_CURSOR), (len(changes),))
            self._notify(conn)
        extra: list[tuple[Any, Any]] = [(None, None)] * len(rows)
        for k, j in enumerate(changes):
            r = results[j]
            data = batch.datas[r.seq] if not entries else batch.tables[r.lifecycle][r.key].data  # type: ignore[index]
            extra[j] = (len(changes) - 1 - k, _dumps(data).decode() if data is not None else None)
        self._many(
            conn, _INSERT_EVENT, [(*row, *more) for row, more in zip(rows, extra, strict=True)]
        )
        if entries:
            self._many(
                conn,
                _FLAG,
                [
                    (batch.tables[lc][key].flagged, seqs[-1], pack_seqs(seqs), lc, key_text(key))
                    for lc, key in changed
                    if (seqs := batch.logged[(lc, key)])
                ],
            )
            return changed
        self._upsert(
            conn,
            [
                _resource_row(ref, batch.tables[ref[0]][ref[1]], batch.logged[ref])
                for ref in changed
            ],
        )
        return changed

    def _upsert(self, conn: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert or update resource rows (``first_seq`` stays what it was).

        A resource keyed by its meeting and session never changes its ``meeting_id`` and
        ``session_id``: its update leaves them, and their index, alone.
        """
        keyed = [row for row in rows if row[0] in _KEYED_BY_SESSION]
        others = [row for row in rows if row[0] not in _KEYED_BY_SESSION]
        for chosen, ids in ((keyed, ""), (others, _SET_IDS)):
            self._many(conn, _UPSERT + ids, chosen)

    # -- queries -----------------------------------------------------------------------------

    def last_seq(self) -> int:
        with self._transaction() as conn:
            return self._high_water(conn)

    def last_cursor(self) -> int:
        return int(self._query("SELECT last FROM lifecycle_cursor")[0][0])

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM resources")[0][0])

    def status(self, lifecycle: str, key: ResourceKey) -> ResourceStatus | None:
        found = self._select(ResourceQuery(lifecycle), key)
        return found[0] if found else None

    def resources(self, query: ResourceQuery) -> list[ResourceStatus]:
        return self._select(query)

    def _select(self, q: ResourceQuery, key: ResourceKey | None = None) -> list[ResourceStatus]:
        """The resources matching ``q`` (and ``key``), each with its recent history."""
        where, params = _equal(
            ("r.lifecycle", q.lifecycle),
            ("r.meeting_id", q.meeting_id),
            ("r.session_id", q.session_id),
            ("r.state", q.state),
        )
        if key is not None:
            where.append("r.resource_key = ?")
            params.append(key_text(key))
        if q.overdue:
            where.append("r.flagged_at IS NOT NULL")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        page = ""
        if q.limit is not None or q.offset:
            page = " LIMIT ? OFFSET ?"
            params += [self.no_limit if q.limit is None else q.limit, q.offset]
        chosen = (
            f"SELECT r.lifecycle, r.resource_key FROM resources r {clause} "
            f"ORDER BY {_REGISTRY_ORDER}, r.first_seq{page}"
        )
        with self._transaction() as conn:
            rows = conn.execute(
                self.sql(
                    f"SELECT {_aliased('r')} FROM resources r JOIN ({chosen}) AS p ON "
                    "p.lifecycle = r.lifecycle AND p.resource_key = r.resource_key "
                    f"ORDER BY {_REGISTRY_ORDER}, r.first_seq"
                ),
                params,
            ).fetchall()
            kept = _kept(rows)
            return self._statuses(conn, list(kept.items()))

    def _statuses(
        self, conn: Any, kept: Sequence[tuple[ResourceRef, Kept]]
    ) -> list[ResourceStatus]:
        """The statuses of these resources, each with its last ``history_limit`` events."""
        recent = [seqs[-self.history_limit :] for _, (_, seqs) in kept]
        events = {
            int(seq): HistoryEntry(int(seq), w or "", Outcome(outcome), utc(float(t)))
            for seq, w, outcome, t in self._by_seq(
                conn,
                "SELECT seq, webhook_type, outcome, received_at FROM events",
                (seq for seqs in recent for seq in seqs),
            )
        }
        return [
            status_of(*ref, res, tuple(events[seq] for seq in seqs if seq in events))
            for (ref, (res, _)), seqs in zip(kept, recent, strict=True)
        ]

    # -- deadlines ---------------------------------------------------------------------------

    def _lock_sweep(self, conn: Any) -> None:  # noqa: B027 - a hook, empty unless needed
        """Keep other sweepers out until the transaction ends."""

    def _due(
        self,
        conn: Any,
        deadlines: Deadlines,
        now: float,
        lifecycle: str | None,
        unflagged: bool,
    ) -> tuple[
        list[tuple[ResourceRef, Resource, Due]],
        dict[ResourceRef, Kept],
        dict[ResourceRef, float | None],
    ]:
        """The resources due at ``now`` (only those whose visit is not flagged, when
        ``unflagged``), by the index of states and entry times, with what was loaded and
        when the session of each ended (None: it did not, or it is not of one)."""
        fresh = " AND r.flagged_at IS NULL" if unflagged else ""
        cursors = []
        for (name, state), seconds in deadlines.states.items():
            if lifecycle is None or name == lifecycle:
                cursors.append(
                    conn.execute(
                        self.sql(
                            f"SELECT {_aliased('r')}, NULL FROM resources r WHERE "
                            f"r.lifecycle = ? AND r.state = ? AND r.entered_at <= ?{fresh}"
                        ),
                        (name, state, now - seconds),
                    )
                )
        for name, grace in deadlines.grace.items():
            if lifecycle is None or name == lifecycle:
                states = _unfinished(name)
                marks = ", ".join(["?"] * len(states))
                # the unfinished resources first, each joined to its session by the
                # session's ids: not every session that ever ended (a CROSS JOIN keeps
                # SQLite to that order; "|| ''" and "+ 0" keep it off the index of states)
                cursors.append(
                    conn.execute(
                        self.sql(
                            f"SELECT {_aliased('r')}, s.entered_at FROM resources r "
                            "CROSS JOIN resources s WHERE r.lifecycle = ? AND "
                            f"r.state IN ({marks}){fresh} AND s.session_id = r.session_id "
                            "AND s.meeting_id = r.meeting_id AND s.lifecycle = 'session' "
                            "AND s.state || '' = 'ended' AND s.entered_at + 0 <= ?"
                        ),
                        (name, *states, now - grace),
                    )
                )
        kept: dict[ResourceRef, Kept] = {}
        ended: dict[ResourceRef, float | None] = {}
        for cur in cursors:
            for row in cur.fetchall():
                ((ref, found),) = _kept([row[:-1]]).items()
                kept[ref] = found
                if row[-1] is not None or ref not in ended:
                    ended[ref] = None if row[-1] is None else float(row[-1])
        picked = deadlines.pick(((ref, kept[ref][0], ended[ref]) for ref in kept), now)
        return picked, kept, ended

    def overdue(self, deadlines: Deadlines, now: float, lifecycle: str | None) -> list[Overdue]:
        with self._transaction() as conn:
            picked, kept, _ = self._due(conn, deadlines, now, lifecycle, unflagged=False)
            statuses = self._statuses(conn, [(ref, kept[ref]) for ref, _, _ in picked])
        return [
            Overdue(status, due.deadline, due.seconds, utc(due.at), res.overdue)
            for status, (_, res, due) in zip(statuses, picked, strict=True)
        ]

    def sweep(self, deadlines: Deadlines, now: float) -> list[FeedResult]:
        with self._transaction(exclusive=True) as conn:
            self._lock_sweep(conn)
            picked, kept, ended = self._due(conn, deadlines, now, None, unflagged=True)
            if not picked:
                return []
            refs = [ref for ref, _, _ in picked]
            if self.several_writers:  # lock them, read them again, decide again
                kept, seqs, _ = self._load(conn, refs, len(refs), None)
                picked = deadlines.pick(
                    ((ref, kept[ref][0], ended[ref]) for ref in refs if ref in kept), now
                )
            else:  # the only writer already, since the transaction began
                seqs = self._next_seqs(conn, len(refs))
            batch = _SqlBatch(self, nullcontext(), conn, (), kept, seqs, {})
            made: list[FeedResult] = []
            for ref, _, due in picked:
                res = batch.tables[ref[0]][ref[1]]
                if not res.overdue:
                    made.append(overdue_entry(seqs[len(made)], ref, res, due, now))
            self._write(conn, batch, made, entries=True)
            return made

    def append(
        self, ref: ResourceRef, entered: float, make: Callable[[int, Resource], FeedResult]
    ) -> FeedResult | None:
        with self._transaction(exclusive=True) as conn:
            loaded, seqs, _ = self._load(conn, [ref], 1, None)
            if ref not in loaded or loaded[ref][0].entered != entered:
                return None
            batch = _SqlBatch(self, nullcontext(), conn, (), loaded, seqs, {})
            made = make(seqs[0], batch.tables[ref[0]][ref[1]])
            self._write(conn, batch, [made], entries=True)
            return made

    def state_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for lc, state, n in self._query(
            "SELECT lifecycle, state, count(*) FROM resources GROUP BY lifecycle, state"
        ):
            counts.setdefault(lc, {})[state] = int(n)
        return counts

    def anomalies(self, query: AnomalyQuery) -> list[FeedResult]:
        q = query
        where, params = _equal(
            ("lifecycle", q.lifecycle),
            ("outcome", q.outcome.value if q.outcome is not None else None),
            ("meeting_id", q.meeting_id),
            ("session_id", q.session_id),
        )
        where = ["anomaly = 1", "seq > ?", *where]
        params = [q.after, *params]
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq"
        if q.limit is not None:
            sql += " LIMIT ?"
            params.append(q.limit)
        return [result_of(r) for r in self._query(sql, params)]

    def changes(self, query: ChangeQuery) -> list[Change]:
        q = query
        where, params = _equal(
            ("lifecycle", q.lifecycle),
            ("after_state", q.state),
            ("meeting_id", q.meeting_id),
            ("session_id", q.session_id),
        )
        where = ["cursor > ?", *where]
        params = [q.after, *params]
        sql = f"SELECT {_CHANGE_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY cursor"
        if q.limit is not None:
            sql += " LIMIT ?"
            params.append(q.limit)
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT value FROM lifecycle_meta WHERE name = 'pruned_cursor'"
            ).fetchone()
            gone = int(found[0]) if found else 0
            if q.after < gone:
                raise CursorGone(
                    f"changes after cursor {q.after} were pruned; resume after {gone}", gone
                )
            rows = conn.execute(self.sql(sql), params).fetchall()
        return [_change_of(row) for row in rows]

    # -- forwarding: each endpoint's cursor, lease and failed deliveries --------------------

    def lease(self, endpoint: str, holder: str, now: float, seconds: float) -> int | None:
        """Take (or renew) ``endpoint``'s lease for ``holder`` until ``now + seconds``, if
        no one else holds it; its cursor then, None when another holder does."""
        with self._transaction(exclusive=True) as conn:
            conn.execute(
                self.sql(
                    "INSERT INTO lifecycle_forwards (endpoint, cursor) VALUES (?, 0) "
                    "ON CONFLICT (endpoint) DO NOTHING"
                ),
                (endpoint,),
            )
            cur = conn.execute(
                self.sql(
                    "UPDATE lifecycle_forwards SET holder = ?, lease_until = ? WHERE endpoint = ? "
                    "AND (holder IS NULL OR holder = ? OR lease_until < ?)"
                ),
                (holder, now + seconds, endpoint, holder, now),
            )
            if cur.rowcount != 1:
                return None
            (cursor,) = conn.execute(
                self.sql("SELECT cursor FROM lifecycle_forwards WHERE endpoint = ?"), (endpoint,)
            ).fetchone()
            return int(cursor)

    def forwarded(
        self,
        endpoint: str,
        holder: str,
        cursor: int,
        dead: Sequence[Delivery],
        now: float,
        seconds: float,
    ) -> bool:
        """Record that ``endpoint`` has had every change up to ``cursor`` (``dead``: those
        given up on) and renew ``holder``'s lease; False, writing nothing, when ``holder``
        no longer holds it."""
        with self._transaction(exclusive=True) as conn:
            cur = conn.execute(
                self.sql(
                    "UPDATE lifecycle_forwards SET cursor = ?, lease_until = ? "
                    "WHERE endpoint = ? AND holder = ?"
                ),
                (cursor, now + seconds, endpoint, holder),
            )
            if cur.rowcount != 1:
                return False
            self._many(conn, _DELIVERY_UPSERT, [tuple(d) for d in dead])
            return True

    def deliveries(
        self,
        status: str | None,
        endpoint: str | None,
        limit: int | None,
        delivery_id: str | None = None,
    ) -> list[Delivery]:
        """The recorded deliveries (``status``: ``failed``, ``pending``, ``delivered``) in
        the order of their endpoint and cursor."""
        where, params = _equal(("status", status), ("endpoint", endpoint), ("id", delivery_id))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = (
            f"SELECT {_DELIVERY_COLUMNS} FROM lifecycle_deliveries{clause} "
            "ORDER BY endpoint, cursor"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_delivery_of(row) for row in self._query(sql, params)]

    def delivered(self, delivery: Delivery) -> None:
        """Store what became of one recorded delivery (a retry asked for, its attempt)."""
        with self._transaction(exclusive=True) as conn:
            self._many(conn, _DELIVERY_UPSERT, [tuple(delivery)])

    def log(self, after: int, limit: int | None) -> list[FeedResult]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq"
        params: list[Any] = [after]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [result_of(r) for r in self._query(sql, params)]

    def resource_log(
        self, lifecycle: str, key: ResourceKey, at: int | datetime
    ) -> tuple[Snapshot | None, list[FeedResult]]:
        column, bound = ("seq", at) if isinstance(at, int) else ("received_at", at.timestamp())
        with self._transaction() as conn:
            row = conn.execute(
                self.sql(
                    "SELECT base, seqs FROM resources WHERE lifecycle = ? AND resource_key = ?"
                ),
                (lifecycle, key_text(key)),
            ).fetchone()
            seqs = unpack_seqs(row[1]) if row else array("q")
            rows = self._by_seq(
                conn,
                f"SELECT {EVENT_COLUMNS} FROM events",
                (s for s in seqs if column != "seq" or s <= bound),
                f" AND {column} <= ?",
                [bound],
            )
        base = _snapshot_of(row[0]) if row and row[0] else None
        if base is not None and (base.seq if column == "seq" else base.resource.entered) > bound:
            raise LogPruned(f"{lifecycle} {'/'.join(key)}: its log before {at} was pruned")
        return base, [result_of(r) for r in rows]

    # -- rebuild and retention ---------------------------------------------------------------

    @contextmanager
    def maintenance(self) -> Iterator[_SqlMaintenance]:
        try:
            with self._transaction(exclusive=True) as conn:
                self._lock_all(conn)
                yield _SqlMaintenance(self, conn)
        finally:
            self._forget()

    def prune(self, before: float) -> int:
        finals = [(n, s) for n, lc in LIFECYCLES.items() for s in sorted(lc.final_states)]
        values = ", ".join(["(?, ?)"] * len(finals))
        dropped = 0
        try:
            with self._transaction(exclusive=True) as conn:
                rows = conn.execute(
                    self.sql(
                        "SELECT lifecycle, resource_key, state, entered_at, data, cycle_id, "
                        "last_seq, seqs FROM resources r WHERE entered_at < ? AND "
                        "(lifecycle, state) IN "
                        f"(SELECT column1, column2 FROM (VALUES {values}) AS final) AND "
                        "length(seqs) > 0"
                    ),
                    [before, *[v for pair in finals for v in pair]],
                ).fetchall()
                if rows:  # sequence numbers are never handed out again, even once pruned
                    conn.execute(
                        self.sql(
                            "INSERT INTO lifecycle_meta (name, value) VALUES ('pruned_seq', ?) "
                            "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                        ),
                        (str(self._high_water(conn)),),
                    )
                gone = 0  # the last cursor of a change dropped
                for lc, key, state, entered, data, cycle_id, last_seq, seqs in rows:
                    base = Snapshot(_resource_of(state, entered, data, cycle_id), int(last_seq))
                    logged = list(unpack_seqs(seqs))
                    for i in range(0, len(logged), 500):
                        chunk = logged[i : i + 500]
                        (top,) = conn.execute(
                            self.sql(
                                "SELECT max(cursor) FROM events WHERE seq IN "
                                f"({', '.join(['?'] * len(chunk))})"
                            ),
                            chunk,
                        ).fetchone()
                        gone = max(gone, int(top or 0))
                        cur = conn.execute(
                            self.sql(
                                f"DELETE FROM events WHERE seq IN ({', '.join(['?'] * len(chunk))})"
                            ),
                            chunk,
                        )
                        dropped += max(cur.rowcount, 0)
                    conn.execute(
                        self.sql(
                            "UPDATE resources SET base = ?, seqs = ? "
                            "WHERE lifecycle = ? AND resource_key = ?"
                        ),
                        (_snapshot_text(base), b"", lc, key),
                    )
                if gone:  # a feed resuming before it would miss what was dropped
                    conn.execute(
                        self.sql(
                            "INSERT INTO lifecycle_meta (name, value) VALUES "
                            "('pruned_cursor', ?) ON CONFLICT (name) DO UPDATE SET value = "
                            "excluded.value"
                        ),
                        (str(gone),),
                    )
        finally:
            self._forget()
        return dropped


_LOADED = (
    "lifecycle",
    "resource_key",
    "state",
    "entered_at",
    "data",
    "cycle_id",
    "flagged_at",
    "seqs",
)
LOAD = f"SELECT {', '.join(_LOADED)} FROM resources"


def _aliased(table: str) -> str:
    """The columns of :data:`LOAD`, of the table called ``table`` in a join."""
    return ", ".join(f"{table}.{column}" for column in _LOADED)


def _unfinished(lifecycle: str) -> list[str]:
    """The states of ``lifecycle`` a resource is in until it is finished: neither idle
    (it never began) nor final."""
    lc = LIFECYCLES[lifecycle]
    return [s for s in lc.definition.states[1:] if s not in lc.final_states]


RECENT = "SELECT seq, payload, received_at FROM events"

Kept = tuple[Resource, "array[int]"]
"""A stored resource and the numbers of its logged events."""


def _kept(rows: Iterable[Sequence[Any]]) -> dict[ResourceRef, Kept]:
    """The resources of :data:`LOAD` rows, with their events' numbers."""
    return {
        (lc, tuple(orjson.loads(key))): (
            _resource_of(state, entered, data, cycle, flagged),
            unpack_seqs(s),
        )
        for lc, key, state, entered, data, cycle, flagged, s in rows
    }


class _SqlBatch:
    """One feeding transaction on a SQL store: what it loaded, and its end."""

    history_cap = 0  # history is read from the log

    def __init__(
        self,
        store: SqlStore,
        transaction: AbstractContextManager[Any],
        conn: Any,
        events: Sequence[Parsed | Rejected],
        kept: dict[ResourceRef, Kept],
        seqs: list[int],
        recent: Recent,
    ) -> None:
        self.store = store
        self.transaction = transaction
        self.conn = conn
        self.events = events
        self.tables: dict[str, dict[ResourceKey, Resource]] = {n: {} for n in LIFECYCLES}
        self.logged: dict[ResourceRef, array[int]] = {}  # each resource's logged events
        for (name, key), (res, logged) in kept.items():
            self.tables[name][key] = res
            self.logged[(name, key)] = logged
        self.seqs = seqs
        self.recent = recent
        self.datas: dict[int, Any] = {}  # by seq, each change's data after it (step's)
        self.data_slots = ALL_SLOTS

    def seen(self, lifecycle: str, key: ResourceKey, digest: bytes, since: float) -> bool:
        return any(d == digest and t >= since for d, t in self.recent.get((lifecycle, key), ()))

    def changed(self, results: Sequence[FeedResult]) -> dict[ResourceRef, list[int]]:
        """The resources ``results`` touched, with the numbers of their events."""
        seqs: dict[ResourceRef, list[int]] = {}
        for r in results:
            if r.lifecycle is not None and r.key is not None:
                seqs.setdefault((r.lifecycle, r.key), []).append(r.seq)
        return seqs

    def commit(
        self,
        results: Sequence[FeedResult],
        digests: Sequence[bytes | None] | None,
    ) -> None:
        try:
            self.store._write(self.conn, self, results)
        except BaseException as e:
            self.transaction.__exit__(type(e), e, e.__traceback__)  # may raise StoreUnavailable
            raise
        self.transaction.__exit__(None, None, None)

    def abort(self) -> None:
        exc = sys.exc_info()[1] or _RollbackError()  # what the engine is raising, if anything
        self.transaction.__exit__(type(exc), exc, exc.__traceback__)


class _RollbackError(Exception):
    """Rolls a batch back when no exception is under way."""


class _SqlMaintenance:
    """Rebuild's view of a SQL store, inside one exclusive transaction."""

    def __init__(self, store: SqlStore, conn: Any) -> None:
        self.store = store
        self.conn = conn

    def resources(self) -> dict[ResourceRef, Stored]:
        return {
            (lc, tuple(orjson.loads(k))): Stored(
                _resource_of(state, entered, data, cycle_id, flagged),
                _snapshot_of(base) if base else None,
            )
            for lc, k, state, entered, data, cycle_id, flagged, base in self.conn.execute(
                "SELECT lifecycle, resource_key, state, entered_at, data, cycle_id, flagged_at, "
                "base FROM resources"
            ).fetchall()
        }

    def events(self) -> Iterator[FeedResult]:
        cursor = self.conn.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")
        while batch := cursor.fetchmany(1000):
            for row in batch:
                yield result_of(row)

    def replace(
        self,
        changed: Mapping[ResourceRef, tuple[Resource, Sequence[int]]],
        removed: Collection[ResourceRef],
    ) -> None:
        store = self.store
        store._many(
            self.conn,
            "DELETE FROM resources WHERE lifecycle = ? AND resource_key = ?",
            [(lc, key_text(key)) for lc, key in removed],
        )
        store._upsert(
            self.conn,
            [_resource_row(ref, res, array("q", seqs)) for ref, (res, seqs) in changed.items()],
        )
