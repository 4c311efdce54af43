"""The SQLite store: the embedded default of ``Engine.open``.

One file in WAL mode; ``BEGIN IMMEDIATE`` makes each feeding transaction the only
writer, so sequence numbers come from the log's own high-water mark. The writer keeps
the resources it loaded or wrote between transactions, for as long as no other
connection has committed to the file (``PRAGMA data_version``): a receiver that is the
file's only writer reads each resource back from the database once.

Opened ``read_only``, it reads an existing file and never writes it, in a folder it may
not write to as well.
"""

from __future__ import annotations

import os
import sqlite3
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .._records import FeedResult, ResourceRef
from ..errors import InvalidArgument, StoreUnavailable
from ._sql import Kept, SqlStore, _SqlBatch

__all__ = ["SqliteStore", "sqlite_path"]

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# the primary result codes that refuse the values given: TOOBIG, CONSTRAINT, MISMATCH,
# RANGE; every other one (BUSY, FULL, IOERR, READONLY, CANTOPEN ...) may pass
_REFUSALS = frozenset({18, 19, 20, 25})


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL or path; ``""`` for an in-memory one, None if not SQLite."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in ("", "sqlite"):
        return None
    path = unquote(urlsplit(url).path[1:]) if scheme == "sqlite" else url
    return "" if path == ":memory:" else path


def _open(uri: str) -> sqlite3.Connection:
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def _identity(path: str) -> tuple[int, int] | None:
    """The device and inode of the file at ``path``; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class SqliteStore(SqlStore):
    """A store in one SQLite file (``path``; ``""`` for an in-memory database).

    ``synchronous`` is SQLite's pragma (WAL and ``NORMAL``: a power cut may lose the
    last commits, never corrupt the file). ``cache_size`` caps the resources the writer
    keeps between transactions. ``read_only`` opens an existing file, of this release's
    schema, for queries only (:class:`StoreUnavailable` when it is missing; a write fails
    with it too); it does not apply to an in-memory database.
    """

    no_limit = -1
    errors = (sqlite3.Error,)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        url: str | None = None,
        history_limit: int = 100,
        synchronous: str = "NORMAL",
        cache_size: int = 50_000,
        read_only: bool = False,
    ) -> None:
        self.path = str(path)
        if synchronous.upper() not in _SYNCHRONOUS:
            raise InvalidArgument(
                f"synchronous must be {', '.join(_SYNCHRONOUS[:-1])} or "
                f"{_SYNCHRONOUS[-1]}, not {synchronous!r}"
            )
        if self.path and not Path(self.path).parent.exists():
            raise StoreUnavailable(
                f"cannot open {url or self.path}: folder {Path(self.path).parent} does not exist"
            )
        self.read_only = read_only and bool(self.path)
        if self.read_only and not Path(self.path).is_file():
            raise StoreUnavailable(
                f"cannot open {url or self.path}: database {self.path} does not exist"
            )
        self.synchronous = synchronous.upper()
        self.cache_size = cache_size
        self._cache: OrderedDict[ResourceRef, Kept | None] = OrderedDict()
        self._version: int | None = None  # the data_version the cache is valid for
        self._top: int | None = None  # the last seq, while the cache is valid
        self._file: tuple[int, int] | None = None  # the open file's device and inode
        super().__init__(url or f"sqlite:///{self.path}", history_limit=history_limit)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        history_limit: int = 100,
        synchronous: str = "NORMAL",
        read_only: bool = False,
    ) -> SqliteStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://`` (in memory)
        or a bare path."""
        path = sqlite_path(url)
        if path is None:
            raise InvalidArgument(f"not a SQLite URL: {url!r}")
        return cls(
            path, url=url, history_limit=history_limit, synchronous=synchronous, read_only=read_only
        )

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            conn = self._connect_read_only()
        elif not self.path:
            conn = _open(":memory:")
        else:
            # the first connection may create the file; a later one (after a failure)
            # must not: a database deleted under the store stays missing, not empty
            created = self._file is not None
            conn = _open(f"{Path(self.path).resolve().as_uri()}?mode={'rw' if created else 'rwc'}")
            conn.execute("PRAGMA journal_mode = WAL")
        if not self.read_only:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        if self.path:
            self._file = _identity(self.path)
        return conn

    def _ping(self) -> None:
        if not self.read_only:
            super()._ping()
        else:
            self._query("SELECT 1 FROM lifecycle_meta")

    def _check_file(self) -> None:
        """Raise unless the path still names the file the connection has open (it was
        deleted, or replaced by another, say restored from a backup)."""
        if self.path and _identity(self.path) != self._file:
            raise sqlite3.OperationalError(
                f"{self.path} was deleted or replaced while open: the open connection "
                "writes where no one will read"
            )

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that cannot write. Where the file and its folder are writable, an
        ordinary one with ``query_only`` (it removes its WAL files on close); elsewhere
        ``mode=ro``, which reads a WAL file through its ``-shm``; and when there is no
        ``-shm`` and none can be made (no writer has the file open, nor can open it: no
        one may write in the folder) ``immutable=1``, which reads the file as it is."""
        path = Path(self.path).resolve()
        if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
            conn = _open(f"{path.as_uri()}?mode=rw")
            conn.execute("PRAGMA query_only = ON")
        else:
            conn = _open(f"{path.as_uri()}?mode=ro")
            try:
                conn.execute("PRAGMA schema_version")
            except sqlite3.OperationalError as e:
                conn.close()
                no_shm = e.sqlite_errorcode == sqlite3.SQLITE_READONLY_DIRECTORY
                if not no_shm or Path(f"{path}-wal").exists():
                    raise
                conn = _open(f"{path.as_uri()}?immutable=1")
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _has_table(self, conn: Any, name: str) -> bool:
        return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone())

    @contextmanager
    def _begin(self, conn: Any, exclusive: bool, pipeline: bool) -> Iterator[None]:
        self._check_file()
        conn.execute("BEGIN IMMEDIATE" if exclusive and not self.read_only else "BEGIN")
        try:
            yield
            if exclusive:
                self._check_file()  # nothing is acknowledged that went to a deleted file
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _refused(self, error: Exception) -> bool:
        code = getattr(error, "sqlite_errorcode", None)
        return isinstance(error, sqlite3.DataError | sqlite3.IntegrityError) or (
            code is not None and code & 0xFF in _REFUSALS
        )

    def _next_seqs(self, conn: Any, n: int) -> list[int]:
        # BEGIN IMMEDIATE holds the write lock: no one else numbers events meanwhile
        top = self._top if self._top is not None else self._high_water(conn)
        self._top = top
        return list(range(top + 1, top + 1 + n))

    def _high_water(self, conn: Any) -> int:
        (top,) = conn.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM events), 0), "
            "coalesce((SELECT CAST(value AS INTEGER) FROM lifecycle_meta "
            "WHERE name = 'pruned_seq'), 0))"
        ).fetchone()
        return int(top)

    # -- the writer's cache --------------------------------------------------------------

    def _forget(self) -> None:
        self._cache.clear()
        self._version = self._top = None

    def _load_resources(
        self, conn: Any, wanted: Collection[ResourceRef]
    ) -> dict[ResourceRef, Kept]:
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        if version != self._version:  # another connection wrote: what we kept may be stale
            self._forget()
            self._version = version
        cache = self._cache
        missing = [ref for ref in wanted if ref not in cache]
        if missing:
            found = super()._load_resources(conn, missing)
            for ref in missing:
                cache[ref] = found.get(ref)
        return {ref: kept for ref in wanted if (kept := cache[ref]) is not None}

    def _write(
        self,
        conn: Any,
        batch: _SqlBatch,
        results: Sequence[FeedResult],
        entries: bool = False,
    ) -> dict[ResourceRef, list[int]]:
        changed = super()._write(conn, batch, results, entries)
        if results:  # the last number used (a strict batch may stop early)
            self._top = results[-1].seq
        cache = self._cache
        for ref in changed:
            cache[ref] = (batch.tables[ref[0]][ref[1]], batch.logged[ref])
            cache.move_to_end(ref)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return changed
