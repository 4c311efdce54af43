"""The deadlines as data: the shipped values, the merge of a user's, and when a resource
is due."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import LIFECYCLES, InvalidArgument
from lifecycle._deadlines import DEFAULTS, NAMES, SESSION_END, Deadlines, Due, parse_duration

# the table of defaults, written out again: the data must say the same
EXPECTED = {
    **{
        f"{name}.{state}": seconds
        for name in (
            "recording",
            "participant-recording",
            "participant-track-recording",
            "livestream",
        )
        for state, seconds in (("starting", 120), ("stopping", 900))
    },
    "hls.starting": 120,
    "hls.started": 180,
    "hls.stopping": 900,
    "ai-deployment-session.starting": 120,
    "ai-deployment-session.stopping": 300,
    "session.started": 24 * 3600,
    "participant.session_end": 120,
    **{
        f"{name}.session_end": 900
        for name in (
            "recording",
            "participant-recording",
            "participant-track-recording",
            "livestream",
            "hls",
            "transcription",
        )
    },
}


def test_the_defaults_are_the_documented_ones() -> None:
    assert EXPECTED == DEFAULTS


def test_running_and_final_states_have_no_deadline_of_their_own() -> None:
    running = {"session.ended", "participant.joined", "recording.started", "hls.playable"}
    running |= {"transcription.started", "livestream.started", "resource.acquired"}
    assert not running & set(DEFAULTS)
    for name in DEFAULTS:
        lifecycle, _, state = name.partition(".")
        assert state == SESSION_END or state not in LIFECYCLES[lifecycle].final_states


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5m", 90.0),
        (" 45 s ", 45.0),
        (30, 30.0),
        (2.5, 2.5),
        ("off", None),
        (None, None),
    ],
)
def test_durations(text: Any, seconds: float | None) -> None:
    assert seconds == parse_duration(text)


@pytest.mark.parametrize("bad", ["", "m", "30x", "-5", "0", "0s", 0, -1, math.inf, True, [30]])
def test_bad_durations_are_refused_with_a_reason(bad: Any) -> None:
    with pytest.raises(InvalidArgument, match=r"duration|deadline"):
        parse_duration(bad)


def test_overrides_merge_over_the_defaults_and_none_switches_one_off() -> None:
    deadlines = Deadlines(
        {"recording.stopping": 1800, "hls.started": None, "participant.session_end": "1m"}
    )
    assert 1800 == deadlines.seconds["recording.stopping"]
    assert "hls.started" not in deadlines.seconds
    assert 60 == deadlines.seconds["participant.session_end"]
    assert 120 == deadlines.seconds["recording.starting"]
    assert Deadlines() == Deadlines({})
    assert "hls.started" in repr(deadlines)


@pytest.mark.parametrize(
    "name", ["recording.stopped", "recording", "recordings.stopping", "session.session_end"]
)
def test_unknown_or_final_names_are_refused_naming_the_valid_ones(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"recording\.stopping"):
        Deadlines({name: 60})


def test_a_state_deadline_counts_from_entering_it() -> None:
    assert Due(1900.0, "recording.stopping", 900.0) == Deadlines().due(
        "recording", "stopping", 1000.0
    )
    assert Deadlines().due("recording", "started", 1000.0) is None
    assert Deadlines().due("recording", "stopped", 1000.0, session_ended=0.0) is None


def test_the_end_of_the_session_caps_every_unfinished_resource() -> None:
    """Session ended at 5,000: a recording still started is due at 5,900, a participant
    still joined at 5,120; a recording stopping since 4,900 keeps its sooner 5,800."""
    deadlines = Deadlines()
    assert Due(5900.0, "recording.session_end", 900.0) == deadlines.due(
        "recording", "started", 1000.0, session_ended=5000.0
    )
    assert Due(5120.0, "participant.session_end", 120.0) == deadlines.due(
        "participant", "joined", 1000.0, session_ended=5000.0
    )
    assert Due(5800.0, "recording.stopping", 900.0) == deadlines.due(
        "recording", "stopping", 4900.0, session_ended=5000.0
    )
    # not session scoped: the end of a meeting session says nothing about them
    assert deadlines.due("ai-deployment-session", "started", 1000.0, session_ended=5000.0) is None


def test_a_post_transcription_is_not_capped_by_the_end_of_its_session() -> None:
    deadlines = Deadlines()
    post = deadlines.due("transcription", "started", 6000.0, 5000.0, {"type": "post"})
    realtime = deadlines.due("transcription", "started", 1000.0, 5000.0, {"type": "realtime"})
    assert post is None
    assert Due(5900.0, "transcription.session_end", 900.0) == realtime


@given(
    name=st.sampled_from(sorted(LIFECYCLES)),
    data=st.data(),
    entered=st.floats(0, 1e9),
    ended=st.none() | st.floats(0, 1e9),
    overrides=st.dictionaries(
        st.sampled_from(sorted(NAMES)), st.none() | st.floats(1, 1e6), max_size=5
    ),
)
def test_due_is_the_sooner_of_the_deadlines_that_apply(
    name: str,
    data: st.DataObject,
    entered: float,
    ended: float | None,
    overrides: dict[str, float | None],
) -> None:
    """For any state, entry time, session end and overrides: due is the sooner of the
    state's deadline and the session's grace, whichever are in force, never for a final
    state."""
    lc = LIFECYCLES[name]
    state = data.draw(st.sampled_from(lc.definition.states[1:]))
    deadlines = Deadlines(overrides)
    merged = {**DEFAULTS, **overrides}
    candidates = []
    if (own := merged.get(f"{name}.{state}")) is not None:
        candidates.append(entered + own)
    if ended is not None and (grace := merged.get(f"{name}.{SESSION_END}")) is not None:
        candidates.append(ended + grace)
    due = deadlines.due(name, state, entered, ended)
    if state in lc.final_states or not candidates:
        assert due is None
    else:
        assert due is not None
        assert min(candidates) == due.at
        assert merged[due.deadline] == due.seconds
