"""How fast `lifecycle serve` takes signed webhooks over loopback, beside an HTTP floor.

Run: python bench/http.py [--seconds 10] [--pairs 3] [--rate 500] [--connections 32]

One run measures, on the same generated stream (signed with a key made for the run):

1. the baseline: in-process ``Engine.open(sqlite).feed(body)`` and RSA verification of the
   same bodies, single-threaded;
2. throughput against the floor: wrk (Debian's ``wrk``; ``apt-get install wrk``) from a
   second process, ``--connections`` keep-alive connections as fast as they go, for
   ``--seconds``, at two servers started side by side: ``lifecycle serve`` and the floor,
   a bare Starlette endpoint on the same uvicorn settings that reads the body, verifies
   its signature as the receiver does (``videosdk-signature``, RSA-SHA256, PKCS#1 v1.5)
   and answers 200, with no engine. The two are driven in ``--pairs`` back-to-back pairs
   of wrk runs, the order alternating; the ratio reported is the median of the pairs'
   (served / floor), so that it holds on a noisy machine;
3. latency at a fixed rate: an open-loop asyncio client sending ``--rate`` webhooks a
   second; each latency counts from when the request was due, so a stalled server is
   not hidden (no coordinated omission).

The server runs with SQLite in WAL mode, synchronous=NORMAL (the default); every answer
comes after its commit. Results are printed as a Markdown table with ratios.

``--overload`` measures instead what happens above capacity: wrk holds
``--overload-connections`` (1,000) keep-alive connections posting signed webhooks as
fast as they are answered for ``--overload-seconds`` (20), while a probe, an open-loop
client of its own at 20 webhooks a second, times each of its answers from when it was
due. Reported: webhooks answered 200 a second, the share shed with 503, the p99 latency
of the probe's accepted (200) and shed (503) answers, the server's peak memory (VmHWM),
and whether every webhook answered 200 is in the store.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # run as a script, this file would shadow the standard library's http

import argparse
import asyncio
import base64
import binascii
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import httpx
import orjson
import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lifecycle import Engine
from lifecycle._simulate import stream

SIGNATURE_HEADER = "videosdk-signature"
TARGET_X_FLOOR = 0.4  # lifecycle serve's webhooks/s, at least this share of the floor's
TARGET_ACCEPTED_P99 = 0.250  # seconds: the p99 of accepted webhooks under overload
TARGET_SHED_WITHIN = 1.0  # seconds: a shed webhook's answer comes within this
WRK_COUNTING = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function response(status, headers, body)
  local name = "s" .. status
  counts[name] = (counts[name] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for _, name in ipairs({"s200", "s503"}) do
      total[name] = (total[name] or 0) + (thread:get("counts")[name] or 0)
    end
  end
  io.write(string.format("STATUS 200=%d 503=%d\\n", total["s200"], total["s503"]))
end
"""
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
    """A server as a separate process: `lifecycle serve` on a fresh SQLite file, or the floor."""

    def __init__(self, folder: Path, pem: bytes, name: str, *options: str, floor: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (folder / "public.pem").write_bytes(pem)
        common = ["--port", str(self.port), "--public-key", str(folder / "public.pem")]
        command = (
            [sys.executable, __file__, "--serve-floor", *common]
            if floor
            else [
                sys.executable,
                "-m",
                "lifecycle",
                "serve",
                "--db",
                str(folder / f"{name}.db"),
                *common,
                "--log-level",
                "warning",
                *options,
            ]
        )
        self.proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): {command}")
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


def floor_app(pem: bytes) -> Starlette:
    """The HTTP floor: read the body, verify its signature as the receiver does, answer 200.

    No engine and no store; ``/healthz`` tells how many webhooks it accepted.
    """
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, rsa.RSAPublicKey)
    accepted = 0

    async def webhook(request: Request) -> Response:
        nonlocal accepted
        body = await request.body()
        try:
            key.verify(
                base64.b64decode(request.headers.get(SIGNATURE_HEADER, ""), validate=True),
                body,
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (binascii.Error, ValueError, InvalidSignature):
            return Response(status_code=401)
        accepted += 1
        return Response(status_code=200)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"events": accepted})

    return Starlette(
        routes=[
            Route("/webhooks", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def serve_floor(port: int, public_key: Path) -> None:
    """Serve the floor with the uvicorn settings of `lifecycle serve`."""
    uvicorn.Server(
        uvicorn.Config(
            floor_app(public_key.read_bytes()),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=30,
            lifespan="on",
        )
    ).run()


def wrk_files(folder: Path, bodies: list[bytes], signatures: list[str]) -> tuple[Path, Path]:
    """wrk's request script and the signed requests it cycles through."""
    data = folder / "requests.tsv"
    data.write_bytes(
        b"".join(s.encode() + b"\t" + b + b"\n" for s, b in zip(signatures, bodies, strict=True))
    )
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT)
    return script, data


def throughput(url: str, files: tuple[Path, Path], seconds: int, connections: int) -> float:
    """Webhooks a second that wrk gets answered 200 (no non-2xx allowed)."""
    script, data = files
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


def paired(
    served: Server,
    floor: Server,
    files: tuple[Path, Path],
    seconds: int,
    connections: int,
    pairs: int,
) -> list[tuple[float, float]]:
    """(served, floor) webhooks/s of each pair of wrk runs, back to back, order alternating."""
    out = []
    for i in range(pairs):
        rates = {}
        for server in (served, floor) if i % 2 == 0 else (floor, served):
            rates[server.url] = throughput(server.url, files, seconds, connections)
        out.append((rates[served.url], rates[floor.url]))
        print(
            f"  pair {i + 1}: served {out[-1][0]:,.0f}/s, floor {out[-1][1]:,.0f}/s, "
            f"{out[-1][0] / out[-1][1]:.2f}",
            file=sys.stderr,
        )
    return out


class Connections:
    """Keep-alive HTTP/1.1 connections to one server, opened as needed, at most ``limit``.

    The open-loop client's own: a request is a prepared byte string and an answer is
    read by its Content-Length, so that the client costs tens of microseconds a request
    and does not fall behind the rate it must keep (a general client such as httpx costs
    about a millisecond, and once late its pool of queued requests slows it further).
    """

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.opened = 0
        self.idle: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.LifoQueue()
        )

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def post(self, request: bytes) -> int:
        """Send ``request`` on an idle connection (or a new one); the answer's status."""
        if self.idle.empty() and self.opened < self.limit:
            self.opened += 1
            conn = await self._open()
        else:
            conn = await self.idle.get()
        for attempt in range(2):
            reader, writer = conn
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                # the server closed an idle connection as the request went out: not
                # read, so sent again on a new connection
                if attempt or (isinstance(e, asyncio.IncompleteReadError) and e.partial):
                    raise
                writer.close()
                conn = await self._open()
                continue
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if length is None:
                raise RuntimeError(f"an answer without Content-Length: {head!r}")
            await reader.readexactly(int(length.group(1)))
            self.idle.put_nowait(conn)
            return int(head[9:12])
        raise AssertionError("unreachable")

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait()[1].close()


async def fixed_rate(
    url: str, bodies: list[bytes], signatures: list[str], rate: float, seconds: float
) -> list[float]:
    """Send ``rate`` webhooks a second for ``seconds``; each one's latency from when due."""
    total = int(rate * seconds)
    host, _, port = url.removeprefix("http://").partition(":")
    requests = [
        b"POST /webhooks HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"%s: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (host.encode(), SIGNATURE_HEADER.encode(), sig.encode(), len(body), body)
        for body, sig in zip(bodies, signatures, strict=True)
    ]
    connections = Connections(host, int(port), 256)
    latencies: list[float] = []

    async def one(i: int, due: float) -> None:
        status = await connections.post(requests[i % len(requests)])
        if status != 200:
            raise RuntimeError(f"webhook {i} answered {status}")
        latencies.append(time.perf_counter() - due)

    tasks = []
    start = time.perf_counter() + 0.1
    for i in range(total):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    connections.close()
    return latencies


def overload(
    folder: Path,
    pem: bytes,
    files: tuple[Path, Path],
    bodies: list[bytes],
    signatures: list[str],
    connections: int,
    seconds: int,
    options: list[str],
) -> dict[str, float]:
    """Drive a fresh server above capacity; what it answered, how fast, what it kept."""
    script, data = files
    counting = folder / "counting.lua"
    counting.write_text("counts = {}\n" + script.read_text() + WRK_COUNTING)
    server = Server(folder, pem, "overload", *options)
    try:
        wrk = subprocess.Popen(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "-s",
                str(counting),
                server.url,
                "--",
                str(data),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(1)  # the probe samples the overload, not the ramp
        probe = asyncio.run(_probe(server.url, bodies, signatures, 20.0, seconds - 2))
        out, _ = wrk.communicate(timeout=seconds + 60)
        found = re.search(r"STATUS 200=(\d+) 503=(\d+)", out)
        if found is None:
            raise RuntimeError(f"wrk gave no counts:\n{out}")
        answered = {200: int(found.group(1)), 503: int(found.group(2))}
        print(out, file=sys.stderr)
        inside = server_p99(server.url)
        stored = server.events()
        peak = _peak_kib(server.proc.pid)
    finally:
        server.stop()
    accepted = [t for status, t in probe if status == 200]
    shed = [t for status, t in probe if status == 503]
    probe_200 = len(accepted)
    return {
        "rate": answered[200] / seconds,
        "shed": answered[503] / max(1, answered[200] + answered[503]),
        "accepted_p99": percentile(accepted, 99) if len(accepted) > 1 else float("nan"),
        "shed_p99": percentile(shed, 99) if len(shed) > 1 else float("nan"),
        "probe": len(probe),
        "probe_accepted": len(accepted),
        "peak_mib": peak / 1024,
        "inside_p99": inside,
        "answered_200": answered[200] + probe_200,
        "stored": stored,
    }


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def _probe(
    url: str, bodies: list[bytes], signatures: list[str], rate: float, seconds: float
) -> list[tuple[int, float]]:
    """An open-loop client: each webhook's status and latency from when it was due."""
    host, _, port = url.removeprefix("http://").partition(":")
    out: list[tuple[int, float]] = []

    async def one(i: int, due: float) -> None:
        body, sig = bodies[-1 - i], signatures[-1 - i]
        request = (
            b"POST /webhooks HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"%s: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (host.encode(), SIGNATURE_HEADER.encode(), sig.encode(), len(body), body)
        )
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        out.append((int(head[9:12]), time.perf_counter() - due))
        writer.close()

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return out


def report_overload(result: dict[str, float], connections: int, seconds: int) -> None:
    print(f"\n{os.cpu_count()} cores; `lifecycle serve` defaults; SQLite; signatures checked\n")
    print("| overload run | value | target | |")
    print("|---|---|---|---|")
    print(f"| wrk: {connections} connections, {seconds} s | | | |")
    print(f"| webhooks answered 200 | {result['rate']:,.0f}/s | | |")
    print(f"| share shed with 503 | {result['shed']:.0%} | | |")
    p99, shed_p99 = result["accepted_p99"] * 1000, result["shed_p99"] * 1000
    ok = (
        "met"
        if p99 < TARGET_ACCEPTED_P99 * 1000
        else "too few accepted samples"
        if p99 != p99
        else "**not met**"
    )
    print(
        f"| probe ({result['probe']:.0f} webhooks, {result['probe_accepted']:.0f} accepted): "
        f"p99 of accepted | {p99:.0f} ms | "
        f"< {TARGET_ACCEPTED_P99 * 1000:.0f} ms | {ok} |"
    )
    ok = "met" if shed_p99 < TARGET_SHED_WITHIN * 1000 or shed_p99 != shed_p99 else "**not met**"
    print(f"| probe: p99 of shed (503) | {shed_p99:.0f} ms | < 1,000 ms | {ok} |")
    print(
        "| accepted, inside the server: p99 (histogram bucket) | "
        f"≤ {result['inside_p99'] * 1000:g} ms | | |"
    )
    print(f"| server's peak memory (VmHWM) | {result['peak_mib']:.0f} MiB | | |")
    kept = result["stored"] >= result["answered_200"]
    print(
        f"| answered 200 / stored | {result['answered_200']:,.0f} / {result['stored']:,.0f} | "
        f"every 200 stored | {'met' if kept else '**not met**'} |"
    )


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
    parser.add_argument("--seconds", type=int, default=10, help="of each wrk run")
    parser.add_argument(
        "--pairs", type=int, default=3, help="pairs of wrk runs, served and floor (default 3)"
    )
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--redelivery-window", metavar="SECONDS", help="run the servers with this redelivery window"
    )
    parser.add_argument("--overload", action="store_true", help="run the overload measure only")
    parser.add_argument("--overload-connections", type=int, default=1000)
    parser.add_argument("--overload-seconds", type=int, default=20)
    parser.add_argument(
        "--serve-options", default="", help="more options of lifecycle serve, one string"
    )
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--public-key", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:  # the floor's own process, started by Server
        serve_floor(args.port, args.public_key)
        return
    if shutil.which("wrk") is None:
        sys.exit("bench/http.py needs wrk: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="lifecycle-http-bench-"))
    print(f"signing {args.events} webhooks ...", file=sys.stderr)
    bodies, signatures, pem = signed_bodies(args.events)
    base = baseline(bodies, signatures, pem, folder)
    files = wrk_files(folder, bodies, signatures)
    if args.overload:
        conns, secs = args.overload_connections, args.overload_seconds
        extra = shlex.split(args.serve_options)
        result = overload(folder, pem, files, bodies, signatures, conns, secs, extra)
        report_overload(result, conns, secs)
        shutil.rmtree(folder, ignore_errors=True)
        return

    options = (
        [] if args.redelivery_window is None else ["--redelivery-window", args.redelivery_window]
    )
    server = Server(folder, pem, "throughput", *options)
    try:
        floor = Server(folder, pem, "floor", floor=True)
        try:
            rates = paired(server, floor, files, args.seconds, args.connections, args.pairs)
            accepted = floor.events()
        finally:
            floor.stop()
        stored = server.events()
    finally:
        server.stop()
    server = Server(folder, pem, "latency", *options)
    try:
        latencies = asyncio.run(fixed_rate(server.url, bodies, signatures, args.rate, args.seconds))
        inside = server_p99(server.url)
    finally:
        server.stop()

    ratios = [served / bare for served, bare in rates]
    ratio = statistics.median(ratios)
    served_median = statistics.median(r[0] for r in rates)
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    print(
        f"\n{os.cpu_count()} cores; SQLite WAL, synchronous=NORMAL; "
        f"{len(bodies)} distinct signed bodies, cycled; redelivery window: "
        f"{args.redelivery_window or 'off'}\n"
    )
    runs = " | ".join(f"pair {i + 1}" for i in range(len(rates)))
    print(f"| wrk, {args.connections} connections, {args.seconds} s a run | {runs} | median |")
    print("|---|" + "---|" * (len(rates) + 1))
    print(
        "| floor: Starlette, RSA verify, 200 | "
        + " | ".join(f"{bare:,.0f}/s" for _, bare in rates)
        + f" | {statistics.median(r[1] for r in rates):,.0f}/s |"
    )
    print(
        "| `lifecycle serve`, SQLite | "
        + " | ".join(f"{served:,.0f}/s" for served, _ in rates)
        + f" | {served_median:,.0f}/s |"
    )
    print("| served ÷ floor | " + " | ".join(f"{x:.2f}" for x in ratios) + f" | {ratio:.2f} |")
    print()
    print("| measure | value | ratio |")
    print("|---|---|---|")
    print(f"| in-process `feed` (baseline) | {base['feed']:,.0f}/s | 1.00 |")
    print(
        f"| in-process RSA verify | {base['verify']:,.0f}/s | {base['verify'] / base['feed']:.2f} |"
    )
    print(
        f"| served, wrk {args.connections} connections, {args.seconds} s (median) | "
        f"{served_median:,.0f}/s | {served_median / base['feed']:.2f} |"
    )
    print(f"| events the server stored in those runs | {stored:,} | |")
    print(f"| webhooks the floor accepted in those runs | {accepted:,} | |")
    print(f"| served at {args.rate:,.0f}/s: p50 latency | {p50:.2f} ms | |")
    print(f"| served at {args.rate:,.0f}/s: p99 latency | {p99:.2f} ms | |")
    print(f"| the same, inside the server (histogram bucket) | ≤ {inside * 1000:g} ms | |")
    print()
    print("| target | measured | |")
    print("|---|---|---|")
    met = "met" if ratio >= TARGET_X_FLOOR else "**not met**"
    print(
        f"| `lifecycle serve` on SQLite at least {TARGET_X_FLOOR:g}x the floor's signed "
        f"webhooks/s | {ratio:.2f}x (median of {len(ratios)} pairs) | {met} |"
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
