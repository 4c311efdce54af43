"""The web pages in process: what each page shows, login, errors as pages, and the
session timeline's invariants over any stream (the real browser is tests/browser)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_server_app import IDS, SESSION, TOKEN, body_of, serving

from lifecycle import Engine, Outcome
from lifecycle import strategies as vs
from lifecycle.server import ServerConfig, create_app
from lifecycle.server._ui import cookie_of
from lifecycle.server._views import STATE_HUES, session_view

pytestmark = pytest.mark.anyio

Start = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start unsigned apps on a SQLite file (no token unless given); stop them after."""
    async with AsyncExitStack() as stack:

        async def starter(**options: Any) -> httpx.AsyncClient:
            settings: dict[str, Any] = {
                "db": str(tmp_path / "lifecycle.db"),
                "insecure_no_signature": True,
            }
            app = create_app(ServerConfig(**{**settings, **options}))
            return await stack.enter_async_context(serving(app))

        yield starter


async def post(client: httpx.AsyncClient, *bodies: bytes) -> None:
    for body in bodies:
        assert 200 == (await client.post("/webhooks", content=body)).status_code


async def page(client: httpx.AsyncClient, path: str, status: int = 200) -> str:
    answer = await client.get(path)
    assert status == answer.status_code, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    return answer.text


def lanes(html: str) -> dict[tuple[str, str], str]:
    """The session page's lanes: (lifecycle, key) -> the state shown at its right end."""
    found = re.findall(
        r'<li class="lane" data-lifecycle="([^"]+)" data-key="([^"]+)" '
        r'data-state="([^"]+)"',
        html,
    )
    return {(lc, key): state for lc, key, state in found}


def markers(html: str) -> list[str]:
    return re.findall(r'class="marker m-[a-z_]+" data-outcome="([a-z_]+)"', html)


# -- the pages -------------------------------------------------------------------------


async def test_the_overview_shows_counts_anomalies_and_sessions(start: Start) -> None:
    client = await start()
    await post(client, *SESSION)
    html = await page(client, "/ui/")
    assert '<main id="main"' in html
    assert "<h1>Overview</h1>" in html
    assert 'data-count="participant.joined">2<' in html
    assert 'data-count="recording.started">1<' in html
    # the gaps and the malformed payload, newest first, each linking to its payload
    rows = re.findall(r'<a href="/ui/events/(\d+)">#\1</a>', html)
    assert ["8", "7", "6"] == rows
    assert "malformed" in html
    assert "gap: hls-stopped skipped" in html
    # the meeting sessions: s2 has a recording but no session event
    assert ["s1"] == re.findall(r'href="/ui/sessions/(s\d+)"', html)


async def test_sessions_are_newest_first_paged_and_searchable(start: Start) -> None:
    client = await start()
    await post(
        client,
        *(body_of("session-started", meetingId=f"m{i}", sessionId=f"s{i:03}") for i in range(60)),
    )
    first = await page(client, "/ui/")
    shown = re.findall(r'href="/ui/sessions/(s\d+)"', first)
    assert [f"s{i:03}" for i in range(59, 9, -1)] == shown  # 50 a page, newest first
    assert "Older sessions" in first
    assert "Newer sessions" not in first
    second = await page(client, "/ui/?offset=50")
    assert [f"s{i:03}" for i in range(9, -1, -1)] == re.findall(
        r'href="/ui/sessions/(s\d+)"', second
    )
    assert "Newer sessions" in second
    assert "Older sessions" not in second
    for search in ("m7", "s007"):
        found = await page(client, f"/ui/?q={search}")
        assert ["s007"] == re.findall(r'href="/ui/sessions/(s\d+)"', found)
    assert "No session matches" in await page(client, "/ui/?q=nothing")
    await page(client, "/ui/?offset=-1", 400)


async def test_the_session_page_has_a_lane_per_resource_with_its_state_and_anomalies(
    start: Start,
) -> None:
    client = await start()
    await post(
        client,
        *SESSION,
        body_of("recording-started", **IDS),  # a duplicate
        body_of("participant-left", **IDS, participantId="p1"),
    )
    html = await page(client, "/ui/sessions/s1")
    assert {
        ("session", "m1/s1"): "started",
        ("participant", "m1/s1/p1"): "left",
        ("participant", "m1/s1/p2"): "joined",
        ("recording", "m1/s1"): "started",
        ("hls", "m1/s1"): "stopped",
    } == lanes(html)
    assert sorted(["gap", "duplicate"]) == sorted(markers(html))
    # each state keeps one colour, with its name beside it
    assert 'class="seg s-joined"' in html
    assert '<span class="seg-label">joined</span>' in html
    other = await page(client, "/ui/sessions/s2")
    assert {("recording", "m2/s2"): "stopped"} == lanes(other)
    assert ["gap"] == markers(other)


async def test_the_resource_page_shows_data_with_links_and_history(start: Start) -> None:
    client = await start()
    url = "https://cdn.example/rec.mp4"
    await post(
        client,
        body_of("recording-starting", **IDS),
        body_of("recording-started", **IDS),
        body_of("recording-stopped", **IDS, fileUrl=url),
    )
    html = await page(client, "/ui/resources/recording/m1/s1")
    assert f'<a href="{url}" rel="noreferrer">{url}</a>' in html
    assert re.findall(r'<a href="/ui/events/(\d+)">', html) == ["3", "2", "1"]
    assert 'class="state s-stopped"' in html
    # its live updates: the changes of its lifecycle in its meeting session
    assert 'data-live="lifecycle=recording&amp;meetingId=m1&amp;sessionId=s1"' in html
    await page(client, "/ui/resources/recording/m1/nope", 404)
    await page(client, "/ui/resources/recording/m1", 404)  # a key of the wrong shape
    await page(client, "/ui/resources/nothing/m1/s1", 404)


async def test_the_lifecycle_page_draws_the_diagram_with_live_counts(start: Start) -> None:
    client = await start()
    await post(client, *SESSION)
    html = await page(client, "/ui/lifecycles/participant")
    assert "<svg" in html
    assert 'data-state="joined" data-count="2"' in html
    assert 'data-count="participant.joined">2<' in html
    await page(client, "/ui/lifecycles/nothing", 404)


async def test_the_event_page_shows_the_payload_as_it_came(start: Start) -> None:
    client = await start()
    await post(client, *SESSION)
    gap = await page(client, "/ui/events/6")
    assert "gap" in gap
    assert "recording-stopped" in gap
    assert "s-starting" in gap
    assert "&#34;meetingId&#34;: &#34;m2&#34;" in gap or "&quot;meetingId&quot;" in gap
    malformed = await page(client, "/ui/events/8")
    assert "malformed" in malformed
    assert "{&#34;webhookType&#34;: &#34;recording-started&#34;, &#34;data&#34;: {" in malformed
    await page(client, "/ui/events/99", 404)
    await page(client, "/ui/events/x", 400)


async def test_what_a_payload_says_is_escaped(start: Start) -> None:
    client = await start()
    evil = "<script>alert(1)</script>"
    await post(client, body_of("session-started", meetingId=evil, sessionId="s1"))
    for path in ("/ui/", "/ui/sessions/s1", "/ui/events/1"):
        html = await page(client, path)
        assert evil not in html
        assert "&lt;script&gt;" in html


async def test_errors_under_ui_are_pages_and_elsewhere_json(start: Start) -> None:
    client = await start()
    html = await page(client, "/ui/sessions/none", 404)
    assert "<h1>404: no session none</h1>" in html
    assert "text/html" in (await client.get("/ui/no/such/page")).headers["content-type"]
    answer = await client.get("/resources/nothing/x")
    assert 400 == answer.status_code
    assert "error" in answer.json()


async def test_every_file_a_page_needs_is_served_by_the_package(start: Start) -> None:
    client = await start()
    html = await page(client, "/ui/")
    wanted = re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', html)
    assert {"/ui/static/ui.css", "/ui/static/ui.js"} == set(wanted)
    for path in wanted:
        assert 200 == (await client.get(path)).status_code
    assert "http://" not in html.replace('"http://receiver', "")
    assert "https://" not in html


# -- login -------------------------------------------------------------------------------


async def test_with_a_token_the_pages_ask_for_it_once_and_keep_it_in_a_cookie(
    start: Start,
) -> None:
    client = await start(token=TOKEN)
    await post(client, *SESSION)
    answer = await client.get("/ui/sessions/s1")
    assert 303 == answer.status_code
    assert "/ui/login?next=%2Fui%2Fsessions%2Fs1" == answer.headers["location"]
    wrong = await client.post(
        "/ui/login", data={"token": "nope", "next": "/ui/sessions/s1"}, follow_redirects=False
    )
    assert 401 == wrong.status_code
    assert "not the right one" in wrong.text
    assert "set-cookie" not in wrong.headers
    right = await client.post(
        "/ui/login", data={"token": TOKEN, "next": "/ui/sessions/s1"}, follow_redirects=False
    )
    assert 303 == right.status_code
    assert "/ui/sessions/s1" == right.headers["location"]
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    # the cookie holds a keyed hash of the token, never the token itself
    assert f"lifecycle_token={cookie_of(TOKEN)};" in cookie
    assert TOKEN.lower() not in cookie
    assert TOKEN not in right.headers["location"]
    assert "s-started" in await page(client, "/ui/sessions/s1")
    # the cookie opens the read API for GET (the live updates), never for POST
    assert 200 == (await client.get("/changes?after=0")).status_code
    assert 401 == (await client.post("/deliveries/x/retry")).status_code
    # somewhere else than a page of ours is not where a login sends back to
    away = await client.post("/ui/login", data={"token": TOKEN, "next": "https://evil.example/"})
    assert "/ui/" == away.headers["location"]
    huge = await client.post("/ui/login", data={"token": "x" * 5000})
    assert 413 == huge.status_code
    assert "larger than 4096 bytes" in huge.text
    out = await client.post("/ui/logout")
    assert 303 == out.status_code
    client.cookies.clear()
    assert 303 == (await client.get("/ui/")).status_code
    assert 401 == (await client.get("/changes?after=0")).status_code


async def test_without_a_token_the_pages_are_open_like_the_read_api(start: Start) -> None:
    client = await start()
    assert 200 == (await client.get("/ui/")).status_code
    bare = await client.get("/ui", follow_redirects=False)
    assert (308, "/ui/") == (bare.status_code, bare.headers["location"])


# -- the timeline, over any stream -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(stream=vs.session_events(), noise=st.sampled_from(["", "shuffled"]), seed=st.randoms())
def test_every_resource_of_a_session_is_one_lane_ending_in_its_state(
    stream: list[dict[str, Any]], noise: str, seed: Any
) -> None:
    """For any stream: one lane per resource of the session, in the registry's order;
    visits follow each other inside the timeline; the last is the current state; every
    anomaly of the resource is a marker on its lane."""
    if noise:
        seed.shuffle(stream)
    clock = iter(range(1_000, 10_000))
    engine = Engine(clock=lambda: float(next(clock)))
    for payload in stream:
        engine.feed(payload)
    sessions = {p["data"].get("sessionId") for p in stream} - {None}
    for session_id in sessions:
        view = session_view(engine, session_id, now=20_000.0)
        found = engine.resources(session_id=session_id)
        assert {(s.lifecycle, s.key) for s in found} == {
            (lane.status.lifecycle, lane.status.key) for lane in view["lanes"]
        }
        anomalies = engine.anomalies(session_id=session_id)
        for lane in view["lanes"]:
            s = lane.status
            if s.state != "idle":
                assert lane.segments
                assert lane.segments[-1].state == s.state
            assert all(seg.state in STATE_HUES for seg in lane.segments)
            for a, b in zip(lane.segments, lane.segments[1:], strict=False):
                assert a.end == b.start
                assert a.start <= b.start
            assert all(0 <= seg.left <= seg.left + seg.width <= 100.001 for seg in lane.segments)
            mine = [a for a in anomalies if (a.lifecycle, a.key) == (s.lifecycle, s.key)]
            assert [a.seq for a in mine] == [m.seq for m in lane.markers]
            assert all(0 <= m.left <= 100 for m in lane.markers)
            assert all(
                m.outcome != Outcome.APPLIED or a.warnings
                for m, a in zip(lane.markers, mine, strict=False)
            )


def test_the_state_colours_cover_every_state() -> None:
    from lifecycle import LIFECYCLES

    named = {s for lc in LIFECYCLES.values() for s in lc.states} - {"idle"}
    assert named == set(STATE_HUES)
    assert orjson.dumps(STATE_HUES)  # plain values, for the template


def test_a_sweep_flag_is_an_overdue_marker_on_its_lane() -> None:
    now = [1_000.0]
    engine = Engine(clock=lambda: now[0], deadlines={"recording.stopping": 60})
    started = ("session-started", "recording-starting", "recording-started")
    for webhook_type in (*started, "recording-stopping"):
        engine.feed({"webhookType": webhook_type, "data": IDS})
        now[0] += 10
    now[0] += 100
    (flag,) = engine.sweep()
    view = session_view(engine, "s1", now=now[0])
    (recording,) = [lane for lane in view["lanes"] if lane.status.lifecycle == "recording"]
    assert [("overdue", flag.seq)] == [(m.outcome, m.seq) for m in recording.markers]
    assert "stopping" in recording.markers[0].text
