"""How fast `lifecycle serve` takes signed webhooks over loopback, beside in-process `feed`.

Run: python bench/http.py [--seconds 10] [--rate 500] [--connections 32]

One run measures, on the same generated stream (signed with a key made for the run):

1. the baseline: in-process ``Engine.open(sqlite).feed(body)`` and RSA verification of the
   same bodies, single-threaded;
2. throughput: wrk (Debian's ``wrk``; ``apt-get install wrk``) from a second process,
   ``--connections`` keep-alive connections as fast as they go, for ``--seconds``;
3. latency at a fixed rate: an open-loop asyncio client sending ``--rate`` webhooks a
   second; each latency counts from when the request was due, so a stalled server is
   not hidden (no coordinated omission).

The server runs with SQLite in WAL mode, synchronous=NORMAL (the default); every answer
comes after its commit. Results are printed as a Markdown table with ratios.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # run as a script, this file would shadow the standard library's http

import argparse
import asyncio
import base64
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import httpx
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lifecycle import Engine
from lifecycle._simulate import stream

WRK_SCRIPT = """
local requests, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do
    local sig, body = line:match("^(%S+)\\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", "/webhooks",
      {["videosdk-signature"] = sig, ["Content-Type"] = "application/json"}, body)
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
"""


def signed_bodies(n: int) -> tuple[list[bytes], list[str], bytes]:
    """``n`` webhook bodies of a realistic stream, their signatures and the public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bodies = [orjson.dumps(p) for p in stream(n // 10 + 1, seed=1, shuffle=0.1)][:n]
    signatures = [
        base64.b64encode(key.sign(b, padding.PKCS1v15(), hashes.SHA256())).decode() for b in bodies
    ]
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bodies, signatures, pem


def baseline(
    bodies: list[bytes], signatures: list[str], pem: bytes, folder: Path
) -> dict[str, float]:
    """In-process rates (per second): single feeds into SQLite, and signature checks."""
    public = serialization.load_pem_public_key(pem)
    assert isinstance(public, rsa.RSAPublicKey)
    with Engine.open(str(folder / "baseline.db")) as engine:
        start = time.perf_counter()
        for body in bodies:
            engine.feed(body)
        feed = len(bodies) / (time.perf_counter() - start)
    start = time.perf_counter()
    for body, sig in zip(bodies, signatures, strict=True):
        public.verify(base64.b64decode(sig), body, padding.PKCS1v15(), hashes.SHA256())
    verify = len(bodies) / (time.perf_counter() - start)
    return {"feed": feed, "verify": verify}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`lifecycle serve` on a fresh SQLite file, as a separate process."""

    def __init__(self, folder: Path, pem: bytes, name: str, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (folder / "public.pem").write_bytes(pem)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lifecycle",
                "serve",
                "--db",
                str(folder / f"{name}.db"),
                "--port",
                str(self.port),
                "--public-key",
                str(folder / "public.pem"),
                "--log-level",
                "warning",
                *options,
            ],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/healthz").raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def events(self) -> int:
        return int(httpx.get(f"{self.url}/healthz").json()["events"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def throughput(
    url: str,
    bodies: list[bytes],
    signatures: list[str],
    folder: Path,
    seconds: int,
    connections: int,
) -> float:
    """Webhooks a second that wrk gets answered 200 (no non-2xx allowed)."""
    data = folder / "requests.tsv"
    data.write_bytes(
        b"".join(s.encode() + b"\t" + b + b"\n" for s, b in zip(signatures, bodies, strict=True))
    )
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT)
    run = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            str(data),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in run.stdout or "errors" in run.stdout.lower():
        raise RuntimeError(f"wrk saw failures:\n{run.stdout}{run.stderr}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", run.stdout).group(1))  # type: ignore[union-attr]


async def fixed_rate(
    url: str, bodies: list[bytes], signatures: list[str], rate: float, seconds: float
) -> list[float]:
    """Send ``rate`` webhooks a second for ``seconds``; each one's latency from when due."""
    total = int(rate * seconds)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        start = time.perf_counter() + 0.1

        async def one(i: int) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            k = i % len(bodies)
            answer = await client.post(
                "/webhooks", content=bodies[k], headers={"videosdk-signature": signatures[k]}
            )
            answer.raise_for_status()
            latencies.append(time.perf_counter() - due)

        await asyncio.gather(*(one(i) for i in range(total)))
    return latencies


def server_p99(url: str) -> float:
    """The server's own p99 of answered webhooks: the histogram bucket bound it falls in."""
    text = httpx.get(f"{url}/metrics").text
    buckets = [
        (float(m.group(1)), float(m.group(2)))
        for m in re.finditer(
            r'lifecycle_request_duration_seconds_bucket\{le="([^"]+)",method="POST",'
            r'route="/webhooks",status="200"\} (\S+)',
            text,
        )
    ]
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= 0.99 * total)


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=1000)[int(p * 10) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--redelivery-window", metavar="SECONDS", help="run the servers with this redelivery window"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/http.py needs wrk: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="lifecycle-http-bench-"))
    print(f"signing {args.events} webhooks ...", file=sys.stderr)
    bodies, signatures, pem = signed_bodies(args.events)
    base = baseline(bodies, signatures, pem, folder)

    options = (
        [] if args.redelivery_window is None else ["--redelivery-window", args.redelivery_window]
    )
    server = Server(folder, pem, "throughput", *options)
    try:
        rate = throughput(server.url, bodies, signatures, folder, args.seconds, args.connections)
        stored = server.events()
    finally:
        server.stop()
    server = Server(folder, pem, "latency", *options)
    try:
        latencies = asyncio.run(fixed_rate(server.url, bodies, signatures, args.rate, args.seconds))
        inside = server_p99(server.url)
    finally:
        server.stop()

    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    print(
        f"\n{os.cpu_count()} cores; SQLite WAL, synchronous=NORMAL; "
        f"{len(bodies)} distinct signed bodies, cycled; redelivery window: "
        f"{args.redelivery_window or 'off'}\n"
    )
    print("| measure | value | ratio |")
    print("|---|---|---|")
    print(f"| in-process `feed` (baseline) | {base['feed']:,.0f}/s | 1.00 |")
    print(
        f"| in-process RSA verify | {base['verify']:,.0f}/s | {base['verify'] / base['feed']:.2f} |"
    )
    print(
        f"| served, wrk {args.connections} connections, {args.seconds} s | {rate:,.0f}/s | "
        f"{rate / base['feed']:.2f} |"
    )
    print(f"| events the server stored in that run | {stored:,} | |")
    print(f"| served at {args.rate:,.0f}/s: p50 latency | {p50:.2f} ms | |")
    print(f"| served at {args.rate:,.0f}/s: p99 latency | {p99:.2f} ms | |")
    print(f"| the same, inside the server (histogram bucket) | ≤ {inside * 1000:g} ms | |")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
