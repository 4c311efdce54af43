"""Stores: where an engine keeps its resources and event log.

:func:`open_store` picks the backend of a URL by its scheme from :data:`BACKENDS`; a
backend is one module with a class that implements :class:`Store` and has a
``from_url(url, **options)`` constructor. Backends are imported when first used, so
that PostgreSQL's driver is loaded only for PostgreSQL.

.. versionadded:: 0.2
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidArgument
from ._base import AnomalyQuery, Batch, ChangeQuery, Maintenance, ResourceQuery, Store, Stored
from .memory import MemoryStore

__all__ = [
    "BACKENDS",
    "AnomalyQuery",
    "Batch",
    "ChangeQuery",
    "Maintenance",
    "MemoryStore",
    "ResourceQuery",
    "Store",
    "Stored",
    "open_store",
]

BACKENDS: dict[str, str] = {
    "memory": "lifecycle.stores.memory:MemoryStore",
    "sqlite": "lifecycle.stores.sqlite:SqliteStore",
    "postgresql": "lifecycle.stores.postgres:PostgresStore",
    "postgres": "lifecycle.stores.postgres:PostgresStore",
}
"""URL scheme -> ``module:class`` of its backend. A URL without a scheme is a SQLite path."""


def open_store(url: str | os.PathLike[str], *, read_only: bool = False, **options: Any) -> Store:
    """The store at ``url``, created or migrated as needed.

    ``options`` go to the backend's ``from_url`` (``history_limit`` for every one,
    ``synchronous`` for SQLite). ``read_only`` opens an existing database for queries
    only, without creating or migrating it, on a backend whose ``from_url`` takes
    ``read_only`` (SQLite: a missing file raises ``StoreUnavailable``); the others open
    as usual. Raises :class:`~lifecycle.errors.InvalidArgument` for a URL of no known
    scheme, :class:`~lifecycle.errors.StoreUnavailable` when the database cannot be
    opened.
    """
    text = os.fspath(url)
    scheme = urlsplit(text).scheme if "://" in text else "sqlite"
    target = BACKENDS.get(scheme)
    if target is None:
        raise InvalidArgument(
            f"unsupported database URL {text!r}: use sqlite:///path.db, a path, "
            f"postgresql://user@host/dbname or memory:// (known schemes: {', '.join(BACKENDS)})"
        )
    module, _, name = target.partition(":")
    backend: Any = getattr(importlib.import_module(module), name)
    if read_only and "read_only" in inspect.signature(backend.from_url).parameters:
        options["read_only"] = True
    store: Store = backend.from_url(text, **options)
    return store
