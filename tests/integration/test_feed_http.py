"""The change feed over HTTP, on real server processes: pages, long polls, Server-Sent
Events resumed with Last-Event-ID, 410 past what is kept, and a change committed by one
receiver waking a reader of another on the same PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from lifecycle import Engine

from support import Server, postgres_or_skip, reset_postgres

pytest.importorskip("lifecycle.server")

Serve = Callable[..., Server]


def joined(i: int, session: str = "s") -> dict[str, Any]:
    return {
        "webhookType": "participant-joined",
        "data": {"meetingId": "m", "sessionId": session, "participantId": f"p{i}"},
    }


def post(server: Server, payload: dict[str, Any]) -> None:
    assert 200 == httpx.post(f"{server.url}/webhooks", json=payload).status_code


def events(response: httpx.Response) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The (id, event, data) of each Server-Sent Event of a streaming response."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                yield (
                    fields.get("id", ""),
                    fields.get("event", "message"),
                    orjson.loads(fields["data"]),
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def test_changes_pages_filters_and_long_polls(serve: Serve) -> None:
    server = serve("--sweep-interval", "0")
    for i in range(5):
        post(server, joined(i))
    post(server, joined(0))  # a duplicate: no change
    page = httpx.get(f"{server.url}/changes", params={"limit": 3}).json()
    assert [1, 2, 3] == [c["cursor"] for c in page["items"]]
    assert 3 == page["next"]
    rest = httpx.get(f"{server.url}/changes", params={"after": page["next"]}).json()
    assert [4, 5] == [c["cursor"] for c in rest["items"]]
    first = page["items"][0]
    assert ("participant", "idle", "joined", "participant-joined") == (
        first["lifecycle"], first["before"], first["after"], first["webhook_type"]
    )  # fmt: skip
    assert {"meetingId": "m", "sessionId": "s", "participantId": "p0"} == first["data"]
    assert [] == httpx.get(f"{server.url}/changes", params={"lifecycle": "hls"}).json()["items"]
    assert 5 == len(httpx.get(f"{server.url}/changes", params={"meetingId": "m"}).json()["items"])
    # nothing newer: an empty page after the wait, with the cursor to ask from again
    started = time.monotonic()
    empty = httpx.get(f"{server.url}/changes", params={"after": 5, "wait": 0.3}).json()
    assert ([], 5) == (empty["items"], empty["next"])
    assert time.monotonic() - started >= 0.3
    # a change that commits while a reader waits wakes it at once
    timer = threading.Timer(0.5, post, (server, joined(9)))
    timer.start()
    started = time.monotonic()
    woken = httpx.get(f"{server.url}/changes", params={"after": 5, "wait": 10}).json()
    waited = time.monotonic() - started
    timer.join()
    assert [6] == [c["cursor"] for c in woken["items"]]
    assert waited < 0.5 + 0.4  # the commit woke it: not the next poll, nor the wait's end
    for bad in ({"after": "x"}, {"after": "-1"}, {"wait": "61"}, {"lifecycle": "nope"}):
        assert 400 == httpx.get(f"{server.url}/changes", params=bad).status_code


def test_a_stream_resumed_with_last_event_id_misses_and_repeats_nothing(serve: Serve) -> None:
    server = serve("--sweep-interval", "0")
    for i in range(20):
        post(server, joined(i))
    seen: list[int] = []
    with httpx.stream("GET", f"{server.url}/changes/stream", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event_id, kind, data in events(response):
            assert ("change", int(event_id)) == (kind, data["cursor"])
            seen.append(data["cursor"])
            if len(seen) == 8:
                break  # the client goes away mid-stream
    for i in range(20, 30):  # changes while no one listens
        post(server, joined(i))
    last = str(seen[-1])
    with httpx.stream(
        "GET",
        f"{server.url}/changes/stream",
        params={"after": 0},  # Last-Event-ID wins over it
        headers={"Last-Event-ID": last},
        timeout=10,
    ) as response:
        pushed = threading.Timer(0.3, post, (server, joined(30)))
        pushed.start()
        for _, _, data in events(response):
            seen.append(data["cursor"])
            if data["cursor"] == 31:
                break
        pushed.join()
    assert list(range(1, 32)) == seen
    filtered = httpx.get(f"{server.url}/changes/stream", params={"lifecycle": "nope"})
    assert 400 == filtered.status_code


def test_a_cursor_older_than_what_is_kept_is_410(serve: Serve, tmp_path: Any) -> None:
    db = f"sqlite:///{tmp_path / 'lifecycle.db'}"
    server = serve("--sweep-interval", "0", db=db)
    ids = {"meetingId": "m", "sessionId": "s"}
    post(server, {"webhookType": "recording-started", "data": ids})
    post(server, {"webhookType": "recording-stopped", "data": ids})
    post(server, {"webhookType": "hls-started", "data": ids})
    with Engine.open(db) as engine:  # another process prunes the finished recording
        assert 2 == engine.prune(time.time() + 60)
    gone = httpx.get(f"{server.url}/changes", params={"after": 1})
    assert (410, 2) == (gone.status_code, gone.json()["oldest"])
    assert "pruned" in gone.json()["error"]
    assert 410 == httpx.get(f"{server.url}/changes/stream", params={"after": 0}).status_code
    kept = httpx.get(f"{server.url}/changes", params={"after": 2}).json()["items"]
    assert ["hls"] == [c["lifecycle"] for c in kept]


def test_a_change_on_one_receiver_wakes_a_reader_of_another(serve: Serve) -> None:
    """Two receivers on one PostgreSQL: a webhook to the first wakes a long poll and a
    stream on the second sooner than its own poll would (NOTIFY, not the 1 s poll)."""
    url = postgres_or_skip()
    reset_postgres(url)
    first = serve("--sweep-interval", "0", db=url)
    second = serve("--sweep-interval", "0", db=url)
    post(first, joined(0))
    lags = []
    for i in range(1, 6):
        timer = threading.Timer(0.3, post, (first, joined(i)))
        timer.start()
        started = time.monotonic()
        woken = httpx.get(f"{second.url}/changes", params={"after": i, "wait": 10}).json()
        lags.append(time.monotonic() - started - 0.3)
        timer.join()
        assert [i + 1] == [c["cursor"] for c in woken["items"]]
    assert sorted(lags)[2] < 0.25  # the median: woken by the notification
    with Engine.open(url) as engine:
        assert 6 == len(engine.changes())
