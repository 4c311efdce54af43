"""Whole-number arguments of a request (a query parameter, a path segment, a header),
read one way for the API and the pages."""

from __future__ import annotations

from ..errors import InvalidArgument

__all__ = ["MAX_INT", "int_arg"]

MAX_INT = 2**63 - 1
"""The largest whole number a database integer holds."""


def int_arg(name: str, raw: str | None, default: int, top: int = MAX_INT) -> int:
    """``raw`` as a whole number from 0 to ``top``; ``default`` when it is absent;
    :class:`InvalidArgument` (400) naming ``name`` otherwise."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, not {raw!r}") from None
    if not 0 <= value <= top:
        raise InvalidArgument(f"{name} must be between 0 and {top}")
    return value
