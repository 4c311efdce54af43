"""How long a resource may stay in each in-between state: the deadlines, as data.

A deadline is named ``"<lifecycle>.<state>"`` (how long a resource may stay in that
state) or ``"<lifecycle>.session_end"`` (how long a resource of a session-scoped
lifecycle may stay unfinished once its meeting session has ended). :data:`DEFAULTS`
holds the shipped values, in seconds; :class:`Deadlines` merges a user's over them
(``None`` switches one off) and answers when a resource is due.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ._lifecycles import LIFECYCLES
from ._records import Resource, ResourceRef
from .errors import InvalidArgument

__all__ = ["DEFAULTS", "SESSION_END", "Deadlines", "Due", "parse_duration"]

SESSION_END = "session_end"

_MINUTE, _HOUR = 60.0, 3600.0
_RECORDER = {"starting": 2 * _MINUTE, "stopping": 15 * _MINUTE}
_RECORDERS = ("recording", "participant-recording", "participant-track-recording", "livestream")
DEFAULTS: Mapping[str, float] = {
    **{f"{name}.{state}": seconds for name in _RECORDERS for state, seconds in _RECORDER.items()},
    "hls.starting": 2 * _MINUTE,
    "hls.started": 3 * _MINUTE,  # waiting for hls-playable
    "hls.stopping": 15 * _MINUTE,
    "ai-deployment-session.starting": 2 * _MINUTE,
    "ai-deployment-session.stopping": 5 * _MINUTE,
    "session.started": 24 * _HOUR,
    **{
        f"{name}.{SESSION_END}": 2 * _MINUTE if name == "participant" else 15 * _MINUTE
        for name, lc in LIFECYCLES.items()
        if lc.definition.session_scoped
    },
}
"""The shipped deadlines in seconds. Running states (``started``, ``joined``,
``playable``, a transcription's ``started``) have none of their own; every resource of a
meeting session is due at most ``session_end`` after the session ended."""

_UNITS = {"": 1.0, "s": 1.0, "m": _MINUTE, "h": _HOUR, "d": 24 * _HOUR}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*")


def parse_duration(value: object) -> float | None:
    """Seconds from a number, or text such as ``"90"``, ``"90s"``, ``"30m"``, ``"2h"``,
    ``"1d"``; None for None, ``"off"`` or ``"none"``. Raises :class:`InvalidArgument`
    for anything else, or a duration that is not positive."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none")):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidArgument(f"a deadline is a number of seconds or text like 30m, not {value!r}")
    if isinstance(value, str):
        found = _DURATION.fullmatch(value)
        if found is None:
            raise InvalidArgument(
                f"{value!r} is not a duration: give seconds, or a number with s, m, h or d "
                "(90s, 30m, 2h, 1d), or off"
            )
        value = float(found[1]) * _UNITS[found[2]]
    seconds = float(value)
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidArgument(f"a deadline must be a positive number of seconds, not {value!r}")
    return seconds


def _valid_names() -> dict[str, str]:
    """Every name a deadline may have, and what it is about."""
    names = {}
    for name, lc in LIFECYCLES.items():
        for state in lc.definition.states[1:]:
            if state not in lc.final_states:
                names[f"{name}.{state}"] = f"{name} in {state}"
        if lc.definition.session_scoped:
            names[f"{name}.{SESSION_END}"] = f"{name} once its session ended"
    return names


NAMES: Mapping[str, str] = _valid_names()
"""Every deadline name: ``lifecycle.state`` for each non-final state, and
``lifecycle.session_end`` for each session-scoped lifecycle."""


class Due(NamedTuple):
    """When a resource is overdue, and which deadline says so."""

    at: float
    """Epoch seconds."""
    deadline: str
    """Its name: ``recording.stopping`` or ``recording.session_end``."""
    seconds: float


class Deadlines:
    """The deadlines in force: :data:`DEFAULTS` with ``overrides`` merged over them.

    ``overrides`` maps deadline names to seconds, duration text (see
    :func:`parse_duration`) or None (off). Raises :class:`InvalidArgument` naming an
    unknown name or a bad value.
    """

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        merged: dict[str, float | None] = dict(DEFAULTS)
        for name, value in (overrides or {}).items():
            if name not in NAMES:
                raise InvalidArgument(
                    f"no deadline {name!r}: a deadline is named lifecycle.state (a state "
                    f"that is not final) or lifecycle.{SESSION_END}; known: " + ", ".join(NAMES)
                )
            merged[name] = parse_duration(value)
        self.seconds: Mapping[str, float] = {n: s for n, s in merged.items() if s is not None}
        """Every deadline in force, by name."""
        self.states: dict[tuple[str, str], float] = {}
        """The deadlines of states in force, by lifecycle and state."""
        self.grace: dict[str, float] = {}
        """The session-end graces in force, by lifecycle."""
        for name, seconds in self.seconds.items():
            lifecycle, _, state = name.partition(".")
            if state == SESSION_END:
                self.grace[lifecycle] = seconds
            else:
                self.states[(lifecycle, state)] = seconds

    def watched(self) -> list[tuple[str, str, bool]]:
        """``(lifecycle, state, session_scoped)`` for every non-final state in which a
        resource may become due: it has a deadline, or its lifecycle a session grace."""
        out = []
        for name, lc in LIFECYCLES.items():
            graced = lc.definition.session_scoped and name in self.grace
            for state in lc.definition.states[1:]:
                if state not in lc.final_states and (graced or (name, state) in self.states):
                    out.append((name, state, lc.definition.session_scoped))
        return out

    def due(
        self,
        lifecycle: str,
        state: str,
        entered: float,
        session_ended: float | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Due | None:
        """When a resource in ``state`` since ``entered`` is overdue: its state's
        deadline, or sooner its session's end (at ``session_ended``) plus the grace of
        its lifecycle, whatever state it is in by then, unless its data says it comes
        after its session by design (a post transcription). None for a final state or
        no deadline."""
        lc = LIFECYCLES[lifecycle]
        if state in lc.final_states:
            return None
        due: Due | None = None
        seconds = self.states.get((lifecycle, state))
        if seconds is not None:
            due = Due(entered + seconds, f"{lifecycle}.{state}", seconds)
        grace = self.grace.get(lifecycle)
        late_by_design = data is not None and lc.definition.late_by_design(data)
        if session_ended is not None and grace is not None and not late_by_design:
            capped = Due(session_ended + grace, f"{lifecycle}.{SESSION_END}", grace)
            if due is None or capped.at < due.at:
                due = capped
        return due

    def pick(
        self, found: Iterable[tuple[ResourceRef, Resource, float | None]], now: float
    ) -> list[tuple[ResourceRef, Resource, Due]]:
        """Those of ``found`` (each resource with when its session ended, if it did)
        that are due at ``now``, in the order they fell due, then by lifecycle and key:
        the one decision of every store."""
        picked = []
        for ref, res, ended in found:
            due = self.due(ref[0], res.state, res.entered, ended, res.data)
            if due is not None and due.at <= now:
                picked.append((ref, res, due))
        picked.sort(key=lambda p: (p[2].at, p[0]))
        return picked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Deadlines) and self.seconds == other.seconds

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        changed = {n: self.seconds.get(n) for n in NAMES if self.seconds.get(n) != DEFAULTS.get(n)}
        return f"Deadlines({changed!r})"
