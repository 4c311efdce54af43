"""``lifecycle serve`` sweeps for overdue resources, and reconciles them with a fake of
VideoSDK's REST API: real server processes, their database, a real HTTP fake."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fake_videosdk import FakeVideoSDK, serve

import support

pytest.importorskip("lifecycle.server")

API_KEY = "sweep-api-key"
SECRET = "sweep-secret-of-32-bytes-or-more-0123456789"
ROOM, SID = "jvsg-8rjn-j304", "613731342f27f56e4fc4b6d0"
URL = "https://cdn.videosdk.live/encoded/videos/62d1.mp4"
IDS = {"meetingId": ROOM, "sessionId": SID}


@pytest.fixture
def videosdk() -> Iterator[tuple[FakeVideoSDK, str]]:
    fake = FakeVideoSDK(API_KEY, SECRET)
    with serve(fake.app) as url:
        yield fake, url


def until(found: Callable[[], Any], timeout: float = 20) -> Any:
    """What ``found()`` returns once it is truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)
    return value


def anomalies(server: support.Server, outcome: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(
        f"{server.url}/anomalies", params={"outcome": outcome}
    ).json()["items"]
    return items


def test_serve_flags_a_stuck_recording_once_then_reconciles_it(
    tmp_path: Path, videosdk: tuple[FakeVideoSDK, str]
) -> None:
    """A recording stuck in stopping (deadline 1 s) is flagged by the server's sweep, once;
    the fake API says it stopped with a file: the server feeds recording-stopped, warned
    reconciled, with the file's URL; metrics count both."""
    fake, api = videosdk
    fake.rooms.add(ROOM)
    fake.recording(ROOM, SID, file=fake.file(URL, "/encoded/videos/62d1.mp4"))
    server = support.Server(
        tmp_path,
        [
            "--insecure-no-signature",
            "--db", "s.db",
            "--sweep-interval", "0.2",
            "--deadline", "recording.stopping=1s",
            "--videosdk-api-url", api,
        ],
        env={"VIDEOSDK_API_KEY": API_KEY, "VIDEOSDK_SECRET": SECRET},
    )  # fmt: skip
    try:
        hook = {"webhookType": "recording-stopping", "data": IDS}
        assert 200 == httpx.post(f"{server.url}/webhooks", json=hook).status_code
        (flag,) = until(lambda: anomalies(server, "overdue"))
        assert ("recording", "stopping", "stopping") == (
            flag["lifecycle"],
            flag["before"],
            flag["after"],
        )
        status = until(
            lambda: (
                (s := httpx.get(f"{server.url}/resources/recording/{ROOM}/{SID}").json())["state"]
                == "stopped"
                and s
            )
        )
        assert URL == status["data"]["fileUrl"]
        time.sleep(0.6)  # a few more sweeps: nothing flagged twice, nothing asked again
        assert [flag] == anomalies(server, "overdue")
        (fed,) = [a for a in anomalies(server, "applied") if "reconciled" in a["warnings"]]
        assert "recording-stopped" == fed["webhook_type"]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'lifecycle_overdue_flagged_total{lifecycle="recording",state="stopping"} 1.0' in (
            metrics
        )
        assert 'lifecycle_reconciled_total{implied="true",lifecycle="recording"} 1.0' in metrics
    finally:
        server.stop()
    assert [200] == sorted({seen.status for seen in fake.seen})  # its token was good
    assert "overdue: recording" in server.log.read_text()


def test_sweeping_can_be_off_and_else_the_first_sweep_is_at_start(tmp_path: Path) -> None:
    server = support.Server(
        tmp_path,
        ["--insecure-no-signature", "--db", "s.db", "--sweep-interval", "0"],
    )
    try:
        hook = {"webhookType": "recording-stopping", "data": IDS}
        httpx.post(f"{server.url}/webhooks", json=hook)
        overdue = httpx.get(f"{server.url}/resources", params={"overdue": "true"}).json()
        assert [] == overdue["items"]  # 15 minutes by default
    finally:
        server.stop()
    time.sleep(1.1)  # past its deadline of 1 s before the next server starts
    server = support.Server(
        tmp_path,
        ["--insecure-no-signature", "--db", "s.db", "--deadline", "recording.stopping=1s"],
    )
    try:
        assert until(lambda: anomalies(server, "overdue"))  # the first sweep is at start
        (item,) = httpx.get(f"{server.url}/resources", params={"overdue": "true"}).json()["items"]
        assert (True, "recording.stopping") == (item["flagged"], item["deadline"])
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--videosdk-api-key", "k"], ["--videosdk-secret"]),
        (["--sweep-interval", "0", "--videosdk-api-key", "k", "--videosdk-secret", "s"],
         ["--sweep-interval"]),
    ],
    ids=["key-without-secret", "reconcile-without-sweeping"],
)  # fmt: skip
def test_reconciling_settings_that_cannot_work_are_refused(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "lifecycle", "serve", "--insecure-no-signature", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 != done.returncode
    for word in words:
        assert word in done.stderr
