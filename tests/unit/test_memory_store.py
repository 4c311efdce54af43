"""The memory store's bound: a ring of the last ``log_limit`` events, the last
``anomaly_limit`` anomalies, every resource; and what the log answers once it forgot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import Engine, FeedResult, InvalidArgument, LogPruned, Outcome
from lifecycle import strategies as vs
from lifecycle.stores import MemoryStore

from support import Clock

MEETING = {"meetingId": "m1", "sessionId": "s1"}
KEY = ("m1", "s1")


def rec(step: str, **data: Any) -> dict[str, Any]:
    """A recording webhook of meeting m1, session s1."""
    return {"webhookType": f"recording-{step}", "data": {**MEETING, **data}}


def hls(step: str) -> dict[str, Any]:
    """An HLS webhook of meeting m1, session s1."""
    return {"webhookType": f"hls-{step}", "data": dict(MEETING)}


def bounded(
    log_limit: int | None = 3, *, window: float | None = None, **options: Any
) -> tuple[Engine, MemoryStore]:
    """An engine on a memory store of that bound (and ``options``), with a clock one
    second a feed and a redelivery window of ``window`` seconds."""
    store = MemoryStore(log_limit=log_limit, **options)
    return Engine(store, clock=Clock(tick=1.0), redelivery_window=window), store


def seqs(results: list[FeedResult]) -> list[int]:
    return [r.seq for r in results]


# -- the log -------------------------------------------------------------------------


def test_the_log_is_a_ring_of_the_last_log_limit_events() -> None:
    """log() gives back the last log_limit results as they were returned, and no other."""
    engine, _ = bounded(log_limit=4, window=60)
    fed = [
        engine.feed({"webhookType": "session-started", "data": dict(MEETING)}),
        engine.feed({"webhookType": "session-ended", "data": dict(MEETING)}),
        engine.feed(b"not json"),
        engine.feed(rec("starting", fileUrl=7)),  # after_session_end and invalid_field
        engine.feed(rec("stopped")),  # a gap
        engine.feed(rec("stopped")),  # a redelivery
        engine.feed('{"webhookType": "sip-call-started", "data": {}}'),
    ]
    assert ("after_session_end", "redelivery") == (fed[3].warnings[-1], fed[5].warnings[-1])
    assert fed[-4:] == engine.log()
    assert 7 == engine.events_fed
    assert [6, 7] == seqs(engine.log(after=5))
    assert [4] == seqs(engine.log(after=1, limit=1))
    assert [] == engine.log(after=7)
    engine.feed(rec("started"))
    assert [5, 6, 7, 8] == seqs(engine.log())


def test_without_a_log_limit_every_event_is_kept() -> None:
    """log_limit=None keeps every event: the whole log, and status(at=) of the first."""
    engine, _ = bounded(log_limit=None, anomaly_limit=None)
    results = engine.feed_many([rec("starting"), *[b"{"] * 1_599])
    assert results == engine.log()
    assert 1_600 == len(engine.log())
    assert 1_599 == len(engine.anomalies())
    assert "starting" == getattr(engine.status("recording", *KEY, at=1), "state", None)


def test_the_default_memory_engine_keeps_the_last_thousand_events() -> None:
    """Engine() logs the last 1,000 events, and forgets the first resource's beginning."""
    engine = Engine()
    engine.feed(hls("starting"))
    engine.feed_many([rec("starting")] * 1_000)
    assert list(range(2, 1_002)) == seqs(engine.log())
    with pytest.raises(LogPruned):
        engine.status("hls", *KEY, at=1)


# -- anomalies ---------------------------------------------------------------------------


def test_anomalies_outlive_the_log_up_to_anomaly_limit() -> None:
    """The last anomaly_limit anomalies are answered, older than the log or not."""
    engine, _ = bounded(log_limit=2, anomaly_limit=3)
    engine.feed(rec("started"))  # 1 gap
    engine.feed(b"{")  # 2 malformed
    engine.feed(rec("started"))  # 3 duplicate
    engine.feed(rec("starting"))  # 4 out of order
    engine.feed(rec("stopping"))  # 5 applied: no anomaly
    engine.feed(rec("stopping"))  # 6 duplicate
    assert [5, 6] == seqs(engine.log())
    assert [3, 4, 6] == seqs(engine.anomalies())
    assert [Outcome.DUPLICATE, Outcome.OUT_OF_ORDER, Outcome.DUPLICATE] == [
        a.outcome for a in engine.anomalies()
    ]
    assert [3, 6] == seqs(engine.anomalies(outcome="duplicate"))
    assert [6] == seqs(engine.anomalies(after=4))
    assert [3] == seqs(engine.anomalies(limit=1))


def test_without_an_anomaly_limit_every_anomaly_is_kept() -> None:
    """anomaly_limit=None keeps every anomaly, however small the log."""
    engine, _ = bounded(log_limit=1, anomaly_limit=None)
    engine.feed_many([b"{"] * 50)
    assert list(range(1, 51)) == seqs(engine.anomalies())
    assert [50] == seqs(engine.log())


# -- the past of a resource ----------------------------------------------------------------


def test_status_at_raises_log_pruned_once_first_events_left_the_log() -> None:
    """status(at=) answers for a resource whose log is whole, and raises LogPruned for
    one whose first events left it; its current status keeps its whole history."""
    engine, _ = bounded(log_limit=3)
    for step in ("starting", "started", "stopping", "stopped"):
        engine.feed(rec(step))  # 1-4
    engine.feed(hls("starting"))  # 5
    for at in (4, 2, 0, datetime.fromtimestamp(1_700_000_004, UTC)):
        with pytest.raises(LogPruned, match="left the memory log"):
            engine.status("recording", *KEY, at=at)
    with pytest.raises(LookupError):
        engine.status("recording", *KEY, at=5)
    status = engine.status("recording", *KEY)
    assert status is not None
    assert ("stopped", [1, 2, 3, 4]) == (status.state, [h.seq for h in status.history])
    at_five = engine.status("hls", *KEY, at=5)
    assert at_five is not None
    assert ("starting", [5]) == (at_five.state, [h.seq for h in at_five.history])
    assert engine.status("hls", *KEY, at=4) is None


def test_a_restart_does_not_make_a_log_whole_again() -> None:
    """A new cycle in the log does not bring back the cycle that left it."""
    engine, _ = bounded(log_limit=2)
    for step in ("starting", "started", "stopped", "starting"):
        engine.feed(rec(step))
    with pytest.raises(LogPruned):
        engine.status("recording", *KEY, at=4)


# -- rebuild -------------------------------------------------------------------------------


def test_rebuild_recomputes_whole_resources_and_keeps_truncated_ones() -> None:
    """rebuild() repairs a resource whose log is whole and leaves one whose first events
    left the log as it is."""
    engine, store = bounded(log_limit=3)
    engine.feed(rec("starting"))  # 1
    engine.feed(rec("started"))  # 2
    engine.feed(hls("starting"))  # 3
    engine.feed(hls("started"))  # 4
    engine.feed(rec("stopping"))  # 5: the log keeps 3-5
    assert [] == engine.rebuild()
    store.tables["hls"][KEY].state = "failed"
    store.tables["recording"][KEY].state = "failed"
    assert [("hls", KEY, "failed", "started")] == engine.rebuild()
    assert "started" == getattr(engine.status("hls", *KEY), "state", None)
    assert [3, 4] == [h.seq for h in getattr(engine.status("hls", *KEY), "history", ())]
    assert "failed" == getattr(engine.status("recording", *KEY), "state", None)
    assert [] == engine.rebuild()


def test_a_snapshot_older_than_the_log_is_no_starting_point() -> None:
    """A pruned resource whose next events left the log too cannot be recomputed from
    its snapshot: rebuild() keeps it, status(at=) raises LogPruned."""
    engine, _ = bounded(log_limit=3)
    engine.feed(rec("starting"))  # 1
    engine.feed(rec("stopped"))  # 2
    assert 2 == engine.prune(before=2_000_000_000)  # a snapshot at 2
    engine.feed(rec("starting"))  # 3: a new cycle
    engine.feed(rec("started"))  # 4
    engine.feed(hls("starting"))  # 5
    engine.feed(hls("started"))  # 6: the log keeps 4-6
    assert [] == engine.rebuild()
    assert "started" == getattr(engine.status("recording", *KEY), "state", None)
    with pytest.raises(LogPruned):
        engine.status("recording", *KEY, at=6)


# -- prune ---------------------------------------------------------------------------------


def test_prune_drops_the_log_of_final_resources_and_keeps_a_snapshot() -> None:
    """prune() drops the kept entries of resources final before the time, keeps their
    state and a snapshot to answer from; malformed payloads and live resources stay."""
    engine, _ = bounded(log_limit=10)
    engine.feed(hls("started"))  # 1, a gap, live
    for step in ("starting", "stopped"):  # 2-3, a gap
        engine.feed(rec(step))
    engine.feed(b"{")  # 4
    assert 0 == engine.prune(before=1_700_000_003.0)  # it stopped at 1_700_000_003
    assert 2 == engine.prune(before=1_700_000_003.5)
    assert [1, 4] == seqs(engine.log())
    assert [1, 4] == seqs(engine.anomalies())  # the recording's gap went with it
    assert "stopped" == getattr(engine.status("recording", *KEY), "state", None)
    assert "stopped" == getattr(engine.status("recording", *KEY, at=3), "state", None)
    with pytest.raises(LogPruned, match="pruned"):
        engine.status("recording", *KEY, at=2)
    assert [] == engine.rebuild()
    restart = engine.feed(rec("starting"))  # 5: a new cycle after pruning
    assert (Outcome.APPLIED, "stopped", "starting") == (
        restart.outcome,
        restart.before,
        restart.after,
    )
    assert "starting" == getattr(engine.status("recording", *KEY, at=5), "state", None)
    assert [] == engine.rebuild()


def test_prune_drops_only_what_the_log_still_keeps() -> None:
    """A final resource whose first events already left the log loses the rest; its
    snapshot answers for its last event."""
    engine, _ = bounded(log_limit=3)
    for step in ("starting", "started", "stopping", "stopped"):
        engine.feed(rec(step))
    assert 3 == engine.prune(before=2_000_000_000)
    assert [] == engine.log()
    assert "stopped" == getattr(engine.status("recording", *KEY, at=4), "state", None)
    assert [] == engine.rebuild()


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"history_limit": 0},
        {"log_limit": 0},
        {"log_limit": -1},
        {"anomaly_limit": 0},
        {"anomaly_limit": -10},
    ],
)
def test_limits_below_one_are_invalid(options: dict[str, int]) -> None:
    """A limit below 1 raises InvalidArgument (a ValueError) naming it."""
    with pytest.raises(InvalidArgument, match=next(iter(options))):
        MemoryStore(**options)


def test_history_limit_goes_to_the_store_it_is_given_with() -> None:
    """Engine(history_limit=0) is invalid; beside a store of its own, any history_limit is."""
    with pytest.raises(ValueError, match="history_limit"):
        Engine(history_limit=0)
    with pytest.raises(InvalidArgument, match="belongs to the store"):
        Engine(MemoryStore(), history_limit=5)


# -- any bound gives the unbounded engine's answers ----------------------------------------


@given(
    stream=st.one_of(vs.streams(), vs.perturbed(vs.session_events())),
    log_limit=st.integers(1, 25),
    window=st.none() | st.just(3.0),
    data=st.data(),
)
def test_a_bound_changes_no_result_and_no_state(
    stream: list[Any], log_limit: int, window: float | None, data: st.DataObject
) -> None:
    """For any stream and log_limit, the bounded engine returns the unbounded one's
    results, states and anomalies; its log is the last log_limit results, as they were
    returned; status(at=) is the same or LogPruned exactly when the resource's first
    event left the log; rebuild() finds nothing to repair."""
    small = Engine(
        MemoryStore(log_limit=log_limit), clock=Clock(tick=1.0), redelivery_window=window
    )
    whole = Engine(MemoryStore(log_limit=None), clock=Clock(tick=1.0), redelivery_window=window)
    fed = [small.feed(payload) for payload in stream]
    assert [whole.feed(payload) for payload in stream] == fed
    assert list(whole) == list(small)
    assert fed == whole.log()
    assert fed[-log_limit:] == small.log()
    assert whole.anomalies() == small.anomalies()
    first: dict[tuple[str, tuple[str, ...]], int] = {}
    for r in whole.log():
        if r.lifecycle is not None and r.key is not None:
            first.setdefault((r.lifecycle, r.key), r.seq)
    forgotten = whole.events_fed - log_limit  # the last seq that left the small log
    for (name, key), seq in first.items():
        at = data.draw(st.integers(0, whole.events_fed), label=f"at, {name}")
        if seq <= forgotten:
            with pytest.raises(LogPruned):
                small.status(name, *key, at=at)
        else:
            assert whole.status(name, *key, at=at) == small.status(name, *key, at=at)
    assert [] == small.rebuild()
    assert list(whole) == list(small)
