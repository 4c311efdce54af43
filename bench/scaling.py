"""Several receivers on one PostgreSQL: webhooks taken a second by 1, 2 and 4 of them.

Usage: python bench/scaling.py --postgres URL [--seconds 10] [--receivers 1,2,4]

For each count, that many ``lifecycle serve`` processes (unsigned webhooks, no
sweeping) share one emptied database, and one ``wrk`` (Debian's ``wrk``) per receiver
posts webhooks as fast as they are answered, 16 keep-alive connections each, every body
a new participant (so that no two requests touch one resource), for ``--seconds``. Reported:
200s a second, summed over the receivers; every answer is a commit. The floor in the
same run: one receiver with the same total number of connections (what one process
does with the same offered load). Everything runs on this machine: the receivers,
PostgreSQL and wrk share its cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would shadow the standard library's http

import argparse
import os
import re
import socket
import subprocess
import tempfile
import time

import httpx
import psycopg

from lifecycle.stores.postgres import DROP

WRK_SCRIPT = """
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"webhookType":"participant-joined","data":{"meetingId":"m%d","sessionId":"s",' ..
    '"participantId":"p%d"}}', math.random(1, 1000000000), n)
  return wrk.format("POST", "/webhooks", {["Content-Type"] = "application/json"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(db: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = open(folder / f"server-{port}.log", "wb")  # noqa: SIM115 - for the server's life
    server = subprocess.Popen(
        [sys.executable, "-m", "lifecycle", "serve", "--insecure-no-signature", "--db", db,
         "--port", str(port), "--sweep-interval", "0", "--log-level", "warning",
         "--max-queue", "4096"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("a receiver did not start")


def run(db: str, receivers: int, connections: int, seconds: int, folder: Path) -> float:
    """200s a second over ``receivers`` receivers, ``connections`` each."""
    with psycopg.connect(db, autocommit=True) as conn:
        for statement in DROP:
            conn.execute(statement)
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT)
    servers = [start(db, folder) for _ in range(receivers)]
    try:
        wrks = [
            subprocess.Popen(
                [
                    "wrk",
                    "-t",
                    "2",
                    "-c",
                    str(connections),
                    "-d",
                    f"{seconds}s",
                    "-s",
                    str(script),
                    url,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _, url in servers
        ]
        total = 0.0
        for wrk in wrks:
            out, _ = wrk.communicate(timeout=seconds + 60)
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            done = re.search(r"(\d+) requests in ([\d.]+)s", out)
            if done is None:
                raise RuntimeError(out)
            ok = int(done[1]) - (int(errors[1]) if errors else 0)
            total += ok / float(done[2])
        return total
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--postgres", metavar="URL", required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--receivers", default="1,2,4")
    ap.add_argument("--connections", type=int, default=16, help="per receiver (16)")
    args = ap.parse_args()
    counts = [int(n) for n in args.receivers.split(",")]
    print(f"{os.cpu_count()} cores; {args.seconds} s a run\n")
    print("| receivers | connections | webhooks/s (200, committed) | x one, same connections |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for n in counts:
            connections = args.connections * n
            several = run(args.postgres, n, args.connections, args.seconds, Path(folder))
            one = (
                run(args.postgres, 1, connections, args.seconds, Path(folder)) if n > 1 else several
            )
            print(f"| {n} | {connections} | {several:,.0f} | {several / one:.2f} |")


if __name__ == "__main__":
    main()
