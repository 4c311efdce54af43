"""How soon a change reaches its readers: from a webhook's 200 to its change arriving at
a Server-Sent Events client and at a forwarding endpoint.

Usage: python bench/feed.py [--rate 500] [--seconds 10] [--postgres URL]

A ``lifecycle serve`` process (SQLite in a temporary folder, or ``--postgres``) forwards
every change to a local endpoint (a threaded HTTP server in this process) while a client
reads ``/changes/stream``. Webhooks (participants joining and leaving, each a change)
are POSTed at ``--rate`` a second for ``--seconds``, paced, a few in flight at once.
Each change is matched to its webhook by ``seq``; its latency is the time from the
webhook's 200 to its arrival. The floor, in the same run: the round trip of ``GET
/healthz`` on the same server under the same load (what any answer costs here).
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would shadow the standard library's http

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Endpoint:
    """Keeps when each forwarded change (by seq) arrived."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as any real endpoint

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                now = time.monotonic()
                endpoint.arrived.setdefault(orjson.loads(body)["data"]["seq"], now)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def read_stream(url: str, arrived: dict[int, float], stop: threading.Event) -> None:
    """Keep when each change (by seq) arrives on the event stream."""
    try:
        with httpx.stream("GET", f"{url}/changes/stream", timeout=None) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    arrived.setdefault(orjson.loads(line[5:])["seq"], time.monotonic())
                if stop.is_set():
                    return
    except httpx.HTTPError:
        return  # the server stopped


async def load(url: str, rate: float, seconds: float) -> tuple[dict[int, float], list[float]]:
    """POST webhooks at ``rate`` a second (raw keep-alive connections: a general client
    such as httpx costs about a millisecond a request, and would fall behind); when each
    one's 200 came (by its seq), and the round trips of ``/healthz`` every 50 ms."""
    host, _, port = url.removeprefix("http://").partition(":")
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    answered: dict[int, float] = {}
    probes: list[float] = []

    async def send(request: bytes) -> bytes:
        conn = idle.pop() if idle else await asyncio.open_connection(host, int(port))
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        idle.append(conn)
        return body

    def post(i: int) -> bytes:
        kind = "participant-joined" if i % 2 == 0 else "participant-left"
        data = {"meetingId": f"m{i // 1000}", "sessionId": "s", "participantId": f"p{i // 2}"}
        body = orjson.dumps({"webhookType": kind, "data": data})
        return (
            b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    async def one(request: bytes) -> None:
        answer = await send(request)
        answered[orjson.loads(answer)["seq"]] = time.monotonic()

    async def probe(until: float) -> None:
        while time.monotonic() < until:
            t = time.monotonic()
            await send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            probes.append(time.monotonic() - t)
            await asyncio.sleep(0.05)

    requests = [post(i) for i in range(int(rate * seconds))]
    start = time.monotonic() + 0.1
    tasks = [asyncio.create_task(probe(start + seconds))]
    for i, request in enumerate(requests):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(request)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return answered, probes


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000


def run(rate: float, seconds: float, db: str | None, folder: Path) -> None:
    endpoint = Endpoint()
    port = free_port()
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - open for the server's life
    server = subprocess.Popen(
        [sys.executable, "-m", "lifecycle", "serve", "--insecure-no-signature", "--port", str(port),
         "--db", db or str(folder / "feed.db"), "--sweep-interval", "0", "--log-level", "warning",
         "--forward", endpoint.url],
        env={**os.environ, "LIFECYCLE_FORWARD_SECRET": SECRET},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = wait_for(server, f"http://127.0.0.1:{port}", folder / "server.log")
        streamed: dict[int, float] = {}
        stop = threading.Event()
        reader = threading.Thread(target=read_stream, args=(url, streamed, stop), daemon=True)
        reader.start()
        time.sleep(0.5)
        answered, probes = asyncio.run(load(url, rate, seconds))
        last = max(answered.values())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            answered.keys() <= streamed.keys() and answered.keys() <= endpoint.arrived.keys()
        ):
            time.sleep(0.05)
        stop.set()
        caught_up = max(endpoint.arrived.values()) - last
        for name, arrived in (("SSE client", streamed), ("forwarding endpoint", endpoint.arrived)):
            lags = [arrived[s] - t for s, t in answered.items() if s in arrived]
            p50, p99 = percentiles(lags)
            missing = len(answered) - len(lags)
            print(f"| {name} | {p50:.1f} | {p99:.1f} | {missing} |")
        p50, p99 = percentiles(probes)
        print(f"| floor: GET /healthz round trip under the load | {p50:.1f} | {p99:.1f} | - |")
        sent = len(answered) / (last - min(answered.values()))
        got = sorted(endpoint.arrived.values())
        forwarded = len(got) / (got[-1] - got[0])
        print(
            f"\nwebhooks answered: {len(answered):,} at {sent:,.0f}/s; forwarded at "
            f"{forwarded:,.0f}/s ({forwarded / sent:.2f}x); the last forwarded "
            f"{caught_up * 1000:.0f} ms after the last 200"
        )
    finally:
        server.terminate()
        server.wait(30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(server: subprocess.Popen[bytes], url: str, log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return url
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.1)
    raise RuntimeError("the server did not start in time")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rate", type=float, default=500.0, help="webhooks a second (500)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long (10)")
    ap.add_argument("--postgres", metavar="URL", help="also on this PostgreSQL database")
    args = ap.parse_args()
    for name, db in (("SQLite", None), ("PostgreSQL", args.postgres)):
        if name == "PostgreSQL" and db is None:
            continue
        if db is not None:
            import psycopg

            from lifecycle.stores.postgres import DROP

            with psycopg.connect(db, autocommit=True) as conn:
                for statement in DROP:
                    conn.execute(statement)
        print(f"\n{name}, {args.rate:g} webhooks/s for {args.seconds:g} s\n")
        print("| from a webhook's 200 to its change at | p50 ms | p99 ms | missing |")
        print("|---|---|---|---|")
        with tempfile.TemporaryDirectory() as folder:
            run(args.rate, args.seconds, db, Path(folder))


if __name__ == "__main__":
    main()
