"""The stream simulator used by the benchmarks and the durability tests."""

from __future__ import annotations

import random
from collections import Counter
from itertools import pairwise

import orjson
import pytest

from lifecycle import LIFECYCLES, Engine, Outcome
from lifecycle._simulate import apply_faults, stream, walk


def test_a_clean_stream_is_all_applied() -> None:
    """Without faults, every simulated event is applied without warnings."""
    engine = Engine()
    results = [engine.feed(p) for p in stream(30, seed=3)]
    assert {Outcome.APPLIED} == {r.outcome for r in results}
    assert [] == engine.anomalies()
    assert {"session", "participant"} <= {r.lifecycle for r in results}


def test_streams_are_reproducible_from_their_seed() -> None:
    """The same seed gives the same bytes; another seed another stream."""

    def dump(seed: int) -> list[bytes]:
        return [orjson.dumps(p) for p in stream(10, seed=seed, shuffle=0.1, duplicate=0.1)]

    assert dump(1) == dump(1)
    assert dump(1) != dump(2)


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_walks_follow_the_edges(name: str) -> None:
    """A walk goes from idle along defined edges to a final state."""
    lc = LIFECYCLES[name]
    d = lc.definition
    edges = set(d.forward) | set(d.restart)
    for seed in range(20):
        states = ["idle", *(d.webhooks[w] for w in walk(lc, random.Random(seed)))]
        assert all(edge in edges for edge in pairwise(states))
        assert states[-1] in lc.final_states


def test_faults_drop_duplicate_and_displace() -> None:
    """Faults keep only events of the stream, drop some and repeat some."""
    events = [{"n": i} for i in range(2000)]
    out = apply_faults(events, random.Random(0), shuffle=0.1, duplicate=0.05, drop=0.05)
    counts = Counter(e["n"] for e in out)
    assert set(counts) < {e["n"] for e in events}
    assert any(c > 1 for c in counts.values())
    assert [e["n"] for e in out] != sorted(e["n"] for e in out)
    assert events == apply_faults(events, random.Random(0))


def test_faults_make_anomalies() -> None:
    """A faulty stream gives the engine duplicates, gaps and late events to report."""
    engine = Engine()
    for p in stream(40, seed=5, shuffle=0.2, duplicate=0.1, drop=0.1):
        engine.feed(p)
    found = {a.outcome for a in engine.anomalies()}
    assert {Outcome.DUPLICATE, Outcome.GAP, Outcome.OUT_OF_ORDER} <= found
