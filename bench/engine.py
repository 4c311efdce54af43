"""Engine throughput and memory against a floor and the naive use of ``transitions``.

Usage: python bench/engine.py [--events N] [--rounds R] [--naive-events N]

One realistic stream (``lifecycle._simulate``, bytes as delivered) is fed to:

- floor: ``orjson.loads`` plus one dict-table step ``(state, type) -> state`` per
  event, on a dict of states per resource: the least any Python receiver does;
- engine: ``Engine().feed(bytes)``;
- naive: one ``transitions.Machine`` per resource, created on its first event and
  triggered by the webhook type (illegal triggers caught).

The engine and the floor are fed the stream chunk by chunk in back-to-back pairs, in
this process, and the ratio reported is the median of the pairs' ratios, so that it
holds on a noisy machine (a pair sees one load; the best times alone may come from
different ones). Memory is the tracemalloc growth of one fed engine (or of the naive
dict of machines) divided by the number of tracked resources.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence

import orjson
from transitions import Machine, MachineError

from lifecycle import LIFECYCLES, WEBHOOK_TYPES, Engine
from lifecycle._simulate import stream


def make_stream(events: int) -> list[bytes]:
    """``events`` payloads: long overlapping meeting sessions, a few duplicates.

    Participants rejoin and recordings restart often (``restart_chance``), so that a
    resource sees about ten events, as in long meetings on flaky networks.
    """
    out: list[bytes] = []
    for p in stream(events, seed=7, duplicate=0.002, restart_chance=0.8):
        out.append(orjson.dumps(p))
        if len(out) == events:
            break
    return out


def floor(payloads: Sequence[bytes]) -> int:
    states: dict[tuple[str, ...], str] = {}
    floor_into(states, payloads)
    return len(states)


def floor_into(states: dict[tuple[str, ...], str], payloads: Sequence[bytes]) -> None:
    """The floor's work: each payload decoded and its resource stepped in ``states``."""
    step = {
        (s, w): t.target
        for w, lc in WEBHOOK_TYPES.items()
        for s, row in lc.table.items()
        for ww, t in row.items()
        if ww == w
    }
    keys = {w: (lc.name, lc.definition.key_fields) for w, lc in WEBHOOK_TYPES.items()}
    loads = orjson.loads
    for b in payloads:
        env = loads(b)
        tag = env["webhookType"]
        data = env["data"]
        name, fields = keys[tag]
        key = (name, *[data[f] for f in fields])
        states[key] = step[(states.get(key, "idle"), tag)]


def engine(payloads: Sequence[bytes]) -> int:
    e = Engine()
    feed = e.feed
    for b in payloads:
        feed(b)
    return len(e)


def naive(payloads: Sequence[bytes]) -> int:
    return len(naive_state(payloads))


def naive_state(payloads: Sequence[bytes]) -> dict[tuple[str, ...], Machine]:
    machines: dict[tuple[str, ...], Machine] = {}
    defs = {
        n: (
            list(lc.definition.states),
            [
                {"trigger": w, "source": a, "dest": b}
                for a, b in (*lc.definition.forward, *lc.definition.restart)
                for w, t in lc.definition.webhooks.items()
                if t == b
            ],
        )
        for n, lc in LIFECYCLES.items()
    }
    for b in payloads:
        env = orjson.loads(b)
        tag = env["webhookType"]
        lc = WEBHOOK_TYPES[tag].definition
        key = (lc.name, *[env["data"][f] for f in lc.key_fields])
        m = machines.get(key)
        if m is None:
            states, edges = defs[lc.name]
            m = machines[key] = Machine(
                states=states, transitions=edges, initial="idle", auto_transitions=False
            )
        with contextlib.suppress(MachineError):
            m.trigger(tag)
    return machines


def best(
    fn: Callable[[Sequence[bytes]], int], payloads: Sequence[bytes], repeat: int
) -> tuple[float, int]:
    times = []
    n = 0
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        n = fn(payloads)
        times.append(time.perf_counter() - t)
    return min(times), n


def paired(
    rounds: int, payloads: Sequence[bytes], chunks: int = 10
) -> tuple[float, float, list[float], int]:
    """``Engine().feed`` against the floor, chunk by chunk, in back-to-back pairs.

    The stream is cut into ``chunks``; each round feeds it whole to a fresh floor and a
    fresh engine, a chunk to one then the same chunk to the other (the order
    alternating), so that both halves of a pair run within a second of each other, on
    the same load of a shared machine. Returns the best total floor and engine times
    over the rounds, every pair's ratio, and the engine's tracked resources.
    """
    size = -(-len(payloads) // chunks)
    parts = [payloads[i : i + size] for i in range(0, len(payloads), size)]
    best_floor = best_engine = float("inf")
    ratios = []
    tracked = 0
    for r in range(rounds):
        states: dict[tuple[str, ...], str] = {}
        e = Engine()
        total_floor = total_engine = 0.0
        gc.collect()
        for i, part in enumerate(parts):
            t_floor = t_engine = 0.0
            for which in ("floor", "engine") if (r + i) % 2 == 0 else ("engine", "floor"):
                t = time.perf_counter()
                if which == "floor":
                    floor_into(states, part)
                    t_floor = time.perf_counter() - t
                else:
                    feed = e.feed
                    for b in part:
                        feed(b)
                    t_engine = time.perf_counter() - t
            ratios.append(t_engine / t_floor)
            total_floor += t_floor
            total_engine += t_engine
        tracked = len(e)
        best_floor, best_engine = min(best_floor, total_floor), min(best_engine, total_engine)
    return best_floor, best_engine, ratios, tracked


def memory(fn: Callable[[Sequence[bytes]], object], payloads: Sequence[bytes]) -> int:
    """Bytes still allocated by the state ``fn`` builds and returns."""
    gc.collect()
    tracemalloc.start()
    state = fn(payloads)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del state
    return used


def keep_engine(payloads: Sequence[bytes]) -> Engine:
    e = Engine()
    for b in payloads:
        e.feed(b)
    return e


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="passes over the stream, each in 10 floor/engine pairs; the ratio "
        "is the median of the pairs'",
    )
    ap.add_argument(
        "--naive-events",
        type=int,
        default=20_000,
        help="feed the naive variant only the first N events (it is slow)",
    )
    args = ap.parse_args()
    payloads = make_stream(args.events)
    size = sum(map(len, payloads)) / len(payloads)
    print(f"stream: {len(payloads):,} events, {size:.0f} bytes each on average")

    t_floor, t_engine, ratios, tracked = paired(args.rounds, payloads)
    naive_payloads = payloads[: args.naive_events] if args.naive_events else payloads
    t_naive, naive_n = best(naive, naive_payloads, 1)
    per_naive = t_naive / len(naive_payloads)
    mem = memory(keep_engine, payloads)
    sample = naive_payloads[:20_000]
    mem_naive = memory(naive_state, sample) / len(naive_state(sample))
    ratio = statistics.median(ratios)

    def row(name: str, t: float, n: int, x: float | None, mem_per: float | None) -> str:
        m = f"{mem_per:,.0f}" if mem_per is not None else "-"
        shown = f"{x:.2f}" if x is not None else "-"
        return f"| {name} | {n / t:,.0f} | {t / n * 1e6:.2f} | {shown} | {m} |"

    print(f"tracked resources: {tracked:,}")
    print("| variant | events/s | us/event | x floor | bytes/resource |")
    print("|---|---|---|---|---|")
    print(row("floor: orjson.loads + dict step", t_floor, len(payloads), 1.0, None))
    print(row("lifecycle Engine().feed(bytes)", t_engine, len(payloads), ratio, mem / tracked))
    print(
        row(
            f"naive: Machine per resource ({len(naive_payloads):,} events)",
            t_naive,
            len(naive_payloads),
            per_naive / (t_floor / len(payloads)),
            mem_naive,
        )
    )
    print(
        f"engine / floor, {len(ratios)} pairs: {min(ratios):.2f} to {max(ratios):.2f}, "
        f"median {ratio:.2f}x (target <= 3.5x)"
    )
    print(
        f"naive / engine: {per_naive / (t_engine / len(payloads)):.1f}x; "
        f"naive resources: {naive_n:,}"
    )
    print(
        f"engine memory: {mem / tracked:,.0f} bytes per tracked resource (target <= 1228, 1.2 KiB)"
    )


if __name__ == "__main__":
    main()
