"""The shipped hypothesis strategies generate what they promise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from lifecycle import (
    LIFECYCLES,
    WEBHOOK_TYPES,
    InvalidArgument,
    InvalidEvent,
    dump_event,
    parse_event,
)
from lifecycle import strategies as vs


@given(
    st.sampled_from(sorted(WEBHOOK_TYPES)).flatmap(lambda w: st.tuples(st.just(w), vs.payloads(w)))
)
def test_payloads_parse_to_their_class_without_warnings(case: tuple[str, dict[str, Any]]) -> None:
    """A drawn payload of a type parses to that type's class, cleanly."""
    webhook_type, payload = case
    event = parse_event(payload)
    assert webhook_type == event.webhook_type
    assert () == getattr(event, "warnings", None)


@given(vs.any_payloads())
def test_any_payload_round_trips(payload: dict[str, Any]) -> None:
    """Every drawn payload, unknown fields included, comes back from dump_event."""
    assert payload == dump_event(parse_event(payload))


@given(
    st.sampled_from(sorted(LIFECYCLES)).flatmap(
        lambda n: st.tuples(st.just(n), vs.lifecycle_events(n))
    )
)
def test_lifecycle_events_stay_on_one_resource(case: tuple[str, list[dict[str, Any]]]) -> None:
    """A lifecycle walk uses only that lifecycle's types, on one key."""
    name, events = case
    fields = LIFECYCLES[name].definition.key_fields
    assert all(WEBHOOK_TYPES[p["webhookType"]].name == name for p in events)
    assert len({tuple(p["data"][f] for f in fields) for p in events}) <= 1


@given(vs.session_events())
def test_session_events_start_with_the_session(stream: list[dict[str, Any]]) -> None:
    """The session's own events open its stream and close it when it ends."""
    session = [p["webhookType"] for p in stream if p["webhookType"].startswith("session-")]
    assert session in (["session-started"], ["session-started", "session-ended"])


def in_order(out: list[int], original: list[int]) -> bool:
    """Whether the first copy of each event of ``out`` comes in the original order."""
    firsts = list(dict.fromkeys(out))
    return firsts == [e for e in original if e in firsts]


FAULTS: dict[str, Callable[[list[int], list[int]], bool]] = {
    "lost": lambda out, original: set(out) < set(original),
    "redelivered": lambda out, original: len(out) > len(set(out)),
    "reordered": lambda out, original: not in_order(out, original),
}


@given(st.data())
def test_perturbed_only_reorders_repeats_and_drops(data: st.DataObject) -> None:
    """A perturbed stream holds events of the original only, never loses it all, and has
    only the faults asked for: without drop every event comes at least once, without
    duplicate at most once, without shuffle in the original order."""
    original = data.draw(st.lists(st.integers(0, 9), unique=True, max_size=8))
    asked = data.draw(
        st.fixed_dictionaries(dict.fromkeys(["shuffle", "duplicate", "drop"], st.booleans()))
    )
    out = data.draw(vs.perturbed(st.just(original), **asked))
    counts = Counter(out)
    assert set(counts) <= set(original)
    assert bool(original) == bool(out)
    if not asked["drop"]:
        assert set(original) == set(counts)
    if not asked["duplicate"]:
        assert len(counts) == len(out)
    if not asked["shuffle"]:
        assert in_order(out, original)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_perturbed_streams_have_each_fault(fault: str) -> None:
    """Each fault of perturbed() happens: some event lost, some redelivered, the order changed."""
    original = list(range(8))
    found = find(
        vs.perturbed(st.just(original)),
        lambda out: FAULTS[fault](out, original),
        settings=settings(database=None, max_examples=500),
    )
    assert FAULTS[fault](found, original)


@given(vs.garbage())
def test_garbage_is_never_a_valid_event(payload: Any) -> None:
    """Garbage is rejected by the parser with InvalidEvent."""
    with pytest.raises(InvalidEvent):
        parse_event(payload)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: vs.lifecycle_events("recordings"), ["unknown lifecycle 'recordings'", "hls"]),
        (lambda: vs.webhook_types("video"), ["unknown lifecycle 'video'", "recording"]),
        (lambda: vs.payloads("recording-began"), ["unknown webhook type", "recording-started"]),
        (lambda: vs.lifecycle_events("hls", max_events=0), ["max_events", "at least 1"]),
        (lambda: vs.session_events(max_resources=-1), ["max_resources", "at least 0"]),
        (lambda: vs.perturbed([{"webhookType": "x"}]), ["strategy of lists", "not a list"]),  # type: ignore[arg-type]
    ],
)
def test_wrong_arguments_are_refused_when_the_strategy_is_built(
    build: Callable[[], object], words: list[str]
) -> None:
    """A wrong argument raises InvalidArgument at once, naming the valid values, instead of
    a KeyError or AttributeError from inside a test's first draw."""
    with pytest.raises(InvalidArgument) as info:
        build()
    assert all(w in str(info.value) for w in words), str(info.value)
