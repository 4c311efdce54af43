"""The PostgreSQL store: several receivers, on any hosts, sharing one state (psycopg 3).

A feeding transaction takes transaction-scoped advisory locks on the resources it
touches (and on the sessions its start events read), in one order, so that concurrent
batches never interleave on a resource (a sweep takes them too, after a lock that lets
one receiver sweep at a time); sequence numbers come from a sequence. A batch
runs in pipeline mode: ``BEGIN``, the locks, the sequence numbers and the loads go in
one round trip, the log rows, the resource upserts and ``COMMIT`` in a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from .._records import ResourceRef
from ..errors import StoreUnavailable
from ._sql import LOAD, Kept, Recent, SqlStore, _kept, key_text

try:
    import psycopg
    from psycopg.pq import TransactionStatus
except ImportError:  # pragma: no cover - an install without the extra
    psycopg = None  # type: ignore[assignment]

__all__ = ["DROP", "PostgresStore"]

_SCHEMA_LOCK = 0x6C6966656379636C  # the advisory lock id of migrations
_SWEEP_LOCK = _SCHEMA_LOCK + 1  # and of sweeps
_LOCKS = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS locks"
)
# the SQLSTATE classes that refuse the values given: cardinality violation, data
# exception, integrity constraint violation, program limit exceeded (an index row too
# large); every other one (connection exception, insufficient resources, operator
# intervention, ...) may pass
_REFUSALS = frozenset({"21", "22", "23", "54"})
_SEQS = "SELECT nextval('lifecycle_events_seq') FROM generate_series(1, %s)"
_TABLES = (
    "events",
    "resources",
    "lifecycle_meta",
    "lifecycle_cursor",
    "lifecycle_forwards",
    "lifecycle_deliveries",
)
DROP = (
    f"DROP TABLE IF EXISTS {', '.join(_TABLES)} CASCADE",
    "DROP SEQUENCE IF EXISTS lifecycle_events_seq",
)
"""The statements that remove all this store creates: the tests and the benchmarks start
from an empty database with them."""


def _lock_id(lifecycle: str, key: str) -> int:
    digest = hashlib.blake2b(f"{lifecycle}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresStore(SqlStore):
    """A store in a PostgreSQL database, ``postgresql://user:password@host:port/dbname``."""

    several_writers = True
    blob = "BYTEA"
    real = "DOUBLE PRECISION"
    bigint = "BIGINT"
    no_limit = None

    def __init__(self, url: str, *, history_limit: int = 100, read_only: bool = False) -> None:
        if psycopg is None:  # pragma: no cover - an install without the extra
            raise StoreUnavailable(
                "PostgreSQL needs psycopg, the postgresql extra: pip install -e '.[postgresql]' "
                "in lifecycle's checkout"
            )
        self.errors = (psycopg.Error,)
        self.read_only = read_only
        super().__init__(url, history_limit=history_limit)

    @classmethod
    def from_url(
        cls, url: str, *, history_limit: int = 100, read_only: bool = False
    ) -> PostgresStore:
        """``postgresql://...`` or ``postgres://...``; ``read_only``: every transaction
        read-only (``default_transaction_read_only``), the schema checked, not migrated."""
        return cls(url, history_limit=history_limit, read_only=read_only)

    def _connect(self) -> Any:
        options = "-c default_transaction_read_only=on" if self.read_only else ""
        return psycopg.connect(self.url, autocommit=True, connect_timeout=10, options=options)

    @contextmanager
    def _begin(self, conn: Any, exclusive: bool, pipeline: bool) -> Iterator[None]:
        if not pipeline:
            with conn.transaction():
                yield
            return
        # One pipeline on the autocommit connection, with BEGIN and COMMIT as statements:
        # psycopg's transaction() inside a pipeline syncs on entering and leaving it (five
        # waits for a batch instead of two).
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                yield
                conn.execute("COMMIT")
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                with suppress(psycopg.Error):  # when the connection is gone, so is the work
                    conn.execute("ROLLBACK")
            raise

    def _refused(self, error: Exception) -> bool:
        # psycopg refuses some values itself (NUL in text), a DataError without a SQLSTATE
        sqlstate = getattr(error, "sqlstate", None) or ""
        return sqlstate[:2] in _REFUSALS or isinstance(error, psycopg.DataError)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(self.sql(sql), rows)

    def _lock_schema(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))

    def _notify(self, conn: Any) -> None:
        conn.execute("NOTIFY lifecycle_changes")

    def _lock_sweep(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SWEEP_LOCK,))

    def _create_sequence(self, conn: Any) -> None:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS lifecycle_events_seq")

    def _lock_all(self, conn: Any) -> None:
        conn.execute("LOCK TABLE events, resources IN EXCLUSIVE MODE")

    def _next_seqs(self, conn: Any, n: int) -> list[int]:
        return [int(r[0]) for r in conn.execute(_SEQS, (n,)).fetchall()]

    def _high_water(self, conn: Any) -> int:
        (top,) = conn.execute(
            "SELECT greatest(coalesce((SELECT max(seq) FROM events), 0), "
            "coalesce((SELECT CAST(value AS BIGINT) FROM lifecycle_meta "
            "WHERE name = 'pruned_seq'), 0))"
        ).fetchone()
        return int(top)

    def _load(
        self, conn: Any, wanted: Collection[ResourceRef], size: int, since: float | None
    ) -> tuple[dict[ResourceRef, Kept], list[int], Recent]:
        # every statement is sent before the first answer is read: one round trip (and a
        # second for the recent payloads, with a redelivery window)
        if wanted:
            conn.execute(_LOCKS, (sorted({_lock_id(lc, key_text(k)) for lc, k in wanted}),))
        seqs = conn.execute(_SEQS, (size,))
        loads = self._send(conn, LOAD, wanted)
        kept = _kept(row for cur in loads for row in cur.fetchall())
        recent = {} if since is None else self._recent(conn, kept, since)
        return kept, [int(r[0]) for r in seqs.fetchall()], recent
