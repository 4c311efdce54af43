"""Results and statuses as JSON-ready dicts: what the HTTP API and the CLI print."""

from __future__ import annotations

from typing import Any

import orjson

from ._lifecycles import LIFECYCLES
from ._records import Change, Delivery, FeedResult, HistoryEntry, Overdue, ResourceStatus, utc

__all__ = ["change_json", "delivery_json", "overdue_json", "result_json", "status_json"]


def _ids(lifecycle: str | None, key: tuple[str, ...] | None) -> dict[str, str] | None:
    if lifecycle is None or key is None:
        return None
    return dict(zip(LIFECYCLES[lifecycle].definition.key_fields, key, strict=True))


def result_json(r: FeedResult) -> dict[str, Any]:
    """What feeding one payload did (without the payload), as JSON values."""
    return {
        "seq": r.seq,
        "outcome": r.outcome.value,
        "lifecycle": r.lifecycle,
        "key": _ids(r.lifecycle, r.key),
        "webhook_type": r.webhook_type,
        "before": r.before,
        "after": r.after,
        "missing": list(r.missing),
        "warnings": list(r.warnings),
        "reason": r.reason,
        "received_at": r.received_at.isoformat(),
    }


def change_json(c: Change) -> dict[str, Any]:
    """One change of the feed as JSON values."""
    return {
        "cursor": c.cursor,
        "seq": c.seq,
        "outcome": c.outcome.value,
        "lifecycle": c.lifecycle,
        "key": _ids(c.lifecycle, c.key),
        "webhook_type": c.webhook_type,
        "before": c.before,
        "after": c.after,
        "warnings": list(c.warnings),
        "at": c.at.isoformat(),
        "data": dict(c.data),
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    """One recorded delivery of a forwarded change, its message included."""
    return {
        "id": d.id,
        "endpoint": d.endpoint,
        "cursor": d.cursor,
        "status": d.status,
        "attempts": d.attempts,
        "error": d.error,
        "updated_at": utc(d.updated_at).isoformat(),
        "message": orjson.loads(d.body),
    }


def _entry(h: HistoryEntry) -> dict[str, Any]:
    return {
        "seq": h.seq,
        "webhook_type": h.webhook_type,
        "outcome": h.outcome.value,
        "received_at": h.received_at.isoformat(),
    }


def status_json(s: ResourceStatus, history: bool = True) -> dict[str, Any]:
    """One resource's status as JSON values; its history only when asked for."""
    out: dict[str, Any] = {
        "lifecycle": s.lifecycle,
        "key": _ids(s.lifecycle, s.key),
        "state": s.state,
        "entered_at": s.entered_at.isoformat(),
        "data": dict(s.data),
    }
    if history:
        out["history"] = [_entry(h) for h in s.history]
    return out


def overdue_json(o: Overdue) -> dict[str, Any]:
    """One overdue resource: its status without history, and the deadline it passed."""
    return {
        **status_json(o.status, history=False),
        "deadline": o.deadline,
        "seconds": o.seconds,
        "due_at": o.due_at.isoformat(),
        "flagged": o.flagged,
    }
