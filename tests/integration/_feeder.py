"""Child processes of the durability tests: feed a store, or read it, and report on stdout.

``python tests/integration/_feeder.py URL feed EVENTS [--resume] [--part K/N]
[--seconds S] [--gate F]``
feeds the payloads of EVENTS (one JSON payload a line, fed as those bytes) in the units of
:func:`plan`: ``e POS SEQ DIGEST`` after each single ``feed`` returned, ``b START END SEQS
DIGEST`` after each ``feed_many`` batch, each line flushed before the next feed starts.
``--resume`` continues after the events already in the log (a restart after a crash).

``python tests/integration/_feeder.py URL read SECONDS [--reopen] [--gate F]`` queries
``resources()``, ``anomalies()`` and ``events_fed`` in a loop and ends with
``ok QUERIES LAST_EVENTS_FED``.

Both print ``ready ...`` once the store is open, then wait for the file ``--gate`` (if
given) to exist before starting.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BLOCK = 50
"""Events are fed in blocks of this many: as one ``feed_many`` batch or one by one."""
BATCH_EVERY = 4
"""Every this-many-th block is one ``feed_many`` batch; the others are single feeds."""


def digest(payload: bytes) -> str:
    """A short digest of payload bytes."""
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def batch_digest(payloads: Sequence[bytes]) -> str:
    """A short digest of a batch's payloads, in order."""
    return digest(b"\n".join(payloads))


def plan(n: int) -> list[tuple[int, int]]:
    """How positions ``0..n`` are fed: ``(start, end)`` units, a batch when longer than 1."""
    units: list[tuple[int, int]] = []
    for start in range(0, n, BLOCK):
        end = min(n, start + BLOCK)
        if (start // BLOCK) % BATCH_EVERY == BATCH_EVERY - 1:
            units.append((start, end))
        else:
            units.extend((i, i + 1) for i in range(start, end))
    return units


def read_events(path: str | Path) -> list[bytes]:
    """The payloads of an events file (one a line)."""
    return [line for line in Path(path).read_bytes().split(b"\n") if line]


def write_events(path: str | Path, payloads: Sequence[bytes]) -> None:
    """Write payloads (JSON without newlines) one a line."""
    assert all(b"\n" not in p for p in payloads)
    Path(path).write_bytes(b"".join(p + b"\n" for p in payloads))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _wait(gate: str | None) -> None:
    if gate is not None:
        deadline = time.monotonic() + 60
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"gate {gate} never opened")
            time.sleep(0.005)


def feed(
    url: str,
    events_file: str,
    *,
    resume: bool,
    part: str | None,
    seconds: float | None,
    gate: str | None,
) -> None:
    """Feed the events (or this process's part of them) in the units of :func:`plan`."""
    from lifecycle import Engine
    from lifecycle import Engine as StoredEngine

    events = read_events(events_file)
    if part is not None:
        k, n = (int(x) for x in part.split("/"))
        events = events[k::n]
    engine = Engine.open(url)
    assert isinstance(engine, StoredEngine)
    start = len(engine.log()) if resume else 0
    units = plan(len(events))
    if start not in {s for s, _ in units} | {len(events)}:
        raise SystemExit(f"the log holds {start} events: not a unit boundary (partial batch)")
    _say(f"ready {start}")
    _wait(gate)
    deadline = None if seconds is None else time.monotonic() + seconds
    for s, e in units:
        if s < start:
            continue
        if deadline is not None and time.monotonic() > deadline:
            break
        if e - s == 1:
            result = engine.feed(events[s])
            _say(f"e {s} {result.seq} {digest(events[s])}")
        else:
            results = engine.feed_many(events[s:e])
            seqs = ",".join(str(r.seq) for r in results)
            _say(f"b {s} {e} {seqs} {batch_digest(events[s:e])}")
    engine.close()
    _say("done")


def read(url: str, seconds: float, *, reopen: bool, gate: str | None) -> None:
    """Query the store in a loop; the events fed never go down between two queries."""
    from lifecycle import Engine

    engine = Engine.open(url)
    _say("ready")
    _wait(gate)
    deadline = time.monotonic() + seconds
    queries, last = 0, 0
    while time.monotonic() < deadline:
        if reopen:
            engine.close()
            engine = Engine.open(url)
        resources = engine.resources()
        anomalies = engine.anomalies()
        fed = engine.events_fed
        if fed < last:
            raise SystemExit(f"events_fed went down from {last} to {fed}")
        if anomalies and anomalies[-1].seq > fed:
            raise SystemExit(f"anomaly {anomalies[-1].seq} after events_fed {fed}")
        if any(not r.history for r in resources):
            raise SystemExit("a resource without history")
        last = fed
        queries += 1
    engine.close()
    _say(f"ok {queries} {last}")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the feeder or the reader."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    sub = parser.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("feed")
    f.add_argument("events")
    f.add_argument("--resume", action="store_true")
    f.add_argument("--part")
    f.add_argument("--seconds", type=float)
    f.add_argument("--gate")
    r = sub.add_parser("read")
    r.add_argument("seconds", type=float)
    r.add_argument("--reopen", action="store_true")
    r.add_argument("--gate")
    args = parser.parse_args(argv)
    if args.mode == "feed":
        feed(
            args.url,
            args.events,
            resume=args.resume,
            part=args.part,
            seconds=args.seconds,
            gate=args.gate,
        )
    else:
        read(args.url, args.seconds, reopen=args.reopen, gate=args.gate)


if __name__ == "__main__":
    main()
