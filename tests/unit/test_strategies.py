"""The shipped hypothesis strategies generate what they promise."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import LIFECYCLES, WEBHOOK_TYPES, InvalidEvent, dump_event, parse_event
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


@given(st.data())
def test_perturbed_only_reorders_repeats_and_drops(data: st.DataObject) -> None:
    """A perturbed stream holds only events of the original stream."""
    original = data.draw(st.lists(st.integers(0, 9), unique=True, max_size=8))
    out = data.draw(vs.perturbed(st.just(original)))
    assert set(out) <= set(original)
    assert all(n >= 1 for n in Counter(out).values())


@given(vs.garbage())
def test_garbage_is_never_a_valid_event(payload: Any) -> None:
    """Garbage is rejected by the parser with InvalidEvent."""
    with pytest.raises(InvalidEvent):
        parse_event(payload)
