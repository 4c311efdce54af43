"""`lifecycle serve`'s own limits, against real sockets: slow heads and bodies, huge
heads, too many connections, a full webhook queue, clients that leave mid-body."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from lifecycle import Engine
from lifecycle._simulate import stream

from support import Server

LOW_FILES = ["prlimit", "--nofile=128:128", "--"]
HEAD = b"POST /webhooks HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"


def connect(server: Server) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return conn


def answer_of(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_a_slow_head_is_answered_408_and_closed(serve: Callable[..., Server]) -> None:
    """A head trickled a byte at a time, and a connection that sends nothing: both are
    closed after --header-timeout (they were kept forever), while others are served."""
    server = serve("--header-timeout", "1")
    silent, slow = connect(server), connect(server)
    began = time.monotonic()
    slow.sendall(b"POST /webhooks HTTP/1.1\r\n")
    for _ in range(4):  # a byte every 0.3 s: never a whole head
        time.sleep(0.3)
        slow.sendall(b"X")
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert answer_of(slow).startswith(b"HTTP/1.1 408 ")
    assert answer_of(silent).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - began < 5
    assert metric(server, 'lifecycle_shed_total{reason="header_timeout"}') >= 2


def test_a_slow_second_head_on_a_kept_alive_connection_is_answered_408(
    serve: Callable[..., Server],
) -> None:
    """After a first request is answered, a second head that stalls is answered 408 too
    (the first request's finished response does not count as one under way)."""
    server = serve("--header-timeout", "1")
    conn = connect(server)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n")
    first = conn.recv(65536)
    while b"\r\n\r\n" not in first or not first.endswith(b"}"):  # the whole JSON answer
        first += conn.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 ")
    conn.sendall(b"GET /healthz HTTP/1.1\r\n")
    assert answer_of(conn).startswith(b"HTTP/1.1 408 ")


def test_a_slow_body_is_answered_408_and_closed(serve: Callable[..., Server]) -> None:
    """A body that stops coming: 408 after --body-timeout; nothing is stored."""
    server = serve("--body-timeout", "1")
    conn = connect(server)
    conn.sendall(HEAD + b"Content-Length: 100\r\n\r\n" + b'{"webhookType":')
    began = time.monotonic()
    assert answer_of(conn).startswith(b"HTTP/1.1 408 ")
    assert 0.9 < time.monotonic() - began < 5
    assert metric(server, 'lifecycle_shed_total{reason="body_timeout"}') == 1
    assert httpx.get(f"{server.url}/healthz").json()["events"] == 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_huge_head_is_answered_431_without_growing_the_server(
    serve: Callable[..., Server],
) -> None:
    """Eight 64 MB headers sent at once: each is cut at --max-header-size with 431 and the
    server's memory stays where it was (it grew from 55 to 636 MB)."""
    server = serve("--max-header-size", "16384")
    before = rss_kib(server.proc.pid)
    conns = [connect(server) for _ in range(8)]
    for conn in conns:
        conn.sendall(HEAD + b"X-Big: ")
    chunk = b"a" * 65536
    answers = []
    for conn in conns:
        try:
            for _ in range(1024):  # 64 MB, unless the server closes first
                conn.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answers.append(answer_of(conn))
        except ConnectionResetError:
            answers.append(b"reset")
    assert rss_kib(server.proc.pid) - before < 20 * 1024
    assert metric(server, 'lifecycle_shed_total{reason="header_too_large"}') == 8
    assert any(a.startswith(b"HTTP/1.1 431 ") for a in answers)


def test_requests_beyond_max_connections_get_503_with_retry_after(
    serve: Callable[..., Server],
) -> None:
    """Five connections held open: a request on a sixth is answered 503, Retry-After,
    and closed; once they are gone, requests are served again."""
    server = serve("--max-connections", "5", "--header-timeout", "30")
    held = [connect(server) for _ in range(5)]
    time.sleep(0.2)
    with httpx.Client(base_url=server.url) as client:
        refused = client.get("/healthz")
        assert (503, "1") == (refused.status_code, refused.headers["retry-after"])
        assert "too many connections" in refused.json()["error"]
        for conn in held:
            conn.close()
        time.sleep(0.2)
        assert 200 == client.get("/healthz").status_code


def test_a_full_queue_sheds_webhooks_with_503_and_stores_every_200(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """300 webhooks at once into a queue of 5: some are shed with 503 and Retry-After:
    1 (half a second later); every one answered 200 is stored, none of the others."""
    server = serve("--max-queue", "5")
    bodies = [orjson.dumps(p) for p in stream(20, seed=3)][:300]

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(client.post("/webhooks", content=b) for b in bodies))

    answers = asyncio.run(send_all())
    shed = [a for a in answers if a.status_code == 503]
    assert shed, "nothing was shed"
    assert all(a.headers["retry-after"] == "1" for a in shed)
    waits = sorted(a.elapsed.total_seconds() for a in shed)
    assert waits[0] < 0.8, waits  # no refusal waits for the queue to drain
    assert {200, 503} >= {a.status_code for a in answers}
    server.stop()
    stored = [b for b, a in zip(bodies, answers, strict=True) if a.status_code == 200]
    with Engine.open(str(tmp_path / "lifecycle.db")) as engine:
        assert sorted(stored) == sorted(bytes(r.payload) for r in engine.log())  # type: ignore[arg-type]


def test_a_client_that_leaves_mid_body_is_an_info_line_and_a_client_abort(
    serve: Callable[..., Server],
) -> None:
    """No traceback and no 500 (there was one each time): an info line, counted."""
    server = serve()
    conn = connect(server)
    conn.sendall(HEAD + b"Content-Length: 100\r\n\r\n" + b'{"webhookType":')
    time.sleep(0.3)
    conn.close()
    time.sleep(0.3)
    assert metric(server, "lifecycle_client_aborts_total") == 1
    assert 'status="500"' not in httpx.get(f"{server.url}/metrics").text
    log = server.log.read_text()
    assert "the client went away" in log
    assert "Traceback" not in log


def test_a_low_open_file_limit_lowers_the_connection_cap(serve: Callable[..., Server]) -> None:
    """Under an open-file limit of 128 (hard), --max-connections 1000 cannot fit: the
    server says so and serves 64 connections, and a request beyond them is answered 503
    at once instead of waiting, unaccepted, for a free file (which locked legitimate
    requests out for more than 30 s)."""
    if shutil.which("prlimit") is None:
        pytest.skip("no prlimit here")
    server = serve("--max-connections", "1000", "--header-timeout", "30", prefix=LOW_FILES)
    assert "leaves room for 64 connections" in server.log.read_text()
    held = [connect(server) for _ in range(120)]  # as many as the server may open files
    try:
        began = time.monotonic()
        refused = httpx.get(f"{server.url}/healthz", timeout=5)
        assert (503, "1") == (refused.status_code, refused.headers["retry-after"])
        assert time.monotonic() - began < 2
    finally:
        for conn in held:
            conn.close()


def test_a_whole_head_over_the_cap_in_one_write_is_431(serve: Callable[..., Server]) -> None:
    """A 60 kB head sent at once (it was let through: only a head still unfinished
    after a read was measured); a pipelined webhook whose next head is cut short after
    20 kB of body is answered 200 (its body was counted as the next head's)."""
    server = serve("--max-header-size", "16384")
    conn = connect(server)
    conn.sendall(HEAD + b"X-Big: " + b"a" * 60_000 + b"\r\nContent-Length: 0\r\n\r\n")
    assert answer_of(conn).startswith(b"HTTP/1.1 431 ")
    body = orjson.dumps(
        {
            "webhookType": "session-started",
            "data": {"meetingId": "m", "sessionId": "s", "pad": "p" * 20_000},
        }
    )
    conn = connect(server)
    conn.sendall(
        HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body + b"GET /healthz HTTP/1.1\r\nHo"
    )
    assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
    conn.close()


def test_shed_answers_keep_their_order_and_their_connection_ends(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """The writer held (another connection has the SQLite write lock), webhook A fills a
    queue of 1. B, sent after A on A's connection, is answered after A (a 503 went out
    ahead of A's answer, and the sender took it for A's); C, shed on an HTTP/1.0
    connection, is answered and the connection closed (it stayed open for ever)."""
    server = serve("--max-queue", "1")
    db = sqlite3.connect(tmp_path / "lifecycle.db", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    try:
        conn = connect(server)
        conn.sendall(webhook_request(b"A"))
        time.sleep(0.3)  # A waits for the writer: the queue is full
        conn.sendall(webhook_request(b"B"))
        old = connect(server)
        old.sendall(webhook_request(b"C").replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        old.settimeout(5)
        assert answer_of(old).startswith(b"HTTP/1.1 503 ")  # and closed: answer_of ended
        time.sleep(0.8)  # any shed answer of B would be on the wire by now
    finally:
        db.execute("ROLLBACK")
        db.close()
    conn.settimeout(10)
    answers = b""
    while len(re.findall(rb"HTTP/1\.1 \d{3} ", answers)) < 2 or not answers.endswith(b"}"):
        answers += conn.recv(65536)
    first, second = re.split(rb"(?=HTTP/1\.1 \d{3} )", answers)[1:]
    assert first.startswith(b"HTTP/1.1 200 ")
    assert b'"meetingId":"A"' in first
    assert b'"meetingId":"B"' in second or second.startswith(b"HTTP/1.1 503 ")


def webhook_request(meeting: bytes) -> bytes:
    body = b'{"webhookType":"session-started","data":{"meetingId":"%s","sessionId":"s"}}' % meeting
    return HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
