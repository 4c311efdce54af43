"""Invariants over event sequences, checked with hypothesis."""

from __future__ import annotations

from collections import deque
from itertools import pairwise
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lifecycle import (
    AFTER_SESSION_END,
    LIFECYCLES,
    WEBHOOK_TYPES,
    Engine,
    FeedResult,
    LifecycleViolation,
    Outcome,
)
from lifecycle import strategies as vs

IDLE = "idle"
UNCHANGING = {o for o in Outcome} - {Outcome.APPLIED, Outcome.GAP}


def snapshot(engine: Engine) -> dict[tuple[str, tuple[str, ...]], str]:
    """Every tracked resource's state."""
    return {(r.lifecycle, r.key): r.state for r in engine.resources()}


def summary(r: FeedResult) -> tuple[Any, ...]:
    """What a result says, without its clock time."""
    return (
        r.seq,
        r.outcome,
        r.lifecycle,
        r.key,
        r.webhook_type,
        r.before,
        r.after,
        r.missing,
        r.warnings,
        r.reason,
    )


def reachable(lifecycle: str, start: str) -> dict[str, tuple[str, ...]]:
    """Shortest forward paths from ``start``: state -> states skipped on the way."""
    d = LIFECYCLES[lifecycle].definition
    paths: dict[str, tuple[str, ...]] = {start: ()}
    queue = deque([start])
    while queue:
        s = queue.popleft()
        for a, b in d.forward:  # the definition's order breaks ties between equal paths
            if a == s and b not in paths:
                paths[b] = paths[s] + ((s,) if s != start else ())
                queue.append(b)
    return paths


def classify(lifecycle: str, state: str, webhook_type: str) -> tuple[Outcome, tuple[str, ...]]:
    """The classification rule, computed from the definition alone."""
    d = LIFECYCLES[lifecycle].definition
    target = d.webhooks[webhook_type]
    if (state, target) in d.forward or (state, target) in d.restart:
        return Outcome.APPLIED, ()
    if state == target:
        return Outcome.DUPLICATE, ()
    forward = reachable(lifecycle, state)
    if target in forward:
        return Outcome.GAP, forward[target]
    if state in reachable(lifecycle, target):
        return Outcome.OUT_OF_ORDER, ()
    return Outcome.ILLEGAL, ()


def test_compiled_tables_follow_the_rule() -> None:
    """Every cell of every compiled table is what the rule computes from the definition."""
    for name, lc in LIFECYCLES.items():
        for state, row in lc.table.items():
            for webhook_type, step in row.items():
                assert classify(name, state, webhook_type) == (step.outcome, step.missing)


@given(vs.session_events())
def test_valid_interleavings_report_no_anomaly(stream: list[dict[str, Any]]) -> None:
    """Any interleaving of valid lifecycles of a session is applied without an anomaly."""
    engine = Engine()
    results = [engine.feed(p) for p in stream]
    assert [] == engine.anomalies()
    assert {Outcome.APPLIED} >= {r.outcome for r in results}


@given(vs.streams())
def test_any_stream_is_classified_and_never_raises(stream: list[Any]) -> None:
    """Shuffled, duplicated, dropped and garbage events: one outcome each, valid states."""
    engine = Engine()
    for i, payload in enumerate(stream, 1):
        before = snapshot(engine)
        result = engine.feed(payload)
        assert i == result.seq == engine.events_fed
        assert result.outcome in Outcome
        if result.outcome in UNCHANGING:
            assert before == snapshot(engine)
            assert result.before == result.after
        if result.outcome in (Outcome.MALFORMED, Outcome.UNKNOWN_TYPE):
            assert result.reason
            assert result in engine.anomalies()
        else:
            assert result.lifecycle is not None
    for status in engine.resources():
        assert status.state in LIFECYCLES[status.lifecycle].states
        assert status.state != IDLE


@given(vs.streams())
def test_gaps_name_a_forward_path(stream: list[Any]) -> None:
    """A gap's missing states and its ends form a chain of forward edges."""
    engine = Engine()
    for payload in stream:
        r = engine.feed(payload)
        if r.outcome is Outcome.GAP:
            assert r.lifecycle is not None
            chain = [r.before, *r.missing, r.after]
            forward = set(LIFECYCLES[r.lifecycle].definition.forward)
            assert all(edge in forward for edge in pairwise(chain))


@given(vs.streams())
def test_redelivery_changes_nothing(stream: list[Any]) -> None:
    """Feeding any payload a second time in a row never changes a state."""
    engine = Engine()
    for payload in stream:
        engine.feed(payload)
        before = snapshot(engine)
        again = engine.feed(payload)
        assert not again.changed
        assert before == snapshot(engine)


@given(vs.streams())
def test_replay_is_deterministic(stream: list[Any]) -> None:
    """The same stream fed to two fresh engines gives identical results and states."""
    first, second = Engine(clock=lambda: 0.0), Engine(clock=lambda: 0.0)
    assert [summary(first.feed(p)) for p in stream] == [summary(second.feed(p)) for p in stream]
    assert snapshot(first) == snapshot(second)
    assert [summary(a) for a in first.anomalies()] == [summary(a) for a in second.anomalies()]


@given(st.sampled_from(sorted(LIFECYCLES)).flatmap(vs.lifecycle_events))
def test_each_lifecycle_walk_is_applied(events: list[dict[str, Any]]) -> None:
    """A valid walk of one resource (with restarts) is applied step by step."""
    engine = Engine()
    for p in events:
        r = engine.feed(p)
        assert Outcome.APPLIED == r.outcome
        assert WEBHOOK_TYPES[p["webhookType"]].definition.webhooks[p["webhookType"]] == r.after


@given(vs.streams())
def test_strict_engine_raises_without_a_change(stream: list[Any]) -> None:
    """A strict engine returns only applied or duplicate; otherwise it raises, changing nothing."""
    engine = Engine(strict=True)
    for p in stream:
        before, fed, anomalies = snapshot(engine), engine.events_fed, len(engine.anomalies())
        try:
            result = engine.feed(p)
        except LifecycleViolation as e:
            rejected = e.result.outcome
            assert rejected not in (Outcome.APPLIED, Outcome.DUPLICATE)
            assert (before, fed, anomalies) == (
                snapshot(engine),
                engine.events_fed,
                len(engine.anomalies()),
            )
        else:
            assert result.outcome in (Outcome.APPLIED, Outcome.DUPLICATE)


# -- a model-based test: the engine against a small model of the rule -----------------

KEYS = ["a", "b"]


class EngineAgainstModel(RuleBasedStateMachine):
    """Random events on a few resources; the engine must agree with a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(clock=lambda: 1.0)
        self.states: dict[tuple[str, tuple[str, ...]], str] = {}
        self.cycle_ids: dict[tuple[str, tuple[str, ...]], str] = {}
        self.fed = 0

    @initialize()
    def start(self) -> None:
        self.fed = 0

    @rule(
        webhook_type=st.sampled_from(sorted(WEBHOOK_TYPES)),
        ident=st.sampled_from(KEYS),
        cycle_id=st.none() | st.sampled_from(["r1", "r2"]),
    )
    def feed_event(self, webhook_type: str, ident: str, cycle_id: str | None) -> None:
        lc = WEBHOOK_TYPES[webhook_type].definition
        data = {f: ident for f in lc.key_fields}
        if "meetingId" in lc.key_fields or lc.name in ("transcription", "merge-recording"):
            data |= {"meetingId": ident, "sessionId": ident}
        if cycle_id is not None and lc.restart and "id" not in lc.key_fields:
            data["id"] = cycle_id
        key = (lc.name, tuple(data[f] for f in lc.key_fields))
        state = self.states.get(key, IDLE)
        outcome, missing = classify(lc.name, state, webhook_type)
        target = lc.webhooks[webhook_type]
        is_restart = (state, target) in lc.restart
        known = self.cycle_ids.get(key)
        if (
            lc.restart
            and cycle_id is not None
            and known is not None
            and ((known == cycle_id) if is_restart else (known != cycle_id))
        ):
            outcome, missing = Outcome.OUT_OF_ORDER, ()
        ended = self.states.get(("session", (ident, ident))) == "ended"
        warnings = (
            (AFTER_SESSION_END,) if (lc.session_scoped and target == lc.states[1] and ended) else ()
        )

        result = self.engine.feed({"webhookType": webhook_type, "data": data})
        self.fed += 1
        assert (outcome, missing, warnings) == (result.outcome, result.missing, result.warnings)
        if outcome in (Outcome.APPLIED, Outcome.GAP):
            self.states[key] = target
        if lc.restart and outcome not in (Outcome.OUT_OF_ORDER, Outcome.ILLEGAL) and "id" in data:
            self.cycle_ids[key] = data["id"]
        assert self.states.get(key, IDLE) == result.after

    @rule(payload=vs.garbage())
    def feed_garbage(self, payload: Any) -> None:
        assert Outcome.MALFORMED == self.engine.feed(payload).outcome
        self.fed += 1

    @invariant()
    def states_agree(self) -> None:
        assert self.states == snapshot(self.engine)
        assert self.fed == self.engine.events_fed


TestEngineAgainstModel = EngineAgainstModel.TestCase
