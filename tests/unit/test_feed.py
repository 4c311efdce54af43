"""The change feed: every change of state, and every overdue flag, in cursor order."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import Change, CursorGone, Engine, InvalidArgument, Outcome
from lifecycle import strategies as vs
from lifecycle.stores import MemoryStore

IDS = {"meetingId": "m1", "sessionId": "s1"}


def hook(webhook_type: str, **data: Any) -> dict[str, Any]:
    return {"webhookType": webhook_type, "data": {**IDS, **data}}


def test_changes_are_the_changes_of_state_and_the_flags_with_data_after_each() -> None:
    clock = itertools.count(1000.0, 10.0).__next__
    engine = Engine(clock=clock)
    engine.feed(hook("recording-starting"))
    engine.feed(hook("recording-starting"))  # a duplicate: no change
    engine.feed_many([hook("recording-started"), hook("recording-stopping", x=1)])
    engine.feed({"webhookType": "no-such-type", "data": {}})  # no resource: no change
    (flag,) = engine.sweep(10**6)
    changes = engine.changes()
    assert [
        (1, "idle", "starting"),
        (3, "starting", "started"),
        (4, "started", "stopping"),
        (6, "stopping", "stopping"),
    ] == [(c.seq, c.before, c.after) for c in changes]
    assert [c.cursor for c in changes] == sorted({c.cursor for c in changes})
    assert [Outcome.APPLIED] * 3 + [Outcome.OVERDUE] == [c.outcome for c in changes]
    assert ["recording-starting", "recording-started", "recording-stopping", None] == [
        c.webhook_type for c in changes
    ]
    # the data of each change is the resource's after it, even inside one batch
    assert [IDS, IDS, {**IDS, "x": 1}, {**IDS, "x": 1}] == [dict(c.data) for c in changes]
    assert ("recording", ("m1", "s1"), flag.seq) == (changes[3].lifecycle, changes[3].key, 6)
    assert changes[2:] == engine.changes(after=changes[1].cursor)
    assert changes[:1] == engine.changes(limit=1)
    assert [c.after for c in changes] == [c.after for c in engine.changes(lifecycle="recording")]
    assert ["stopping", "stopping"] == [c.after for c in engine.changes(state="stopping")]
    assert changes == engine.changes(meeting_id="m1", session_id="s1")
    assert [] == engine.changes(lifecycle="hls")
    assert [] == engine.changes(meeting_id="other")
    assert changes[0].at.timestamp() == changes[0].timestamp == 1000.0


def test_follow_resumes_and_waits_for_new_changes() -> None:
    engine = Engine()
    engine.feed(hook("recording-starting"))
    followed = engine.follow(poll=0.01)
    first = next(followed)
    assert "starting" == first.after
    engine.feed(hook("recording-started"))
    assert "started" == next(followed).after
    resumed = engine.follow(after=first.cursor, poll=0.01, state="started")
    assert "started" == next(resumed).after
    with pytest.raises(InvalidArgument, match="poll"):
        next(engine.follow(poll=0))


def test_a_cursor_older_than_what_is_kept_is_gone() -> None:
    engine = Engine(MemoryStore(log_limit=10))
    for i in range(15):
        engine.feed(hook("participant-joined", participantId=f"p{i}"))
    with pytest.raises(CursorGone) as gone:
        engine.changes(after=0)
    assert 5 == gone.value.oldest
    assert 10 == len(engine.changes(after=gone.value.oldest))
    pruned = Engine(clock=itertools.count(1000.0, 10.0).__next__)
    pruned.feed(hook("recording-started"))
    pruned.feed(hook("recording-stopped"))
    pruned.feed(hook("hls-started"))
    assert 2 == pruned.prune(10**6)  # the recording's two events
    with pytest.raises(CursorGone) as gone:
        pruned.changes(after=1)
    assert 2 == gone.value.oldest
    assert ["hls"] == [c.lifecycle for c in pruned.changes(after=gone.value.oldest)]


def test_bad_arguments_are_refused() -> None:
    engine = Engine()
    with pytest.raises(InvalidArgument):
        engine.changes(after=-1)
    with pytest.raises(InvalidArgument):
        engine.changes(limit=-1)
    with pytest.raises(InvalidArgument, match="unknown lifecycle"):
        engine.changes(lifecycle="nope")
    assert [] == engine.changes(state="a\x00b")


@given(
    stream=vs.session_events(),
    cuts=st.lists(st.integers(0, 200), max_size=5),
)
def test_the_feed_is_each_change_in_order_with_its_data(stream: list[Any], cuts: list[int]) -> None:
    """For any stream fed in any batches: the feed holds exactly the results that changed
    their resource, in feed order, with increasing cursors, each with the resource's data
    as replayed at it."""
    engine = Engine(MemoryStore(log_limit=None), clock=itertools.count(0.0, 3.0).__next__)
    fed = []
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for start, end in itertools.pairwise(bounds):
        fed += engine.feed_many(stream[start:end])
    changes = engine.changes()
    assert [r.seq for r in fed if r.changed] == [c.seq for c in changes]
    assert all(a.cursor < b.cursor for a, b in itertools.pairwise(changes))
    for c in changes:
        assert isinstance(c, Change)
        then = engine.status(c.lifecycle, *c.key, at=c.seq)
        assert then is not None
        assert (c.after, dict(then.data)) == (then.state, dict(c.data))


@pytest.mark.parametrize("db", ["memory", "sqlite"])
def test_the_cursor_is_where_the_changes_to_come_begin(db: str, tmp_path: Any) -> None:
    engine = Engine.open(":memory:" if db == "memory" else str(tmp_path / "x.db"))
    assert 0 == engine.cursor
    engine.feed(hook("session-started", meetingId="m", sessionId="s"))
    engine.feed(hook("session-started", meetingId="m", sessionId="s"))  # not a change
    head = engine.cursor
    assert engine.changes()[-1].cursor <= head
    assert [] == engine.changes(after=head)
    engine.feed(hook("session-ended", meetingId="m", sessionId="s"))
    assert ["ended"] == [c.after for c in engine.changes(after=head)]
    assert engine.changes()[-1].cursor == engine.cursor


def test_the_memory_feed_keeps_the_data_of_the_changes_its_log_keeps() -> None:
    """Round and round a log of 4 events: each change kept has its own data."""
    engine = Engine(store=MemoryStore(log_limit=4))
    ids = {"meetingId": "m", "sessionId": "s", "participantId": "p"}
    for n in range(1, 31):
        kind = "participant-joined" if n % 2 else "participant-left"
        engine.feed(hook(kind, **ids, n=str(n)))
        changes = engine.changes(after=max(n - 4, 0))
        assert [(c.seq, c.data["n"]) for c in changes] == [
            (seq, str(seq)) for seq in range(max(n - 3, 1), n + 1)
        ]
    many = engine.feed_many(
        [hook("participant-joined", **ids, n="a"), hook("participant-left", **ids, n="b")]
    )
    assert ["a", "b"] == [c.data["n"] for c in engine.changes(after=many[0].seq - 1)]
