"""Hypothesis strategies for VideoSDK webhooks, for testing your own handlers.

Install with the ``testing`` extra (``pip install -e '.[testing]'`` in the checkout).
Everything is derived from the lifecycle registry, so the streams follow exactly the
edges the engine knows::

    from hypothesis import given
    from lifecycle import strategies as vs

    @given(vs.perturbed(vs.session_events()))
    def test_my_handler_survives_redelivery(stream):
        for payload in stream:
            my_handler(payload)          # must never raise

.. versionadded:: 0.1
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from hypothesis import strategies as st

from ._convert import SPECS, format_time
from ._lifecycles import IDLE, LIFECYCLES, WEBHOOK_TYPES, Lifecycle
from .errors import InvalidArgument

__all__ = [
    "any_payloads",
    "garbage",
    "lifecycle_events",
    "payloads",
    "perturbed",
    "session_events",
    "streams",
    "webhook_types",
]

Payload = dict[str, Any]
T = TypeVar("T")

_ID = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=24)
_TEXT = st.text(max_size=20)
_TIMES = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda t: format_time(t.replace(microsecond=t.microsecond // 1000 * 1000)))
_FILES = st.lists(
    st.fixed_dictionaries({"filePath": _TEXT, "fileUrl": _TEXT}), min_size=1, max_size=3
)
_VALUES: Mapping[str, st.SearchStrategy[Any]] = {
    "start": _TIMES,
    "end": _TIMES,
    "fileDetails": _FILES,
}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
"""Any JSON value (what unknown fields may hold)."""


def _known(value: object, names: Mapping[str, object], what: str) -> None:
    """Refuse, when the strategy is built, a name that is not one of ``names``."""
    if value not in names:
        raise InvalidArgument(f"unknown {what} {value!r}; known: {', '.join(names)}")


def _count(value: object, name: str, least: int) -> None:
    if type(value) is not int or value < least:
        raise InvalidArgument(f"{name} must be an integer of at least {least}, not {value!r}")


def webhook_types(lifecycle: str | None = None) -> st.SearchStrategy[str]:
    """Known webhook types, of one lifecycle or of all.

    Raises :class:`~lifecycle.InvalidArgument` for a lifecycle that does not exist.
    """
    if lifecycle is not None:
        _known(lifecycle, LIFECYCLES, "lifecycle")
    types = LIFECYCLES[lifecycle].definition.webhooks if lifecycle else WEBHOOK_TYPES
    return st.sampled_from(sorted(types))


def _key(lc: Lifecycle, ids: Mapping[str, str] | None) -> st.SearchStrategy[dict[str, str]]:
    fields = lc.definition.key_fields
    given = {f: st.just(ids[f]) for f in fields if ids and f in ids}
    return st.fixed_dictionaries({f: given.get(f, _ID) for f in fields})


def payloads(
    webhook_type: str | None = None,
    ids: Mapping[str, str] | None = None,
    *,
    unknown_fields: bool = False,
) -> st.SearchStrategy[Payload]:
    """One valid payload of ``webhook_type`` (any type when None).

    ``ids`` fixes key fields (wire names: ``meetingId`` ...); optional fields are drawn
    or left out, and ``unknown_fields`` adds keys the class does not know. Raises
    :class:`~lifecycle.InvalidArgument` for an unknown webhook type.
    """
    if webhook_type is not None:
        _known(webhook_type, WEBHOOK_TYPES, "webhook type")
    return _payloads(webhook_type, ids, unknown_fields)


@st.composite
def _payloads(
    draw: st.DrawFn,
    webhook_type: str | None,
    ids: Mapping[str, str] | None,
    unknown_fields: bool,
) -> Payload:
    w = webhook_type or draw(webhook_types())
    spec = SPECS[w]
    data: dict[str, Any] = draw(_key(WEBHOOK_TYPES[w], ids))
    for field in sorted(spec.checks):
        if field != "id" and draw(st.booleans()):
            data[field] = draw(_VALUES.get(field, _TEXT))
    if unknown_fields:
        extra = draw(st.dictionaries(_TEXT.filter(lambda k: k not in spec.wire), JSON, max_size=3))
        data.update(extra)
    return {"webhookType": w, "data": data}


def any_payloads() -> st.SearchStrategy[Payload]:
    """A valid payload of any known type, with or without unknown fields."""
    return payloads(unknown_fields=True) | payloads()


def lifecycle_events(
    lifecycle: str,
    ids: Mapping[str, str] | None = None,
    *,
    max_events: int = 12,
) -> st.SearchStrategy[list[Payload]]:
    """A valid sequence of payloads for one resource: a walk along the lifecycle's edges.

    The walk starts in ``idle`` and may stop anywhere; restarts (new recordings,
    rejoins) happen, and a new cycle of a recorder carries a new ``id`` when ids are sent.
    Raises :class:`~lifecycle.InvalidArgument` for an unknown lifecycle or a
    ``max_events`` below 1.
    """
    _known(lifecycle, LIFECYCLES, "lifecycle")
    _count(max_events, "max_events", 1)
    return _lifecycle_events(lifecycle, ids, max_events)


@st.composite
def _lifecycle_events(
    draw: st.DrawFn, lifecycle: str, ids: Mapping[str, str] | None, max_events: int
) -> list[Payload]:
    lc = LIFECYCLES[lifecycle]
    d = lc.definition
    key = draw(_key(lc, ids))
    edges: dict[str, list[str]] = {}
    for a, b in (*d.forward, *d.restart):
        edges.setdefault(a, []).append(b)
    by_state: dict[str, list[str]] = {}
    for w, t in d.webhooks.items():
        by_state.setdefault(t, []).append(w)
    send_ids = (
        bool(d.restart) and "id" in SPECS[next(iter(d.webhooks))].checks and draw(st.booleans())
    )
    state, out, cycle = IDLE, list[Payload](), 0
    while len(out) < max_events and state in edges:
        if out and draw(st.integers(0, 3)) == 0:
            break
        nxt = draw(st.sampled_from(edges[state]))
        if (state, nxt) in d.restart:
            cycle += 1
        state = nxt
        w = draw(st.sampled_from(by_state[state]))
        p = draw(payloads(w, key))
        if send_ids:
            p["data"]["id"] = f"{key[d.key_fields[0]]}-cycle-{cycle}"
        out.append(p)
    return out


@st.composite
def _interleave(draw: st.DrawFn, seqs: Sequence[list[T]]) -> list[T]:
    pending = [list(s) for s in seqs if s]
    out: list[T] = []
    while pending:
        i = draw(st.integers(0, len(pending) - 1))
        out.append(pending[i].pop(0))
        if not pending[i]:
            pending.pop(i)
    return out


_SCOPED = [n for n, lc in LIFECYCLES.items() if lc.definition.session_scoped]
_OWN = [n for n, lc in LIFECYCLES.items() if not lc.definition.session_scoped and n != "session"]


def session_events(max_resources: int = 6) -> st.SearchStrategy[list[Payload]]:
    """A valid stream of one meeting session and its resources, interleaved.

    ``session-started`` comes first and ``session-ended`` after every start event of
    the session's resources; merge recordings, resources and AI-deployment sessions
    (not scoped to a session) may come at any time. Every resource has its own key.
    Raises :class:`~lifecycle.InvalidArgument` for a negative ``max_resources``.
    """
    _count(max_resources, "max_resources", 0)
    return _session_events(max_resources)


@st.composite
def _session_events(draw: st.DrawFn, max_resources: int) -> list[Payload]:
    meeting = {"meetingId": draw(_ID), "sessionId": draw(_ID)}
    names = draw(st.lists(st.sampled_from(_SCOPED + _OWN), max_size=max_resources))
    # recording, livestream and HLS are keyed by the session: one of each per session
    names = [
        n
        for i, n in enumerate(names)
        if set(LIFECYCLES[n].definition.key_fields) != set(meeting) or n not in names[:i]
    ]
    scoped: list[list[Payload]] = []
    own: list[list[Payload]] = []
    for i, name in enumerate(names):
        lc = LIFECYCLES[name]
        ids = {**meeting, **{f: f"{f}-{i}" for f in lc.definition.key_fields if f not in meeting}}
        if not lc.definition.session_scoped and "sessionId" in lc.definition.key_fields:
            ids["sessionId"] = f"agent-{i}"  # its own session, not the meeting's
        events = draw(lifecycle_events(name, ids))
        for p in events:
            if name in ("transcription", "merge-recording"):
                p["data"].update(meeting)
        (scoped if lc.definition.session_scoped else own).append(events)
    body = draw(_interleave(scoped))
    start = draw(payloads("session-started", meeting))
    stream = [start, *body]
    if draw(st.booleans()):
        stream.append(draw(payloads("session-ended", meeting)))
    return draw(_interleave([stream, *own]))


def perturbed(
    events: st.SearchStrategy[list[T]],
    *,
    shuffle: bool = True,
    duplicate: bool = True,
    drop: bool = True,
) -> st.SearchStrategy[list[T]]:
    """``events`` as a real receiver may see them: reordered, redelivered, lost.

    ``events`` is a strategy of lists (``session_events()``, or ``st.just(my_list)``);
    anything else raises :class:`~lifecycle.InvalidArgument`.
    """
    if not isinstance(events, st.SearchStrategy):
        raise InvalidArgument(
            "perturbed takes a strategy of lists of events, such as session_events() or "
            f"st.just(events), not a {type(events).__name__}"
        )
    return _perturbed(events, shuffle, duplicate, drop)


@st.composite
def _perturbed(
    draw: st.DrawFn,
    events: st.SearchStrategy[list[T]],
    shuffle: bool,
    duplicate: bool,
    drop: bool,
) -> list[T]:
    out = list(draw(events))
    if drop and out:
        keep = draw(st.lists(st.booleans(), min_size=len(out), max_size=len(out)))
        out = [e for e, k in zip(out, keep, strict=True) if k or not any(keep)]
    if duplicate and out:
        for i in draw(st.lists(st.integers(0, len(out) - 1), max_size=4)):
            out.insert(draw(st.integers(i, len(out))), out[i])
    if shuffle:
        out = draw(st.permutations(out)) if draw(st.booleans()) else out
    return out


@st.composite
def _broken_key(draw: st.DrawFn) -> Payload:
    """A valid payload with one key field removed, emptied or of the wrong type."""
    p = draw(payloads())
    field = draw(st.sampled_from(SPECS[p["webhookType"]].key))
    value = draw(st.none() | st.integers() | st.just("") | st.lists(_ID, max_size=1))
    if value is None:
        del p["data"][field]
    else:
        p["data"][field] = value
    return p


def garbage() -> st.SearchStrategy[Any]:
    """Payloads that are not valid webhooks: bad JSON, wrong shapes, bad key fields."""
    return st.one_of(
        st.binary(max_size=40),
        st.text(max_size=40),
        JSON.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
        st.dictionaries(_TEXT.filter(lambda k: k not in ("webhookType", "type")), JSON, max_size=3),
        st.builds(
            lambda t: {"webhookType": t, "data": {}},
            JSON.filter(lambda v: v is not None and not isinstance(v, str)),
        ),
        payloads().map(lambda p: {"webhookType": p["webhookType"]}),
        _broken_key(),
    )


def streams() -> st.SearchStrategy[list[Any]]:
    """Anything a receiver may be fed: perturbed sessions mixed with garbage and unknowns."""
    unknown = st.builds(
        lambda t, d: {"webhookType": t, "data": d},
        _ID.filter(lambda t: t not in WEBHOOK_TYPES),
        JSON,
    )
    noise = st.lists(garbage() | unknown | any_payloads(), max_size=5)
    return st.builds(lambda a, b: [*a, *b], perturbed(session_events()), noise).flatmap(
        st.permutations
    )
