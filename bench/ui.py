"""The session page ``/ui/sessions/{sessionId}`` of a large meeting session: the server's
time to answer it, and how soon headless Chromium has it loaded and interactive.

Usage: python bench/ui.py [--participants 200] [--rounds 7] [--seed 0] [--profile]

The target (from the issue): the page of a meeting session of 200 participants with
every kind of recording is interactive within 1 s in headless Chromium on this machine.

The session: ``session_stream(random.Random(seed), "m-big", "s-big", participants=...)``
of ``lifecycle._simulate``, made to hold every kind of resource: each of ``recording``,
``hls``, ``livestream``, ``transcription`` (realtime), ``participant-recording`` and
``participant-track-recording`` (audio, and video) that the stream lacks gets one walk
of its lifecycle, merged at random among the resources' events between
``session-started`` and ``session-ended``; a ``merge-recording`` that it lacks comes
after ``session-ended``, where the simulator puts it. Faults on the events between start
and end (``apply_faults``: shuffle 2 %, duplicate 2 %) make anomalies, drawn as markers.
It is fed, an event a transaction, to a new SQLite database by ``Engine.feed_many`` with
the engine's clock spread from the session's start to its end (a lane's segments are
the times its resource spent in each state), then a ``lifecycle serve --db <it>
--insecure-no-signature --public-read --sweep-interval 0`` process answers on it.

Each round, after one warm-up of each (not counted):

- server: ``GET /ui/sessions/s-big`` with httpx, the whole HTML; its floor, in the same
  round on the same server and engine: ``GET /sessions/s-big?limit=1000``, the JSON API's
  answer for the same session (its resources, without their histories). The two
  alternate in order from round to round; the ratio is the median of the rounds' pairs.
- browser: a new context (1280x800) and page in one headless Chromium (Debian's
  ``/usr/bin/chromium``, launched as the browser tests launch it), ``page.goto(url,
  wait_until="load")`` timed, then the page's navigation timing (ms from the navigation's
  start): ``responseStart`` (first byte), ``responseEnd`` (the HTML is in),
  ``domInteractive`` (parsed), ``domContentLoadedEventEnd`` (its script has run: the page
  is *interactive*), ``loadEventEnd``. The page must show one ``li.lane`` per resource of
  the session, or the bench stops.

``--profile`` instead runs ``session_view`` and the template's rendering in this process
under cProfile, and prints where their time goes.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would shadow the standard library's http
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # as the tests do

import argparse
import cProfile
import os
import platform
import pstats
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from browser.chromium import VIEWPORT, launch
from playwright.sync_api import Browser, sync_playwright

from lifecycle import Engine
from lifecycle._lifecycles import LIFECYCLES, WEBHOOK_TYPES
from lifecycle._simulate import _payload, apply_faults, session_stream, walk

from support import Server

Payload = dict[str, Any]

MEETING, SESSION = "m-big", "s-big"
TARGET_MS = 1000.0
KINDS = (  # every kind of resource a meeting session has, but itself and participants
    "recording",
    "hls",
    "livestream",
    "transcription",
    "merge-recording",
    "participant-recording",
    "participant-track-recording audio",
    "participant-track-recording video",
)
TIMING = ("responseStart", "responseEnd", "domInteractive", "domContentLoadedEventEnd")
NAVIGATION_JS = """() => {
  const n = performance.getEntriesByType("navigation")[0];
  return {responseStart: n.responseStart, responseEnd: n.responseEnd,
          domInteractive: n.domInteractive,
          domContentLoadedEventEnd: n.domContentLoadedEventEnd,
          loadEventEnd: n.loadEventEnd};
}"""


# -- the session -----------------------------------------------------------------------


def kind_of(payload: Payload) -> str:
    """The kind of resource of an event, as in ``KINDS`` (a track recording with its
    kind)."""
    name = WEBHOOK_TYPES[payload["webhookType"]].definition.name
    if name == "participant-track-recording":
        return f"{name} {payload['data']['kind']}"
    return name


def big_session(participants: int, seed: int) -> tuple[list[Payload], list[str]]:
    """The session's webhooks (see the docstring): every kind of resource, with faults
    between its start and its end; and the kinds that were added."""
    r = random.Random(seed)
    events = session_stream(r, MEETING, SESSION, participants=participants)
    end = next(i for i, e in enumerate(events) if e["webhookType"] == "session-ended")
    started, body, tail = events[0], events[1:end], events[end:]
    ids = {"meetingId": MEETING, "sessionId": SESSION}
    people = sorted({e["data"]["participantId"] for e in body if "participantId" in e["data"]})
    present = {kind_of(e) for e in events}
    walks: list[list[Payload]] = []
    added = [kind for kind in KINDS if kind not in present]
    for kind in added:
        name, _, track = kind.partition(" ")
        lc = LIFECYCLES[name]
        key: dict[str, str] = dict(ids)
        extra: dict[str, str] = {}
        if name in ("transcription", "merge-recording"):
            key = {"id": str(uuid.UUID(int=r.getrandbits(128)))}
            extra = {**ids, **({"type": "realtime"} if name == "transcription" else {})}
        elif name.startswith("participant-"):
            key["participantId"] = r.choice(people)
            if track:
                key["kind"] = track
        walked = [_payload(lc, w, key, r, extra) for w in walk(lc, r)]
        if name == "merge-recording":
            tail += walked  # once the session has ended, as the simulator has it
        else:
            walks.append(walked)
    for walked in walks:  # each merged at random among the others, its order kept
        at = sorted(r.randrange(len(body) + 1) for _ in walked)
        for offset, (i, payload) in enumerate(zip(at, walked, strict=True)):
            body.insert(i + offset, payload)
    body = apply_faults(body, r, shuffle=0.02, duplicate=0.02)
    return [started, *body, *tail], added


@dataclass
class Built:
    """What the database holds of the session."""

    events: int
    resources: Counter[str]
    anomalies: Counter[str]
    seconds: float

    @property
    def lanes(self) -> int:
        return sum(self.resources.values())


def build(path: Path, events: list[Payload]) -> Built:
    """Feed ``events`` into a new database at ``path``, an event a transaction, at times
    spread from the session's start to its end."""
    first = datetime.fromisoformat(events[0]["data"]["start"]).timestamp()
    ended = next(e for e in events if e["webhookType"] == "session-ended")
    last = datetime.fromisoformat(ended["data"]["end"]).timestamp()
    now = first
    t = time.perf_counter()
    engine = Engine.open(f"sqlite:///{path}", clock=lambda: now)
    try:
        for i, payload in enumerate(events):
            now = first + (last - first) * i / (len(events) - 1)
            engine.feed_many([payload])
        found = engine.resources(session_id=SESSION)
        anomalies = engine.anomalies(session_id=SESSION)
    finally:
        engine.close()
    took = time.perf_counter() - t
    conn = sqlite3.connect(path)  # one file, as a server finds a database it did not write
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return Built(
        len(events),
        Counter(s.lifecycle for s in found),
        Counter(a.outcome.value for a in anomalies),
        took,
    )


# -- the rounds --------------------------------------------------------------------------


@dataclass
class Round:
    page: float = 0.0  # seconds
    floor: float = 0.0
    page_bytes: int = 0
    goto: float = 0.0
    timing: dict[str, float] = field(default_factory=dict)  # ms from navigation start


def timed_get(client: httpx.Client, path: str) -> tuple[float, bytes]:
    t = time.perf_counter()
    answer = client.get(path)
    took = time.perf_counter() - t
    answer.raise_for_status()
    return took, answer.content


def server_side(client: httpx.Client, r: Round, floor_first: bool) -> None:
    """The page and its floor, back to back, in the order given."""
    page = f"/ui/sessions/{SESSION}"
    floor = f"/sessions/{SESSION}?limit=1000"
    for path in (floor, page) if floor_first else (page, floor):
        took, body = timed_get(client, path)
        if path == page:
            r.page, r.page_bytes = took, len(body)
        else:
            r.floor = took


def browser_side(browser: Browser, url: str, lanes: int, r: Round) -> None:
    """Load the page in a new context; its navigation timing, and the lanes shown."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        t = time.perf_counter()
        page.goto(f"{url}/ui/sessions/{SESSION}", wait_until="load")
        r.goto = time.perf_counter() - t
        # loadEventEnd is set once the load handlers return: just after "load"
        page.wait_for_function(
            '() => performance.getEntriesByType("navigation")[0].loadEventEnd > 0'
        )
        r.timing = page.evaluate(NAVIGATION_JS)
        shown = page.locator("li.lane").count()
        if shown != lanes:
            raise SystemExit(f"the page shows {shown} lanes, not the session's {lanes}")
    finally:
        context.close()


# -- the report ----------------------------------------------------------------------------


def cells(ms: Sequence[float]) -> str:
    return f"{statistics.median(ms):.1f} | {min(ms):.1f} | {max(ms):.1f}"


def report(done: Sequence[Round]) -> tuple[list[str], float]:
    """The tables, and the median interactive time in ms."""
    pairs = [r.page / r.floor for r in done]
    ratio = f"{statistics.median(pairs):.1f}x | {min(pairs):.1f}-{max(pairs):.1f}"
    size = statistics.median(r.page_bytes for r in done)
    server = [
        "| server (httpx) | median ms | best ms | worst ms | x floor (median of pairs) | pairs |",
        "|---|---|---|---|---|---|",
        f"| GET /ui/sessions/{SESSION}: the page, {size:,.0f} bytes "
        f"| {cells([r.page * 1e3 for r in done])} | {ratio} |",
        f"| floor: GET /sessions/{SESSION}?limit=1000, the JSON API "
        f"| {cells([r.floor * 1e3 for r in done])} | - | - |",
    ]
    names = {
        "responseStart": "responseStart: first byte",
        "responseEnd": "responseEnd: the HTML is in",
        "domInteractive": "domInteractive: parsed",
        "domContentLoadedEventEnd": "domContentLoadedEventEnd: **interactive**",
        "loadEventEnd": "loadEventEnd: loaded",
    }
    browser = [
        "| browser (ms from navigation start) | median ms | best ms | worst ms |",
        "|---|---|---|---|",
        *(f"| {text} | {cells([r.timing[k] for r in done])} |" for k, text in names.items()),
        f"| wall time of page.goto(load) | {cells([r.goto * 1e3 for r in done])} |",
    ]
    interactive = statistics.median(r.timing["domContentLoadedEventEnd"] for r in done)
    return [*server, "", *browser], interactive


def profile(db: Path, top: int) -> None:
    """``session_view`` on the database, then the page's template on its answer, each
    under cProfile (after a warm-up of both)."""
    from lifecycle.server._ui import _templates
    from lifecycle.server._views import session_view

    template = _templates.env.get_template("session.html")
    engine = Engine.open(f"sqlite:///{db}", read_only=True)
    try:

        def render(view: dict[str, Any]) -> str:
            context = {"login": False, "cursor": 0, **view, "live": f"sessionId={SESSION}"}
            return template.render(context)

        view = session_view(engine, SESSION)
        render(view)
        for what, run in (
            ("session_view", lambda: session_view(engine, SESSION)),
            ("the template", lambda: render(view)),
        ):
            profiler = cProfile.Profile()
            t = time.perf_counter()
            profiler.runcall(run)
            print(f"\n{what}: {(time.perf_counter() - t) * 1e3:.1f} ms under cProfile")
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(top)
            stats.sort_stats("tottime").print_stats(top)
    finally:
        engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--participants", type=int, default=200, help="in the session (200)")
    ap.add_argument("--rounds", type=int, default=7, help="rounds measured (7)")
    ap.add_argument("--seed", type=int, default=0, help="of the session's stream (0)")
    ap.add_argument("--profile", action="store_true", help="profile the server's side instead")
    ap.add_argument("--top", type=int, default=20, help="functions shown by --profile")
    args = ap.parse_args()
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "ui.db"
        events, added = big_session(args.participants, args.seed)
        built = build(db, events)
        print(
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} cores"
        )
        print(
            f"session {SESSION}: {args.participants} participants, seed {args.seed}: "
            f"{built.events:,} events fed in {built.seconds:.1f} s; {built.lanes} resources "
            f"(lanes), {sum(built.anomalies.values())} anomalies"
        )
        print("  a walk added of: " + (", ".join(added) or "none"))
        print("  resources: " + ", ".join(f"{k} {n}" for k, n in built.resources.items()))
        print("  anomalies: " + ", ".join(f"{k} {n}" for k, n in built.anomalies.most_common()))
        if args.profile:
            profile(db, args.top)
            return

        server = Server(
            folder,
            ["--db", str(db), "--insecure-no-signature", "--public-read", "--sweep-interval", "0"],
        )
        try:
            with (
                httpx.Client(base_url=server.url, timeout=60) as client,
                sync_playwright() as playwright,
            ):
                browser = launch(playwright)
                try:
                    done: list[Round] = []
                    for n in range(args.rounds + 1):  # round 0: the warm-up
                        r = Round()
                        server_side(client, r, floor_first=n % 2 == 1)
                        browser_side(browser, server.url, built.lanes, r)
                        if n == 0:
                            label = "warm-up"
                        else:
                            done.append(r)
                            label = f"round {n}"
                        print(
                            f"  {label}: page {r.page * 1e3:.1f} ms, floor {r.floor * 1e3:.1f} "
                            f"ms; goto {r.goto * 1e3:.0f} ms, "
                            + ", ".join(f"{k} {r.timing[k]:.0f}" for k in TIMING),
                            flush=True,
                        )
                finally:
                    browser.close()
        finally:
            server.stop()

    table, interactive = report(done)
    print(
        f"\n{len(done)} rounds after a warm-up, each: the page and the floor with httpx "
        "(alternating in order), then the page in a new Chromium context"
    )
    print("\n".join(table))
    met = "met" if interactive < TARGET_MS else "**not met**"
    print(
        f"\ntarget: the page of {built.lanes} lanes interactive (domContentLoadedEventEnd) "
        f"in headless Chromium within {TARGET_MS:g} ms: median {interactive:.0f} ms: {met}"
    )
    print(f"(whole run: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
