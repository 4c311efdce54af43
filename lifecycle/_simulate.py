"""Realistic webhook streams from the lifecycle registry, with chosen faults.

Every resource walks its lifecycle from ``idle`` along the defined edges (failures
are rare, restarts occasional), a meeting session interleaves the walks of its
resources between ``session-started`` and ``session-ended``, and faults (shuffle,
duplicate, drop) are applied to the finished stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ._convert import format_time
from ._lifecycles import IDLE, LIFECYCLES, Lifecycle

__all__ = ["FIELD_VALUES", "apply_faults", "session_stream", "stream", "walk"]

Payload = dict[str, Any]

FAILURE_WEIGHT = 0.03
RESTART_CHANCE = 0.2

_CDN = "https://cdn.videosdk.live"


def _file(r: random.Random) -> str:
    return f"/encoded/videos/{r.getrandbits(96):024x}.mp4"


FIELD_VALUES: Mapping[str, Callable[[random.Random], Any]] = {
    "participantName": lambda r: r.choice(["John", "Asha", "Mei", "Lars", "Ana"]),
    "filePath": _file,
    "fileUrl": lambda r: _CDN + _file(r),
    "fileDetails": lambda r: [{"filePath": p, "fileUrl": _CDN + p} for p in [_file(r)]],
    "fileFormat": lambda r: r.choice(["webm", "mp4"]),
    "playbackHlsUrl": lambda r: f"{_CDN}/meetings-hls/{r.getrandbits(64):016x}/index.m3u8",
    "livestreamUrl": lambda r: f"{_CDN}/meetings-hls/{r.getrandbits(64):016x}/live.m3u8",
    "type": lambda r: r.choice(["realtime", "post"]),
}
"""How the simulator fills the optional fields it sends."""

# which optional fields a webhook type carries, by lifecycle and target state
_FIELDS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("recording", "stopped"): ("filePath", "fileUrl"),
    ("participant-track-recording", "stopped"): ("fileDetails",),
    ("participant-recording", "starting"): ("fileFormat",),
    ("participant-recording", "started"): ("fileFormat",),
    ("participant-recording", "stopped"): ("fileDetails",),
    ("hls", "started"): ("playbackHlsUrl", "livestreamUrl"),
    ("hls", "playable"): ("playbackHlsUrl", "livestreamUrl"),
    ("participant", "joined"): ("participantName",),
    ("participant", "left"): ("participantName",),
}


def walk(lc: Lifecycle, r: random.Random, restart_chance: float = RESTART_CHANCE) -> list[str]:
    """Webhook types of one valid life of a resource, from ``idle`` to a final state."""
    d = lc.definition
    out: dict[str, list[tuple[str, str]]] = {}
    for a, b in (*d.forward, *d.restart):
        out.setdefault(a, []).append((a, b))
    primary: dict[str, str] = {}
    for w, t in d.webhooks.items():
        primary.setdefault(t, w)  # the first name of a state (not its alias)
    state, types = IDLE, list[str]()
    while True:
        edges = [(a, b) for a, b in out.get(state, ()) if (a, b) not in d.restart]
        if not edges:
            restarts = [b for a, b in d.restart if a == state]
            if not restarts or r.random() >= restart_chance:
                return types
            edges = [(state, restarts[0])]
        weights = [FAILURE_WEIGHT if b == "failed" else 1.0 for _, b in edges]
        state = r.choices(edges, weights)[0][1]
        types.append(primary[state])


def _payload(
    lc: Lifecycle,
    webhook_type: str,
    ids: Mapping[str, str],
    r: random.Random,
    extra: Mapping[str, Any] | None = None,
) -> Payload:
    data = {f: ids[f] for f in lc.definition.key_fields}
    for f in _FIELDS.get((lc.name, lc.definition.webhooks[webhook_type]), ()):
        data[f] = FIELD_VALUES[f](r)
    data.update(extra or {})
    return {"webhookType": webhook_type, "data": data}


def _interleave(seqs: Sequence[list[Payload]], r: random.Random) -> list[Payload]:
    """A random merge of ``seqs`` that keeps the order inside each one."""
    pending = [list(reversed(s)) for s in seqs if s]
    out = []
    while pending:
        i = r.randrange(len(pending))
        out.append(pending[i].pop())
        if not pending[i]:
            pending.pop(i)
    return out


def session_stream(
    r: random.Random,
    meeting_id: str,
    session_id: str,
    participants: int = 4,
    start: datetime | None = None,
    restart_chance: float = RESTART_CHANCE,
) -> list[Payload]:
    """The webhooks of one meeting session, each resource's in a valid order."""
    ids = {"meetingId": meeting_id, "sessionId": session_id}
    t0 = start or datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=r.randrange(10**7))
    t1 = t0 + timedelta(seconds=r.randrange(60, 7200))
    lcs = LIFECYCLES
    walks: list[list[Payload]] = []

    def add(name: str, more: Mapping[str, str], chance: float = 1.0, **extra: Any) -> None:
        if r.random() < chance:
            lc = lcs[name]
            key = {**ids, **more}
            walks.append([_payload(lc, w, key, r, extra) for w in walk(lc, r, restart_chance)])

    for p in range(participants):
        pid = f"{r.getrandbits(32):08x}"
        add("participant", {"participantId": pid})
        add("participant-recording", {"participantId": pid}, 0.2)
        for kind in ("audio", "video"):
            add("participant-track-recording", {"participantId": pid, "kind": kind}, 0.1)
        del p
    add("recording", {}, 0.6)
    add("hls", {}, 0.3)
    add("livestream", {}, 0.2)
    add("transcription", {"id": _uuid(r)}, 0.3, type="realtime", **ids)
    body = _interleave(walks, r)
    ended = [
        _payload(
            lcs["session"],
            "session-ended",
            ids,
            r,
            {"start": format_time(t0), "end": format_time(t1)},
        )
    ]
    if r.random() < 0.3:
        merge = lcs["merge-recording"]
        ended += [_payload(merge, w, {"id": _uuid(r)}, r, ids) for w in walk(merge, r)]
    started = _payload(lcs["session"], "session-started", ids, r, {"start": format_time(t0)})
    return [started, *body, *ended]


def _uuid(r: random.Random) -> str:
    h = f"{r.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def apply_faults(
    events: list[Payload],
    r: random.Random,
    *,
    shuffle: float = 0.0,
    duplicate: float = 0.0,
    drop: float = 0.0,
) -> list[Payload]:
    """Drop, duplicate (a later redelivery) and displace events, each with its chance."""
    out = [e for e in events if r.random() >= drop]
    for i in range(len(out) - 1, -1, -1):
        if r.random() < duplicate:
            out.insert(r.randint(i + 1, min(len(out), i + 20)), out[i])
    for i in range(len(out)):
        if r.random() < shuffle:
            j = min(len(out) - 1, i + r.randint(1, 10))
            out[i], out[j] = out[j], out[i]
    return out


def stream(
    meetings: int,
    seed: int = 0,
    *,
    participants: int = 4,
    shuffle: float = 0.0,
    duplicate: float = 0.0,
    drop: float = 0.0,
    agents: float = 0.1,
    resources: float = 0.1,
    restart_chance: float = RESTART_CHANCE,
) -> Iterator[Payload]:
    """Webhooks of ``meetings`` meeting sessions (overlapping in time), with faults.

    Some meetings also bring an AI-deployment session or an acquired resource.
    """
    r = random.Random(seed)
    window: list[list[Payload]] = []
    for m in range(meetings):
        meeting_id = "-".join(f"{r.getrandbits(16):04x}"[:4] for _ in range(3))
        events = session_stream(
            r,
            meeting_id,
            f"{r.getrandbits(96):024x}",
            participants=r.randint(1, 2 * participants - 1),
            restart_chance=restart_chance,
        )
        extra: list[list[Payload]] = [events]
        if r.random() < agents:
            lc = LIFECYCLES["ai-deployment-session"]
            sid = {"sessionId": f"session-{_uuid(r)}"}
            extra.append([_payload(lc, w, sid, r) for w in walk(lc, r)])
        if r.random() < resources:
            lc = LIFECYCLES["resource"]
            extra.append(
                [
                    _payload(lc, w, {"id": f"{r.getrandbits(96):024x}"}, r, {"type": "recording"})
                    for w in walk(lc, r)
                ]
            )
        window.append(_interleave(extra, r))
        if len(window) == 4 or m == meetings - 1:  # a few sessions run at the same time
            yield from apply_faults(
                _interleave(window, r), r, shuffle=shuffle, duplicate=duplicate, drop=drop
            )
            window = []
