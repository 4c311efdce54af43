"""Forwarding the change feed as Standard Webhooks, end to end: real server processes,
a real local endpoint, signatures checked with the ``standardwebhooks`` package."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _receiver import SECRET, Receiver

from lifecycle import Engine

from support import Server, postgres_or_skip, reset_postgres

pytest.importorskip("lifecycle.server")


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kw: Any) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def start(tmp: Path, db: str, *forwards: str, more: tuple[str, ...] = ()) -> Server:
    args = ["--insecure-no-signature", "--db", db, "--sweep-interval", "0"]
    for f in forwards:
        args += ["--forward", f]
    return Server(tmp, [*args, *more], env={"LIFECYCLE_FORWARD_SECRET": SECRET})


def feed(server: Server, n: int, first: int = 0) -> None:
    """``n`` webhooks over a few resources: each participant joins, then leaves."""
    for i in range(first, first + n):
        kind = "participant-joined" if (i // 10) % 2 == 0 else "participant-left"
        data = {"meetingId": "m", "sessionId": "s", "participantId": f"p{i % 10}"}
        answer = httpx.post(f"{server.url}/webhooks", json={"webhookType": kind, "data": data})
        assert 200 == answer.status_code


def changes(db: str) -> list[int]:
    with Engine.open(db) as engine:
        return [c.cursor for c in engine.changes()]


def until(done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def check_arrived(receiver: Receiver, cursors: list[int]) -> list[dict[str, Any]]:
    """Every change arrived, signed, each message id stable for its change; in order
    per resource (the first arrival of each)."""
    messages = receiver.messages()  # verifies every signature
    first: dict[int, dict[str, Any]] = {}
    for m in messages:
        cursor = m["data"]["cursor"]
        assert m["id"].endswith(f"_{cursor}")
        first.setdefault(cursor, m)
        assert m["id"] == first[cursor]["id"]  # a duplicate has the same webhook-id
    assert sorted(first) == cursors
    by_resource: dict[str, list[int]] = {}
    for m in messages:
        if first[m["data"]["cursor"]] is m:
            by_resource.setdefault(str(m["data"]["key"]), []).append(m["data"]["cursor"])
    for order in by_resource.values():
        assert order == sorted(order)
    return messages


def test_every_change_arrives_signed_in_order_and_filters_choose(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    everything, stopped = receivers(), receivers()
    db = str(tmp_path / "f.db")
    server = start(tmp_path, db, everything.url, f"{stopped.url}=participant.left,hls.*")
    try:
        feed(server, 40)
        cursors = changes(db)
        until(lambda: len(everything.got) >= len(cursors))
        messages = check_arrived(everything, cursors)
        assert {"participant.joined", "participant.left"} == {m["type"] for m in messages}
        with Engine.open(db) as engine:
            left = [c.cursor for c in engine.changes(state="left")]
        until(lambda: len(stopped.got) >= len(left))
        assert left == sorted({m["data"]["cursor"] for m in stopped.messages()})
        assert {"participant.left"} == {m["type"] for m in stopped.messages()}
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'lifecycle_forward_deliveries_total{endpoint="http://127.0.0.1:' in metrics
    finally:
        server.stop()


def test_kill_9_during_delivery_then_restart_misses_nothing(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    slow = receivers(delay=0.02)
    db = str(tmp_path / "f.db")
    server = start(tmp_path, db, slow.url)
    feed(server, 60)
    until(lambda: len(slow.got) >= 5)
    server.stop(signal.SIGKILL)  # in the middle of forwarding
    assert len(slow.got) < len(changes(db))
    server = start(tmp_path, db, slow.url)
    try:
        cursors = changes(db)
        until(lambda: {m["data"]["cursor"] for m in slow.messages()} >= set(cursors))
        check_arrived(slow, cursors)
    finally:
        server.stop()


def test_an_endpoint_down_for_a_while_gets_everything_once_up(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    later = receivers()
    later.stop()
    db = str(tmp_path / "f.db")
    server = start(tmp_path, db, later.url)
    try:
        feed(server, 20)
        time.sleep(1.5)  # refused meanwhile: retried with backoff
        assert [] == later.got
        later.start()
        cursors = changes(db)
        until(lambda: {m["data"]["cursor"] for m in later.messages()} >= set(cursors), 60)
        check_arrived(later, cursors)
    finally:
        server.stop()


def test_an_endpoint_failing_for_ever_ends_as_dead_deliveries_and_holds_no_one_back(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    broken, healthy = receivers(status=500), receivers()
    db = str(tmp_path / "f.db")
    server = start(
        tmp_path, db, f"{broken.url}=participant.left", healthy.url,
        more=("--forward-retry-for", "2s"),
    )  # fmt: skip
    try:
        started = time.monotonic()
        feed(server, 20)
        cursors = changes(db)
        until(lambda: len(healthy.got) >= len(cursors), 10)
        assert time.monotonic() - started < 2.0  # not held back by the broken one
        check_arrived(healthy, cursors)

        def failed() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = httpx.get(
                f"{server.url}/deliveries", params={"status": "failed"}
            ).json()["items"]
            return got

        until(lambda: len(failed()) == 10, 30)
        dead = failed()
        assert {broken.url} == {d["endpoint"] for d in dead}
        assert all(d["attempts"] >= 2 and d["error"] == "HTTP 500" for d in dead)
        assert {"participant.left"} == {d["message"]["type"] for d in dead}
        broken.status = 200  # fixed: send one again
        retried = httpx.post(f"{server.url}/deliveries/{dead[0]['id']}/retry")
        assert (202, "pending") == (retried.status_code, retried.json()["status"])
        until(lambda: len(broken.got) == 1)
        assert dead[0]["id"] == broken.got[0][0]["webhook-id"]
        assert 404 == httpx.post(f"{server.url}/deliveries/nope/retry").status_code

        def delivered() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = httpx.get(
                f"{server.url}/deliveries", params={"status": "delivered"}
            ).json()["items"]
            return got

        until(lambda: len(delivered()) == 1)
        (again,) = delivered()
        assert (dead[0]["id"], dead[0]["attempts"] + 1) == (again["id"], again["attempts"])
        assert 400 == httpx.get(f"{server.url}/deliveries", params={"status": "x"}).status_code
    finally:
        server.stop()


def test_two_receivers_on_one_postgresql_forward_every_change(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """Both take webhooks and both forward to the same endpoint: the lease lets one
    forward at a time, from the shared cursor; every change arrives."""
    url = postgres_or_skip()
    reset_postgres(url)
    endpoint = receivers()
    first = start(tmp_path, url, endpoint.url)
    second = start(tmp_path, url, endpoint.url)
    try:
        for i in range(30):
            feed(first if i % 2 else second, 2, first=2 * i)
        cursors = changes(url)
        until(lambda: {m["data"]["cursor"] for m in endpoint.messages()} >= set(cursors))
        messages = check_arrived(endpoint, cursors)
        assert len(messages) < 2 * len(cursors)  # not every change twice: one forwards
    finally:
        first.stop()
        second.stop()
