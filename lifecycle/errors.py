"""Every public exception of lifecycle, under one root.

Each also derives from the builtin it resembles, so that callers may catch
:class:`LifecycleError` (anything this library raised on purpose) or the builtin alike.
This module imports nothing of the package: every other module may raise from it.

.. versionadded:: 0.2
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "CursorGone",
    "DefinitionError",
    "InvalidArgument",
    "InvalidEvent",
    "LifecycleError",
    "LifecycleViolation",
    "LogPruned",
    "ProviderError",
    "StoreRefused",
    "StoreUnavailable",
]


class LifecycleError(Exception):
    """The root of every exception lifecycle raises on purpose."""


class InvalidEvent(LifecycleError, ValueError):  # noqa: N818 - the name the API promises
    """A payload that is not a valid webhook; the message names the problem.

    Raised by :func:`~lifecycle.parse_event`; :meth:`Engine.feed` never raises it but
    records the payload as ``malformed`` with the same message as its reason.
    """


class DefinitionError(LifecycleError, ValueError):
    """A lifecycle definition, or an event class, that breaks a structural rule.

    Raised when the definition is compiled (at import for the shipped ones).
    """


class InvalidArgument(LifecycleError, ValueError):  # noqa: N818 - as Hypothesis names it
    """An argument that makes no sense: an unknown lifecycle, a key of the wrong shape, a
    negative page size, a database URL of no known kind."""


class LifecycleViolation(LifecycleError, ValueError):  # noqa: N818 - the domain's word
    """Raised by a strict engine for an event it would not simply apply.

    ``result`` is the :class:`~lifecycle.FeedResult` the event would have had; nothing
    of it was recorded.
    """

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


class StoreUnavailable(LifecycleError, OSError):  # noqa: N818 - the condition users meet
    """The database cannot be reached or failed during the call.

    Its transaction was rolled back, so feeding the same payload again once the database
    is back is safe (only a connection lost during the commit itself leaves it unknown
    whether the event was logged: then it may be logged twice, the second time as a
    duplicate).
    """


class StoreRefused(LifecycleError, ValueError):  # noqa: N818 - the condition users meet
    """The database refused the values of a call (one it cannot hold: too long for an
    index, out of a column's range): the same call fails again, however often retried.

    Feeding never raises it: a payload the database refuses is stored as ``malformed``
    with the refusal as its reason (see docs/classification.md).

    .. versionadded:: 0.2
    """


class LogPruned(LifecycleError, LookupError):  # noqa: N818 - the condition users meet
    """The part of the event log a question needs is no longer kept: it was pruned, or it
    left the memory store's bounded log."""


class CursorGone(LogPruned):
    """A change feed was asked to resume from a cursor older than what it keeps: changes
    after it were pruned (or left the memory store's bounded log). ``oldest`` is the
    oldest cursor to resume from now (every change after it is kept).

    .. versionadded:: 0.3
    """

    def __init__(self, message: str, oldest: int) -> None:
        super().__init__(message)
        self.oldest = oldest


class ConfigError(LifecycleError, ValueError):
    """A server setting that cannot work; the message says which and why."""


class ProviderError(LifecycleError, OSError):
    """The provider's API did not answer usefully: it refused our credentials (401/403),
    or failed after every retry (5xx, 429, network errors).

    Raised by :class:`lifecycle.reconcile.VideoSDK`. A resource the provider does not know
    (402, 404) is not an error: it is answered as "not found". ``status`` is the last HTTP
    status (None after a network error).

    .. versionadded:: 0.3
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
