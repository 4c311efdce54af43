"""The web pages in headless Chromium, against a real ``lifecycle serve`` fed a simulated
stream (``lifecycle simulate``): what each page shows, live updates, login, pages without
JavaScript, and the screenshots of docs/img/ (made by this run)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.sync_api import expect

from browser.conftest import CheckedPage, NewPage
from lifecycle import LIFECYCLES, Engine

from support import ROOT, Server

TOKEN = "browser-token"
START = 1_780_000_000.0  # when the simulated stream begins (2026-05-28), for screenshots
STEP = 7.0  # seconds between two of its events
IMAGES = ROOT / "docs" / "img"


@dataclass
class Site:
    """A server over a database of simulated meetings, and those meetings as a fresh
    in-memory engine sees them (what the pages should show)."""

    server: Server
    truth: Engine
    payloads: list[bytes]

    @property
    def url(self) -> str:
        return self.server.url

    def session_with_most_anomalies(self) -> str:
        sessions = [s.key[1] for s in self.truth.resources("session")]
        return max(sessions, key=lambda s: (len(self.truth.anomalies(session_id=s)), s))


def simulated(tmp: Path, meetings: int = 4, seed: int = 11) -> list[bytes]:
    """What ``lifecycle simulate`` writes: webhooks with shuffles and redeliveries."""
    out = tmp / "simulated.jsonl"
    faults = ["--shuffle", "0.06", "--duplicate", "0.04"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lifecycle",
            "simulate",
            "--meetings",
            str(meetings),
            "--seed",
            str(seed),
            *faults,
            "--output",
            str(out),
        ],
        check=True,
    )
    return [line for line in out.read_bytes().splitlines() if line]


def build(tmp: Path, *args: str) -> Site:
    """Feed the simulated stream to a SQLite file, one event every ``STEP`` seconds from
    ``START``; serve it; and feed it to an in-memory engine too."""
    payloads = simulated(tmp)
    clock = iter(START + STEP * i for i in range(len(payloads) + 1))
    db = tmp / "lifecycle.db"
    with Engine.open(str(db), clock=lambda: next(clock)) as engine:
        for p in payloads:
            engine.feed(p)
    truth = Engine()
    for p in payloads:
        truth.feed(p)
    server = Server(
        tmp, ["--db", str(db), "--insecure-no-signature", "--sweep-interval", "0", *args]
    )
    return Site(server, truth, payloads)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = build(tmp_path)
    yield made
    made.server.stop()


def lanes_shown(checked: CheckedPage) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """Each lane of the open session page: (lifecycle, key) -> (the state written at its
    right end, the outcomes of its markers)."""
    shown = {}
    for lane in checked.page.locator("li.lane").all():
        lifecycle, key = lane.get_attribute("data-lifecycle"), lane.get_attribute("data-key")
        assert lifecycle is not None
        assert key is not None
        markers = [m.get_attribute("data-outcome") or "" for m in lane.locator(".marker").all()]
        shown[(lifecycle, key)] = (lane.locator(".now").inner_text().strip(), markers)
    return shown


def lanes_expected(truth: Engine, session_id: str) -> dict[tuple[str, str], tuple[str, list[str]]]:
    anomalies = truth.anomalies(session_id=session_id)
    return {
        (s.lifecycle, "/".join(s.key)): (
            s.state,
            [a.outcome.value for a in anomalies if (a.lifecycle, a.key) == (s.lifecycle, s.key)],
        )
        for s in truth.resources(session_id=session_id)
    }


# -- every page loads cleanly -------------------------------------------------------------


def test_every_page_loads_with_no_console_error_and_no_failed_request(
    site: Site, checked_page: CheckedPage
) -> None:
    page = checked_page.page
    session = site.session_with_most_anomalies()
    resource = site.truth.resources(session_id=session)[-1]
    anomaly = site.truth.anomalies(session_id=session)[0]
    paths = [
        "/ui/",
        "/ui/?q=" + session,
        f"/ui/sessions/{session}",
        f"/ui/resources/{resource.lifecycle}/{'/'.join(resource.key)}",
        f"/ui/events/{anomaly.seq}",
        *(f"/ui/lifecycles/{name}" for name in LIFECYCLES),
    ]
    for path in paths:
        answer = page.goto(site.url + path)
        assert answer is not None
        assert 200 == answer.status, path
        expect(page.locator("main h1")).to_be_visible()
        assert page.locator("header nav").count() == 1
        # the script ran: times are in the viewer's local time, not the server's UTC
        for t in page.locator("main time").all()[:3]:
            assert not t.inner_text().endswith("UTC"), path
    checked_page.check()


# -- the session timeline -----------------------------------------------------------------


def test_a_simulated_session_shows_a_lane_per_resource_with_its_state_and_anomalies(
    site: Site, checked_page: CheckedPage
) -> None:
    assert len(site.payloads) > 50
    for session in [s.key[1] for s in site.truth.resources("session")]:
        checked_page.page.goto(f"{site.url}/ui/sessions/{session}")
        assert lanes_expected(site.truth, session) == lanes_shown(checked_page)
    busiest = site.session_with_most_anomalies()
    assert site.truth.anomalies(session_id=busiest)  # the seed gives this test markers


def test_a_marker_opens_its_event_by_keyboard(site: Site, checked_page: CheckedPage) -> None:
    page = checked_page.page
    session = site.session_with_most_anomalies()
    page.goto(f"{site.url}/ui/sessions/{session}")
    marker = page.locator(".marker").first
    label = marker.get_attribute("aria-label") or ""
    outcome = marker.get_attribute("data-outcome") or ""
    href = marker.get_attribute("href")
    assert outcome in label
    marker.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{site.url}{href}")
    expect(page.locator("main h1")).to_contain_text(outcome)
    expect(page.locator("pre.payload")).to_contain_text('"webhookType"')


def test_a_webhook_posted_while_the_page_is_open_shows_within_two_seconds(
    site: Site, checked_page: CheckedPage
) -> None:
    page = checked_page.page
    ids = {"meetingId": "m-live", "sessionId": "s-live"}
    post = httpx.Client(base_url=site.url)
    hook = {"webhookType": "session-started", "data": ids}
    assert 200 == post.post("/webhooks", content=orjson.dumps(hook)).status_code
    page.goto(f"{site.url}/ui/sessions/s-live")
    expect(page.locator("li.lane")).to_have_count(1)
    overview = checked_page.page.context.new_page()
    overview.goto(f"{site.url}/ui/")
    joined = overview.locator('[data-count="participant.joined"]')
    before = int(joined.inner_text())
    for n in range(3):
        data = {**ids, "participantId": f"p-{n}"}
        hook = {"webhookType": "participant-joined", "data": data}
        sent = time.monotonic()
        assert 200 == post.post("/webhooks", content=orjson.dumps(hook)).status_code
        lane = page.locator(f'li.lane[data-key="m-live/s-live/p-{n}"]')
        expect(lane).to_be_visible(timeout=2_000)
        assert time.monotonic() - sent < 2.0
        expect(lane.locator(".now")).to_have_text("joined")
    expect(overview.locator('[data-count="participant.joined"]')).to_have_text(
        str(before + 3), timeout=2_000
    )
    overview.close()


# -- access -------------------------------------------------------------------------------


def test_login_refuses_a_wrong_token_and_keeps_the_right_one_in_a_cookie(
    tmp_path: Path, new_page: NewPage
) -> None:
    made = build(tmp_path, "--token", TOKEN)
    try:
        checked = new_page()
        page = checked.page
        page.goto(f"{made.url}/ui/")
        expect(page).to_have_url(f"{made.url}/ui/login?next=%2Fui%2F")
        checked.expect_status("/ui/login", 401)
        page.get_by_label("Read token").fill("wrong")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("not the right one")
        page.get_by_label("Read token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("main h1")).to_have_text("Overview")
        (cookie,) = page.context.cookies()
        assert (True, "Strict") == (cookie["httpOnly"], cookie["sameSite"])
        assert TOKEN not in page.url
        # the live updates read the change feed with the cookie
        joined = page.locator('[data-count="participant.joined"]')
        before = int(joined.inner_text())
        data = {"meetingId": "m-x", "sessionId": "s-x", "participantId": "p-x"}
        hook = {"webhookType": "participant-joined", "data": data}
        assert 200 == httpx.post(f"{made.url}/webhooks", content=orjson.dumps(hook)).status_code
        expect(joined).to_have_text(str(before + 1), timeout=2_000)
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(f"{made.url}/ui/login")
        page.goto(f"{made.url}/ui/")
        expect(page.locator("main h1")).to_have_text("Log in")
    finally:
        made.server.stop()


def test_the_pages_work_without_javascript(site: Site, new_page: NewPage) -> None:
    checked = new_page(java_script_enabled=False)
    page = checked.page
    page.goto(f"{site.url}/ui/")
    expect(page.locator("main h1")).to_have_text("Overview")
    assert page.locator("main time").first.inner_text().endswith("UTC")  # no script ran
    session = site.session_with_most_anomalies()
    page.get_by_label("Meeting id or session id").fill(session)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=session, exact=True).click()
    assert lanes_expected(site.truth, session) == lanes_shown(checked)
    page.locator(".marker").first.click()
    expect(page.locator("pre.payload")).to_contain_text('"webhookType"')


def test_the_theme_follows_the_system_and_motion_can_be_reduced(
    site: Site, new_page: NewPage
) -> None:
    session = site.session_with_most_anomalies()
    shown = {}
    for scheme, motion in (("light", "no-preference"), ("dark", "reduce")):
        page = new_page(color_scheme=scheme, reduced_motion=motion).page
        page.goto(f"{site.url}/ui/sessions/{session}")
        shown[scheme] = page.evaluate(
            "[getComputedStyle(document.body).backgroundColor,"
            " getComputedStyle(document.querySelector('.marker')).transitionDuration]"
        )
    assert shown["light"][0] != shown["dark"][0]
    assert ("0.15s", "0s") == (shown["light"][1], shown["dark"][1])


# -- screenshots for the docs ---------------------------------------------------------------


def test_screenshots(tmp_path: Path, new_page: NewPage) -> None:
    """docs/img/overview.png and docs/img/session.png, at 1280x800, of the simulated
    meetings (the session with the most anomalies); README.md and docs/ui.md show them."""
    made = build(tmp_path)
    try:
        page = new_page().page
        IMAGES.mkdir(exist_ok=True)
        page.goto(f"{made.url}/ui/")
        page.screenshot(path=IMAGES / "overview.png")
        page.goto(f"{made.url}/ui/sessions/{made.session_with_most_anomalies()}")
        page.screenshot(path=IMAGES / "session.png")
        page.goto("about:blank")  # the live updates end before the server does
    finally:
        made.server.stop()
    for name in ("overview.png", "session.png"):
        assert (IMAGES / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for doc in ("README.md", "docs/ui.md"):
            assert f"img/{name}" in (ROOT / doc).read_text()
