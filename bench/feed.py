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

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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
    with httpx.stream("GET", f"{url}/changes/stream", timeout=None) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrived.setdefault(orjson.loads(line[5:])["seq"], time.monotonic())
            if stop.is_set():
                return


async def load(url: str, rate: float, seconds: float) -> tuple[dict[int, float], list[float]]:
    """POST webhooks at ``rate`` a second; when each one's 200 came (by its seq), and
    the round trips of ``/healthz`` asked every 50 ms meanwhile."""
    answered: dict[int, float] = {}
    probes: list[float] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        start = time.monotonic()
        total = int(rate * seconds)

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            kind = "participant-joined" if i % 2 == 0 else "participant-left"
            data = {"meetingId": f"m{i // 1000}", "sessionId": "s", "participantId": f"p{i // 2}"}
            r = await client.post("/webhooks", json={"webhookType": kind, "data": data})
            answered[r.json()["seq"]] = time.monotonic()

        async def probe() -> None:
            while time.monotonic() - start < seconds:
                t = time.monotonic()
                await client.get("/healthz")
                probes.append(time.monotonic() - t)
                await asyncio.sleep(0.05)

        await asyncio.gather(probe(), *(one(i) for i in range(total)))
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

            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute(
                    "DROP TABLE IF EXISTS events, resources, lifecycle_meta, lifecycle_cursor, "
                    "lifecycle_forwards, lifecycle_deliveries"
                )
        print(f"\n{name}, {args.rate:g} webhooks/s for {args.seconds:g} s\n")
        print("| from a webhook's 200 to its change at | p50 ms | p99 ms | missing |")
        print("|---|---|---|---|")
        with tempfile.TemporaryDirectory() as folder:
            run(args.rate, args.seconds, db, Path(folder))


if __name__ == "__main__":
    main()
