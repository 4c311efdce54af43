"""Bounded numbers of a request (a query parameter, a path segment, a header), read one
way for the API and the pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import InvalidArgument

__all__ = ["MAX_INT", "int_arg", "seconds_arg"]

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
