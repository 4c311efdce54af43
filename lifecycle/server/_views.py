"""What the web pages show, read from an engine: plain values for the templates.

Each ``*_view`` function runs on a reader thread with the engine, through the same
queries as the HTTP API, and returns what one page needs; the templates only lay it out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from .._engine import Engine
from .._lifecycles import IDLE, LIFECYCLES, Lifecycle, Outcome
from .._records import CHANGES, FeedResult, Overdue, ResourceStatus, utc

__all__ = [
    "STATE_HUES",
    "Lane",
    "Marker",
    "Segment",
    "event_view",
    "lifecycle_view",
    "overview_view",
    "resource_view",
    "session_view",
]

_SESSION_FIELDS = ("meetingId", "sessionId")
_ORDER = {name: i for i, name in enumerate(LIFECYCLES)}  # lanes in the registry's order


STATE_HUES = {
    "starting": 210,
    "started": 140,
    "joined": 115,
    "acquired": 165,
    "playable": 90,
    "completed": 185,
    "stopping": 40,
    "stopped": 260,
    "ended": 285,
    "left": 310,
    "failed": 0,
}
"""The hue of each state name on every page: a state keeps its colour in every
lifecycle (and always shows its name beside it)."""


def label(status: ResourceStatus) -> str:
    """A resource's name within its session: its lifecycle, then the key values that the
    session does not already give."""
    fields = LIFECYCLES[status.lifecycle].definition.key_fields
    rest = [v for f, v in zip(fields, status.key, strict=True) if f not in _SESSION_FIELDS]
    return " ".join([status.lifecycle, *rest])


def key_path(lifecycle: str, key: Sequence[str]) -> str:
    """The path of a resource's page under ``/ui/resources/``."""
    return "/".join([lifecycle, *key])


@frozen
class Segment:
    """One visit to a state on a lane, placed in percent of the timeline's width."""

    state: str
    start: datetime
    end: datetime
    left: float
    width: float


@frozen
class Marker:
    """An anomaly on a lane: what it was, when, where it is drawn."""

    seq: int
    outcome: str
    text: str
    at: datetime
    left: float


@frozen
class Lane:
    """One resource of a session, drawn over the session's time."""

    status: ResourceStatus
    label: str
    path: str
    segments: list[Segment]
    markers: list[Marker]


def describe(r: FeedResult) -> str:
    """One line saying what an anomaly was."""
    if r.outcome is Outcome.GAP:
        return f"gap: {r.webhook_type} skipped {', '.join(r.missing)} (from {r.before})"
    if r.outcome is Outcome.OVERDUE:
        return f"overdue: {r.reason}"
    if r.outcome in (Outcome.MALFORMED, Outcome.UNKNOWN_TYPE):
        return f"{r.outcome.value}: {r.reason}"
    text = f"{r.outcome.value}: {r.webhook_type or 'entry'} in {r.before}"
    if r.warnings:
        text += f" (warned {', '.join(r.warnings)})"
    return text


def _visits(status: ResourceStatus, lc: Lifecycle) -> list[tuple[float, str]]:
    """When each state of ``status``'s known history began, ending with its current one."""
    visits: list[tuple[float, str]] = []
    for h in status.history:
        target = lc.definition.webhooks.get(h.webhook_type)
        if h.outcome in CHANGES and target is not None:  # an entry has no webhook type
            visits.append((h.received_at.timestamp(), target))
    entered = status.entered_at.timestamp()
    if status.state != IDLE and (not visits or visits[-1] != (entered, status.state)):
        visits = [v for v in visits if v[0] < entered] + [(entered, status.state)]
    return visits


def session_view(engine: Engine, session_id: str, now: float | None = None) -> dict[str, Any]:
    """A meeting session as lanes over time: one per resource, its visits to states
    and its anomalies; ``found`` is False when nothing of the session is known."""
    found = engine.resources(session_id=session_id)
    own = [s for s in found if s.lifecycle == "session"]
    anomalies = engine.anomalies(session_id=session_id)
    ordered = sorted(found, key=lambda s: (_ORDER[s.lifecycle], s.key))
    visits = {(s.lifecycle, s.key): _visits(s, LIFECYCLES[s.lifecycle]) for s in ordered}
    times = [t for v in visits.values() for t, _ in v] + [a.timestamp for a in anomalies]
    ongoing = not own or own[0].state != "ended"
    start = min(times, default=time.time())
    end = max([*times, time.time() if now is None else now] if ongoing else times, default=start)
    span = max(end - start, 1e-3)

    def at(t: float) -> float:
        return round(100 * (t - start) / span, 3)

    marks: dict[tuple[str | None, Any], list[FeedResult]] = {}
    for a in anomalies:
        marks.setdefault((a.lifecycle, a.key), []).append(a)
    lanes = []
    for s in ordered:
        v = visits[(s.lifecycle, s.key)]
        bounds = [t for t, _ in v[1:]] + [end]
        segments = [
            Segment(state, utc(t), utc(until), at(t), max(at(until) - at(t), 0.0))
            for (t, state), until in zip(v, bounds, strict=True)
        ]
        markers = [
            Marker(a.seq, a.outcome.value, describe(a), a.received_at, at(a.timestamp))
            for a in marks.get((s.lifecycle, s.key), ())
        ]
        lanes.append(Lane(s, label(s), key_path(s.lifecycle, s.key), segments, markers))
    ticks = [utc(start + span * i / 4) for i in range(5)]
    meeting = meeting_of(own[0] if own else None, found)
    return {
        "found": bool(found),
        "session_id": session_id,
        "meeting_id": meeting,
        "session": own[0] if own else None,
        "ongoing": ongoing,
        "lanes": lanes,
        "ticks": ticks,
        "start": utc(start),
        "end": utc(end),
        "anomalies": len(anomalies),
        "cursor": engine.cursor,
    }


def meeting_of(session: ResourceStatus | None, found: Sequence[ResourceStatus]) -> Any:
    """A meeting session's meeting id: its own key's, else what its resources' data says
    (None when nothing of it is known)."""
    return session.key[0] if session else found[0].data.get("meetingId") if found else None


RECENT = 20
"""How many anomalies the overview lists."""


def _recent_anomalies(engine: Engine, count: int) -> list[FeedResult]:
    """The last ``count`` anomalies, newest first, looked for in ever longer tails."""
    last, window = engine.events_fed, 1_000
    while True:
        after = max(last - window, 0)
        found = engine.anomalies(after=after)
        if len(found) >= count or after == 0:
            return found[::-1][:count]
        window *= 8


def sessions_page(
    engine: Engine, search: str, limit: int, offset: int
) -> tuple[list[ResourceStatus], bool]:
    """Meeting sessions, newest first: those of a meeting id or session id ``search``, or
    every one; one page, and whether there are more."""
    if search:
        found = {
            s.key: s
            for s in [
                *engine.resources("session", meeting_id=search),
                *engine.resources("session", session_id=search),
            ]
        }
        newest = list(found.values())[::-1]
        return newest[offset : offset + limit], len(newest) > offset + limit
    total = sum(engine.state_counts().get("session", {}).values())
    first = max(total - offset - limit, 0)
    page = engine.resources("session", limit=max(total - offset - first, 0), offset=first)
    return page[::-1], first > 0


def overview_view(engine: Engine, search: str, limit: int, offset: int) -> dict[str, Any]:
    """Counts by lifecycle and state, recent anomalies, overdue resources, sessions."""
    sessions, more = sessions_page(engine, search, limit, offset)
    overdue: list[Overdue] = engine.overdue() if engine.deadlines.seconds else []
    return {
        "counts": engine.state_counts(),
        "anomalies": _recent_anomalies(engine, RECENT),
        "deadlines": bool(engine.deadlines.seconds),
        "overdue": overdue,
        "sessions": sessions,
        "more": more,
        "search": search,
        "limit": limit,
        "offset": offset,
        "cursor": engine.cursor,
    }


def resource_view(engine: Engine, lifecycle: str, key: tuple[str, ...]) -> dict[str, Any]:
    """One resource's status, with its recent history."""
    return {"status": engine.status(lifecycle, *key), "cursor": engine.cursor}


def lifecycle_view(engine: Engine, name: str) -> dict[str, Any]:
    """A lifecycle's states with the number of resources in each."""
    counts = engine.state_counts().get(name, {})
    return {"lifecycle": LIFECYCLES[name], "counts": counts, "cursor": engine.cursor}


def event_view(engine: Engine, seq: int) -> FeedResult | None:
    """One logged event or entry, with its payload; None when it is not (or no longer)
    kept."""
    found = engine.log(after=seq - 1, limit=1) if seq > 0 else []
    return found[0] if found and found[0].seq == seq else None
