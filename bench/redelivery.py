"""What the redelivery window costs: feeding with and without one, in the same run.

Run: python bench/redelivery.py [--events 60000] [--window 60]

The same simulated stream (2 % of events delivered twice) is fed to the in-memory engine
(``feed`` one by one) and to SQLite (``feed_many``, 1,000 a transaction, a fresh file
each time), without a window and with one; best of two runs each. The whole stream
arrives within the window, so every byte-identical body after the first is a
redelivery, the simulator's rejoins and restarts included (the window's trade-off).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence

import orjson

from lifecycle import Engine
from lifecycle._simulate import stream


def in_memory(bodies: Sequence[bytes], window: float | None) -> tuple[float, int]:
    engine = Engine(redelivery_window=window)
    start = time.perf_counter()
    for body in bodies:
        engine.feed(body)
    elapsed = time.perf_counter() - start
    return elapsed, sum("redelivery" in a.warnings for a in engine.anomalies())


def in_sqlite(bodies: Sequence[bytes], window: float | None) -> tuple[float, int]:
    with Engine.open(f"{tempfile.mkdtemp()}/bench.db", redelivery_window=window) as engine:
        start = time.perf_counter()
        for i in range(0, len(bodies), 1000):
            engine.feed_many(bodies[i : i + 1000])
        elapsed = time.perf_counter() - start
        return elapsed, sum("redelivery" in a.warnings for a in engine.anomalies())


def best(
    run: Callable[[Sequence[bytes], float | None], tuple[float, int]],
    bodies: Sequence[bytes],
    window: float | None,
) -> tuple[float, int]:
    return min(run(bodies, window) for _ in range(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    bodies = [orjson.dumps(p) for p in stream(args.events // 19 + 1, seed=2, duplicate=0.02)][
        : args.events
    ]
    print(f"{len(bodies):,} events; window {args.window:g} s\n")
    print("| engine | without window | with window | ratio | redeliveries |")
    print("|---|---|---|---|---|")
    for name, run in (("memory `feed`", in_memory), ("SQLite `feed_many`", in_sqlite)):
        off, _ = best(run, bodies, None)
        on, caught = best(run, bodies, args.window)
        print(
            f"| {name} | {len(bodies) / off:,.0f}/s | {len(bodies) / on:,.0f}/s | "
            f"{off / on:.2f} | {caught:,} |"
        )


if __name__ == "__main__":
    main()
