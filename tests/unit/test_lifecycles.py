"""The lifecycle registry: definitions, compiled tables, machines, diagrams, validation."""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs
import pytest

from lifecycle import (
    LIFECYCLES,
    WEBHOOK_TYPES,
    DefinitionError,
    LifecycleDef,
    Outcome,
    RecordingEvent,
    SessionEvent,
    Step,
    compile_lifecycle,
)
from lifecycle._lifecycles import _registry

Edges = frozenset[tuple[str, str]]

MEETING = ("meetingId", "sessionId")
RECORDER_STATES = ("idle", "starting", "started", "stopping", "stopped", "failed")
RECORDER_FORWARD: Edges = frozenset(
    {
        ("idle", "starting"),
        ("starting", "started"),
        ("started", "stopping"),
        ("stopping", "stopped"),
        ("starting", "failed"),
        ("started", "failed"),
        ("stopping", "failed"),
    }
)
RECORDER_RESTART: Edges = frozenset({("stopped", "starting"), ("failed", "starting")})
HLS_STATES = ("idle", "starting", "started", "playable", "stopping", "stopped", "failed")
HLS_FORWARD: Edges = frozenset(
    {
        ("idle", "starting"),
        ("starting", "started"),
        ("started", "playable"),
        ("playable", "stopping"),
        ("started", "stopping"),
        ("stopping", "stopped"),
        ("starting", "failed"),
        ("started", "failed"),
        ("playable", "failed"),
        ("stopping", "failed"),
    }
)
NONE: Edges = frozenset()


@attrs.frozen
class Expected:
    """A lifecycle as the spec describes it."""

    key_fields: tuple[str, ...]
    states: tuple[str, ...]
    forward: Edges
    restart: Edges
    final: frozenset[str]
    entry: str
    session_scoped: bool


EXPECTED: dict[str, Expected] = {
    "session": Expected(
        MEETING,
        ("idle", "started", "ended"),
        frozenset({("idle", "started"), ("started", "ended")}),
        NONE,
        frozenset({"ended"}),
        "started",
        False,
    ),
    "participant": Expected(
        (*MEETING, "participantId"),
        ("idle", "joined", "left"),
        frozenset({("idle", "joined"), ("joined", "left")}),
        frozenset({("left", "joined")}),
        frozenset({"left"}),
        "joined",
        True,
    ),
    "recording": Expected(
        MEETING,
        RECORDER_STATES,
        RECORDER_FORWARD,
        RECORDER_RESTART,
        frozenset({"stopped", "failed"}),
        "starting",
        True,
    ),
    "participant-track-recording": Expected(
        (*MEETING, "participantId", "kind"),
        RECORDER_STATES,
        RECORDER_FORWARD,
        RECORDER_RESTART,
        frozenset({"stopped", "failed"}),
        "starting",
        True,
    ),
    "participant-recording": Expected(
        (*MEETING, "participantId"),
        RECORDER_STATES,
        RECORDER_FORWARD,
        RECORDER_RESTART,
        frozenset({"stopped", "failed"}),
        "starting",
        True,
    ),
    "livestream": Expected(
        MEETING,
        RECORDER_STATES,
        RECORDER_FORWARD,
        RECORDER_RESTART,
        frozenset({"stopped", "failed"}),
        "starting",
        True,
    ),
    "hls": Expected(
        MEETING,
        HLS_STATES,
        HLS_FORWARD,
        RECORDER_RESTART,
        frozenset({"stopped", "failed"}),
        "starting",
        True,
    ),
    "transcription": Expected(
        ("id",),
        ("idle", "started", "stopped", "failed"),
        frozenset(
            {("idle", "started"), ("started", "stopped"), ("idle", "failed"), ("started", "failed")}
        ),
        NONE,
        frozenset({"stopped", "failed"}),
        "started",
        True,
    ),
    "merge-recording": Expected(
        ("id",),
        ("idle", "completed", "failed"),
        frozenset({("idle", "completed"), ("idle", "failed")}),
        NONE,
        frozenset({"completed", "failed"}),
        "completed",
        False,
    ),
    "resource": Expected(
        ("id",),
        ("idle", "acquired"),
        frozenset({("idle", "acquired")}),
        NONE,
        frozenset({"acquired"}),
        "acquired",
        False,
    ),
    "ai-deployment-session": Expected(
        ("sessionId",),
        RECORDER_STATES,
        RECORDER_FORWARD,
        NONE,
        frozenset({"stopped", "failed"}),
        "starting",
        False,
    ),
}


def _family(prefix: str, states: tuple[str, ...]) -> dict[str, str]:
    return {f"{prefix}-{s}": s for s in states}


RECORDER_TARGETS = ("starting", "started", "stopping", "stopped", "failed")
WEBHOOKS: dict[str, dict[str, str]] = {
    "session": _family("session", ("started", "ended")),
    "participant": _family("participant", ("joined", "left")),
    "recording": _family("recording", RECORDER_TARGETS),
    "participant-track-recording": _family("participant-track-recording", RECORDER_TARGETS),
    "participant-recording": _family("participant-recording", RECORDER_TARGETS),
    "livestream": _family("livestream", RECORDER_TARGETS),
    "hls": _family("hls", HLS_STATES[1:]),
    "transcription": {
        **_family("transcription", ("started", "stopped", "failed")),
        "transcription-completed": "stopped",
    },
    "merge-recording": _family("merge-recording", ("completed", "failed")),
    "resource": {"resource-acquired": "acquired"},
    "ai-deployment-session": {
        **_family("ai-deployment-session", RECORDER_TARGETS),
        **_family("agent-session", RECORDER_TARGETS),
    },
}

NAMES = list(EXPECTED)


def _types_into(webhooks: Mapping[str, str], state: str) -> set[str]:
    return {w for w, t in webhooks.items() if t == state}


# -- the registry --------------------------------------------------------------------------


def test_lifecycle_names() -> None:
    """The registry holds exactly the eleven lifecycles of the spec."""
    assert set(EXPECTED) == set(LIFECYCLES)


@pytest.mark.parametrize("name", NAMES)
def test_definition(name: str) -> None:
    """Each lifecycle has the spec's key, states, edges and session scoping."""
    want = EXPECTED[name]
    lc = LIFECYCLES[name]
    d = lc.definition
    assert name == d.name == lc.name
    assert want.key_fields == d.key_fields
    assert want.states == d.states == lc.states
    assert want.forward == set(d.forward)
    assert len(d.forward) == len(set(d.forward))
    assert want.restart == set(d.restart)
    assert want.session_scoped == d.session_scoped
    assert "idle" == d.states[0]


@pytest.mark.parametrize("name", NAMES)
def test_final_and_entry_states(name: str) -> None:
    """Final states are those no forward edge leaves; the entry state follows idle."""
    lc = LIFECYCLES[name]
    assert EXPECTED[name].final == lc.final_states
    assert EXPECTED[name].entry == lc.entry_state


@pytest.mark.parametrize("name", NAMES)
def test_webhooks(name: str) -> None:
    """Each lifecycle maps exactly its webhook types to their target states."""
    lc = LIFECYCLES[name]
    assert WEBHOOKS[name] == dict(lc.definition.webhooks)
    for w in WEBHOOKS[name]:
        assert lc is WEBHOOK_TYPES[w]
    assert set(WEBHOOKS[name]) == set(lc.event_classes)


def test_webhook_types_cover_47() -> None:
    """All 47 webhook types are registered, each to exactly one lifecycle."""
    assert 47 == sum(len(w) for w in WEBHOOKS.values())
    assert {w for ws in WEBHOOKS.values() for w in ws} == set(WEBHOOK_TYPES)


def test_outcomes() -> None:
    """Outcome is a str enum of the seven classifications, and the sweep's overdue."""
    assert [
        "applied",
        "duplicate",
        "gap",
        "out_of_order",
        "illegal",
        "unknown_type",
        "malformed",
        "overdue",
    ] == [o.value for o in Outcome]
    assert isinstance(Outcome.GAP, str)
    assert "gap" == f"{Outcome.GAP}"
    assert Outcome.OUT_OF_ORDER is Outcome("out_of_order")


# -- compiled tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_table_has_a_cell_for_every_state_and_type(name: str) -> None:
    """The table has one row per state and one cell per webhook type of the lifecycle."""
    lc = LIFECYCLES[name]
    assert set(EXPECTED[name].states) == set(lc.table)
    for state, row in lc.table.items():
        assert set(WEBHOOKS[name]) == set(row), state
        for w, step in row.items():
            assert WEBHOOKS[name][w] == step.target


@pytest.mark.parametrize("name", NAMES)
def test_table_applies_exactly_the_edges(name: str) -> None:
    """A cell is applied iff its (state, target) is an edge; restart iff a restart edge."""
    want = EXPECTED[name]
    lc = LIFECYCLES[name]
    for state, row in lc.table.items():
        for w, step in row.items():
            edge = (state, WEBHOOKS[name][w])
            is_edge = edge in want.forward or edge in want.restart
            assert is_edge == (Outcome.APPLIED is step.outcome), (state, w)
            assert (edge in want.restart) == step.restart, (state, w)


@pytest.mark.parametrize(
    ("name", "state", "webhook_type", "step"),
    [
        (
            "recording",
            "idle",
            "recording-stopped",
            Step(Outcome.GAP, "stopped", ("starting", "started", "stopping")),
        ),
        ("recording", "stopped", "recording-starting", Step(Outcome.APPLIED, "starting", (), True)),
        ("recording", "stopped", "recording-failed", Step(Outcome.ILLEGAL, "failed")),
        ("recording", "stopped", "recording-started", Step(Outcome.OUT_OF_ORDER, "started")),
        ("recording", "started", "recording-started", Step(Outcome.DUPLICATE, "started")),
        (
            "hls",
            "idle",
            "hls-stopped",
            Step(Outcome.GAP, "stopped", ("starting", "started", "stopping")),
        ),
        ("hls", "started", "hls-stopping", Step(Outcome.APPLIED, "stopping")),
        ("hls", "idle", "hls-failed", Step(Outcome.GAP, "failed", ("starting",))),
        ("transcription", "idle", "transcription-failed", Step(Outcome.APPLIED, "failed")),
        ("transcription", "started", "transcription-completed", Step(Outcome.APPLIED, "stopped")),
        ("transcription", "stopped", "transcription-completed", Step(Outcome.DUPLICATE, "stopped")),
        (
            "ai-deployment-session",
            "stopped",
            "agent-session-starting",
            Step(Outcome.OUT_OF_ORDER, "starting"),
        ),
        ("participant", "left", "participant-joined", Step(Outcome.APPLIED, "joined", (), True)),
        ("merge-recording", "completed", "merge-recording-failed", Step(Outcome.ILLEGAL, "failed")),
    ],
)
def test_table_cells(name: str, state: str, webhook_type: str, step: Step) -> None:
    """Selected cells of the compiled tables, written by hand."""
    assert step == LIFECYCLES[name].table[state][webhook_type]


# -- transitions machines and diagrams -------------------------------------------------------


def _expected_machine_edges(name: str) -> set[tuple[str, str, str]]:
    want = EXPECTED[name]
    return {
        (a, w, b) for a, b in want.forward | want.restart for w in _types_into(WEBHOOKS[name], b)
    }


@pytest.mark.parametrize("name", NAMES)
def test_machine(name: str) -> None:
    """The shared machine starts in idle, has no auto transitions, and exactly the edges."""
    machine = LIFECYCLES[name].machine
    assert machine.auto_transitions is False
    assert "idle" == machine.initial
    assert list(EXPECTED[name].states) == list(machine.states)
    assert not any(t.startswith("to_") for t in machine.events)
    actual = {
        (source, trigger, t.dest)
        for trigger, event in machine.events.items()
        for source, transitions in event.transitions.items()
        for t in transitions
    }
    assert _expected_machine_edges(name) == actual


@pytest.mark.parametrize("name", NAMES)
def test_mermaid(name: str) -> None:
    """Mermaid text draws every state and every edge labelled with its webhook types."""
    text = LIFECYCLES[name].mermaid()
    assert "stateDiagram-v2" in text
    assert "[*] --> idle" in text
    want = EXPECTED[name]
    arrows = re.findall(r"^\s*(\S+) --> (\S+): (.*)$", text, flags=re.MULTILINE)
    labelled = {(a, b): set(label.split(" | ")) for a, b, label in arrows}
    assert {e: _types_into(WEBHOOKS[name], e[1]) for e in want.forward | want.restart} == labelled
    for state in want.states:
        assert f'state "{state}" as {state}' in text


def _dot_edges(text: str) -> dict[tuple[str, str], tuple[str, bool]]:
    edges = re.findall(
        r'^\s*"(\w+)" -> "(\w+)" \[label="([^"]*)"(, style="dashed")?\];$', text, flags=re.MULTILINE
    )
    return {(a, b): (label, bool(dashed)) for a, b, label, dashed in edges}


@pytest.mark.parametrize("name", NAMES)
def test_dot_edges_and_restart_style(name: str) -> None:
    """DOT text has one arrow per edge, restart edges dashed, and a start point."""
    text = LIFECYCLES[name].dot()
    assert text.startswith(f'digraph "{name}" {{')
    assert '"__start" -> "idle";' in text
    want = EXPECTED[name]
    edges = _dot_edges(text)
    assert want.forward | want.restart == set(edges)
    assert {e: e in want.restart for e in edges} == {e: d for e, (_, d) in edges.items()}


@pytest.mark.parametrize("name", NAMES)
def test_dot_labels_list_the_webhook_types(name: str) -> None:
    """Each DOT edge label is its webhook types separated by DOT newlines (\\n)."""
    edges = _dot_edges(LIFECYCLES[name].dot())
    labels = {e: set(label.split("\\n")) for e, (label, _) in edges.items()}
    assert {e: _types_into(WEBHOOKS[name], e[1]) for e in edges} == labels


# -- validation of definitions ---------------------------------------------------------------

TINY = LifecycleDef(
    name="tiny",
    key_fields=MEETING,
    shape=RecordingEvent,
    states=("idle", "on", "off"),
    forward=(("idle", "on"), ("on", "off")),
    restart=(("off", "on"),),
    webhooks={"tiny-on": "on", "tiny-off": "off"},
)


def test_compile_a_small_definition() -> None:
    """A valid hand-made definition compiles into table, classes and states."""
    lc = compile_lifecycle(TINY)
    assert frozenset({"off"}) == lc.final_states
    assert "on" == lc.entry_state
    assert {
        "idle": {
            "tiny-on": Step(Outcome.APPLIED, "on"),
            "tiny-off": Step(Outcome.GAP, "off", ("on",)),
        },
        "on": {"tiny-on": Step(Outcome.DUPLICATE, "on"), "tiny-off": Step(Outcome.APPLIED, "off")},
        "off": {
            "tiny-on": Step(Outcome.APPLIED, "on", (), True),
            "tiny-off": Step(Outcome.DUPLICATE, "off"),
        },
    } == {s: dict(row) for s, row in lc.table.items()}
    cls = lc.event_classes["tiny-off"]
    assert "TinyOff" == cls.__name__
    assert "tiny-off" == cls.webhook_type
    assert issubclass(cls, RecordingEvent)
    assert "m" == cls(meeting_id="m", session_id="s").meeting_id


def test_compile_finds_out_of_order_and_illegal() -> None:
    """A hand-made branching lifecycle gets out_of_order and illegal cells."""
    d = LifecycleDef(
        name="fork",
        key_fields=("meetingId", "sessionId"),
        shape=SessionEvent,
        states=("idle", "a", "b", "c"),
        forward=(("idle", "a"), ("a", "b"), ("a", "c")),
        restart=(),
        webhooks={"fork-a": "a", "fork-b": "b", "fork-c": "c"},
    )
    table = compile_lifecycle(d).table
    assert Step(Outcome.OUT_OF_ORDER, "a") == table["b"]["fork-a"]
    assert Step(Outcome.ILLEGAL, "c") == table["b"]["fork-c"]
    assert Step(Outcome.ILLEGAL, "b") == table["c"]["fork-b"]
    assert Step(Outcome.GAP, "c", ("a",)) == table["idle"]["fork-c"]


BAD_DEFINITIONS: list[tuple[str, LifecycleDef, str]] = [
    (
        "first state not idle",
        attrs.evolve(TINY, states=("on", "idle", "off")),
        "start with the one initial state",
    ),
    ("no states", attrs.evolve(TINY, states=()), "start with the one initial state"),
    ("duplicate state", attrs.evolve(TINY, states=("idle", "on", "off", "on")), "unique"),
    (
        "forward edge to an unknown state",
        attrs.evolve(TINY, forward=(*TINY.forward, ("on", "nowhere"))),
        "edge on -> nowhere names an unknown state",
    ),
    (
        "forward edge from an unknown state",
        attrs.evolve(TINY, forward=(*TINY.forward, ("nowhere", "off"))),
        "edge nowhere -> off names an unknown state",
    ),
    (
        "restart edge to an unknown state",
        attrs.evolve(TINY, restart=(("off", "gone"),)),
        "unknown state",
    ),
    (
        "forward edge back into idle",
        attrs.evolve(TINY, forward=(*TINY.forward, ("on", "idle"))),
        "back to the initial state",
    ),
    (
        "restart edge back into idle",
        attrs.evolve(TINY, restart=(("off", "idle"),)),
        "back to the initial state",
    ),
    (
        "webhook to an unknown state",
        attrs.evolve(TINY, webhooks={**TINY.webhooks, "tiny-x": "nowhere"}),
        "webhook 'tiny-x' maps to 'nowhere'",
    ),
    (
        "webhook to idle",
        attrs.evolve(TINY, webhooks={**TINY.webhooks, "tiny-reset": "idle"}),
        "webhook 'tiny-reset' maps to 'idle'",
    ),
    (
        "state reached by no webhook",
        attrs.evolve(TINY, webhooks={"tiny-on": "on"}),
        "every state but idle must be reached by some webhook",
    ),
    ("no key fields", attrs.evolve(TINY, key_fields=()), "key fields"),
    (
        "state reached by no edge",
        attrs.evolve(
            TINY,
            states=("idle", "on", "off", "lost"),
            webhooks={**TINY.webhooks, "tiny-lost": "lost"},
        ),
        "['lost'] are not reachable",
    ),
    (
        "state reached only by a restart edge",
        attrs.evolve(TINY, forward=(("idle", "on"),), restart=(("off", "on"),)),
        "['off'] are not reachable",
    ),
    (
        "state reached only backwards",
        attrs.evolve(TINY, forward=(("idle", "on"), ("off", "on")), restart=()),
        "['off'] are not reachable",
    ),
    (
        "restart edge leaving a non-final state",
        attrs.evolve(TINY, restart=(("on", "on"),)),
        "restart edge on -> on must leave a final state",
    ),
    (
        "forward edge out of the restart's final state",
        attrs.evolve(
            TINY,
            states=("idle", "on", "off", "gone"),
            forward=(*TINY.forward, ("off", "gone")),
            webhooks={**TINY.webhooks, "tiny-gone": "gone"},
        ),
        "restart edge off -> on must leave a final state",
    ),
]


@pytest.mark.parametrize(
    ("definition", "message"),
    [(d, m) for _, d, m in BAD_DEFINITIONS],
    ids=[i for i, _, _ in BAD_DEFINITIONS],
)
def test_bad_definitions_are_rejected(definition: LifecycleDef, message: str) -> None:
    """compile_lifecycle raises DefinitionError naming the broken rule."""
    with pytest.raises(DefinitionError) as info:
        compile_lifecycle(definition)
    assert isinstance(info.value, ValueError)
    assert "lifecycle 'tiny'" in str(info.value)
    assert message in str(info.value)


def test_registry_rejects_a_name_defined_twice() -> None:
    """Two lifecycles may not share a name."""
    with pytest.raises(DefinitionError, match="'tiny' is defined twice"):
        _registry([TINY, attrs.evolve(TINY, webhooks={"t2-on": "on", "t2-off": "off"})])


def test_registry_rejects_a_shared_webhook_type() -> None:
    """A webhook type may belong to one lifecycle only."""
    with pytest.raises(DefinitionError, match="'tiny-on' belongs to two lifecycles"):
        _registry([TINY, attrs.evolve(TINY, name="other")])


def test_registry_of_valid_definitions() -> None:
    """The registry maps names and webhook types to the compiled lifecycles."""
    other = attrs.evolve(TINY, name="other", webhooks={"other-on": "on", "other-off": "off"})
    by_name, by_type = _registry([TINY, other])
    assert ["tiny", "other"] == list(by_name)
    assert {"tiny-on": "tiny", "tiny-off": "tiny", "other-on": "other", "other-off": "other"} == {
        w: lc.name for w, lc in by_type.items()
    }
