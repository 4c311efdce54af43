"""What a request carries (a bounded number, a resource's key, a bounded body), read
one way for the API and the pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request

from .._lifecycles import Lifecycle
from .._records import ResourceKey
from ..errors import InvalidArgument

__all__ = ["MAX_INT", "int_arg", "key_arg", "read_body", "seconds_arg"]

MAX_INT = 2**63 - 1
"""The largest whole number a database integer holds."""

N = TypeVar("N", int, float)


def int_arg(name: str, raw: str | None, default: int, top: int = MAX_INT) -> int:
    """``raw`` as a whole number from 0 to ``top``; ``default`` when it is absent."""
    return _bounded(name, raw, default, top, int, "an integer", str(top))


def seconds_arg(name: str, raw: str | None, top: float) -> float:
    """``raw`` as seconds from 0 to ``top``; 0 when it is absent."""
    return _bounded(name, raw, 0.0, top, float, "a number of seconds", f"{top:g} seconds")


def _bounded(
    name: str, raw: str | None, default: N, top: N, kind: Callable[[str], N], what: str, most: str
) -> N:
    """``raw`` read by ``kind``, from 0 to ``top``; :class:`InvalidArgument` (400) naming
    ``name`` otherwise."""
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be {what}, not {raw!r}") from None
    if not 0 <= value <= top:
        raise InvalidArgument(f"{name} must be between 0 and {most}")
    return value


def key_arg(lifecycle: Lifecycle, raw: str) -> ResourceKey:
    """A path's ``{key...}`` as the key of a ``lifecycle`` resource; 404 when it has
    not as many values as the lifecycle's key fields."""
    key = tuple(raw.split("/"))
    fields = lifecycle.definition.key_fields
    if len(key) != len(fields):
        raise HTTPException(
            404,
            f"no such path: {lifecycle.name} is keyed by {'/'.join(fields)}, "
            f"{len(fields)} values, not {len(key)}",
        )
    return key


async def read_body(request: Request, limit: int, too_large: Exception) -> bytes:
    """The raw body, at most ``limit`` bytes: ``too_large`` is raised beyond, read or
    announced by ``Content-Length``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
