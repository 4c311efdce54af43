"""The change feed on every store, and its cursor guarantee with several writers on one
PostgreSQL: a reader tailing the feed never skips a change that commits late."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle import CursorGone, Engine
from lifecycle import strategies as vs

from support import Clock, database_urls, postgres_or_skip, reset_postgres


def summary(engine: Engine) -> list[tuple[Any, ...]]:
    """The feed without its cursors (a memory store numbers changes by their seq)."""
    return [(c.seq, c.outcome, c.lifecycle, c.key, c.webhook_type, c.before, c.after,
             c.warnings, c.timestamp, dict(c.data)) for c in engine.changes()]  # fmt: skip


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=vs.session_events(), cuts=st.lists(st.integers(0, 200), max_size=4))
def test_every_store_has_the_feed_memory_has(
    stream: list[Any], cuts: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    urls = database_urls(tmp_path_factory.mktemp("f"))
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})

    def fill(engine: Engine) -> Engine:
        for start, end in itertools.pairwise(bounds):
            engine.feed_many(stream[start:end])
        engine.sweep(10**7)
        return engine

    expected = summary(fill(Engine(clock=Clock(0.0, tick=3.0))))
    for url in urls:
        with fill(Engine.open(url, clock=Clock(0.0, tick=3.0))) as engine:
            assert expected == summary(engine)
            cursors = [c.cursor for c in engine.changes()]
            assert list(range(1, len(cursors) + 1)) == cursors  # dense on a database


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_pruning_makes_older_cursors_gone(store_url: str) -> None:
    clock = Clock(1000.0, tick=10.0)
    with Engine.open(store_url, clock=clock) as engine:
        ids = {"meetingId": "m", "sessionId": "s"}
        engine.feed({"webhookType": "recording-started", "data": ids})
        engine.feed({"webhookType": "recording-stopped", "data": ids})
        engine.feed({"webhookType": "hls-started", "data": ids})
        assert 2 == engine.prune(10**6)
        with pytest.raises(CursorGone) as gone:
            engine.changes(after=1)
        assert 2 == gone.value.oldest
        assert ["hls"] == [c.lifecycle for c in engine.changes(after=2)]


def test_a_tail_of_several_writers_skips_nothing() -> None:
    """Four engines on one PostgreSQL feed batches of their own resources as fast as
    they can; a fifth tails the feed, always from the last cursor it saw. It must see
    every cursor from 1 up, in order, once: a change that commits after a later cursor
    was handed out would show as a gap."""
    url = postgres_or_skip()
    reset_postgres(url)
    Engine.open(url).close()
    writers = [Engine.open(url) for _ in range(4)]
    done = threading.Event()
    seen: list[int] = []

    def write(w: int) -> None:
        engine = writers[w]
        for batch in range(40):
            engine.feed_many(
                {"webhookType": "participant-joined",
                 "data": {"meetingId": f"m{w}", "sessionId": f"b{batch}", "participantId": f"p{i}"}}
                for i in range(1 + (batch * 7 + w) % 20)
            )  # fmt: skip

    def tail() -> None:
        with Engine.open(url) as reader:
            last = 0
            while True:
                finished = done.is_set()
                page = reader.changes(after=last)
                seen.extend(c.cursor for c in page)
                if page:
                    last = page[-1].cursor
                elif finished:
                    return

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    tailer = threading.Thread(target=tail)
    tailer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    time.sleep(0.05)
    done.set()
    tailer.join(60)
    for engine in writers:
        engine.close()
    with Engine.open(url) as engine:
        total = len(engine.changes())
    assert total > 1000
    assert list(range(1, total + 1)) == seen


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_one_holder_at_a_time_forwards_to_an_endpoint(store_url: str) -> None:
    """The lease: taken by one holder, refused to another until it lapses; a holder that
    lost it can no longer move the cursor; the cursor is shared."""
    from lifecycle.server._forward import state_of

    with Engine.open(store_url) as a, Engine.open(store_url) as b:
        url = "https://x.example/hook"
        assert 0 == state_of(a).lease(url, "a", 100.0, 15.0)
        assert None is state_of(b).lease(url, "b", 110.0, 15.0)  # a holds it until 115
        assert state_of(a).forwarded(url, "a", 7, [], 112.0, 15.0)  # renewed: until 127
        assert None is state_of(b).lease(url, "b", 120.0, 15.0)
        assert 7 == state_of(b).lease(url, "b", 128.0, 15.0)  # lapsed: b takes it, at 7
        assert not state_of(a).forwarded(url, "a", 9, [], 129.0, 15.0)  # a lost it
        assert 7 == state_of(b).lease(url, "b", 130.0, 15.0)
