"""The lifecycles, defined once as data, validated and compiled when imported.

Each :class:`LifecycleDef` is turned into a shared ``transitions`` machine (one per
lifecycle, ``auto_transitions=False``), checked, and compiled into the table the
engine reads on its hot path: ``(state, webhook type) -> Step``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from enum import StrEnum
from itertools import pairwise

import attrs
from attrs import frozen
from transitions import Machine
from transitions.extensions.diagrams import GraphMachine

from . import _events as ev
from .errors import DefinitionError

__all__ = [
    "LIFECYCLES",
    "WEBHOOK_TYPES",
    "Lifecycle",
    "LifecycleDef",
    "Outcome",
    "Step",
    "compile_lifecycle",
]

IDLE = "idle"


class Outcome(StrEnum):
    """How an event relates to the state of its resource; ``overdue`` marks a log entry
    that no webhook made: a sweep found the resource past its deadline.

    .. versionadded:: 0.1
    .. versionchanged:: 0.3 ``overdue``.
    """

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    GAP = "gap"
    OUT_OF_ORDER = "out_of_order"
    ILLEGAL = "illegal"
    UNKNOWN_TYPE = "unknown_type"
    MALFORMED = "malformed"
    OVERDUE = "overdue"


@frozen
class LifecycleDef:
    """A lifecycle as data: its states, edges, key and webhook types.

    ``forward`` edges are the normal progress; ``restart`` edges leave a final state
    to begin a new cycle (a new recording in the same session, a rejoin).
    ``session_scoped`` lifecycles belong to a meeting session: starting one after the
    session ended is flagged, unless its data holds one of the ``after_session`` values
    (``{"type": "post"}``: a transcription of the recording, made once it is over).
    """

    name: str
    key_fields: tuple[str, ...]
    shape: type[ev.Event]
    states: tuple[str, ...]
    forward: tuple[tuple[str, str], ...]
    restart: tuple[tuple[str, str], ...]
    webhooks: Mapping[str, str]
    session_scoped: bool = True
    after_session: Mapping[str, object] = attrs.field(factory=dict)

    def late_by_design(self, data: Mapping[str, object]) -> bool:
        """Whether an event with ``data`` comes after its session by design (its data
        holds one of the ``after_session`` values)."""
        return any(data.get(field) == value for field, value in self.after_session.items())


@frozen
class Step:
    """One compiled cell: what an event of a type does to a resource in a state."""

    outcome: Outcome
    target: str
    missing: tuple[str, ...] = ()
    restart: bool = False


def _progress(
    name: str,
    shape: type[ev.Event],
    key: tuple[str, ...],
    chain: tuple[str, ...],
    *,
    failed: bool = True,
    failed_from_idle: bool = False,
    shortcuts: tuple[tuple[str, str], ...] = (),
    restart_to: str | None = None,
    prefixes: tuple[str, ...] = (),
    more_webhooks: Mapping[str, str] | None = None,
    session_scoped: bool = True,
    after_session: Mapping[str, object] | None = None,
) -> LifecycleDef:
    """A lifecycle that walks ``idle -> chain...``, may fail, and may restart."""
    path = (IDLE, *chain)
    forward = [*pairwise(path), *shortcuts]
    states = path + (("failed",) if failed else ())
    if failed:
        forward += [(s, "failed") for s in chain[:-1]]
        if failed_from_idle:
            forward.insert(0, (IDLE, "failed"))
    restart: tuple[tuple[str, str], ...] = ()
    if restart_to is not None:
        restart = tuple((s, restart_to) for s in (chain[-1], "failed") if s in states)
    webhooks = {f"{p}-{s}": s for p in (prefixes or (name,)) for s in states[1:]}
    webhooks.update(more_webhooks or {})
    return LifecycleDef(
        name,
        key,
        shape,
        states,
        tuple(forward),
        restart,
        webhooks,
        session_scoped,
        after_session or {},
    )


_MEETING = ("meetingId", "sessionId")
_RECORDER = ("starting", "started", "stopping", "stopped")

DEFINITIONS: tuple[LifecycleDef, ...] = (
    _progress(
        "session",
        ev.SessionEvent,
        _MEETING,
        ("started", "ended"),
        failed=False,
        session_scoped=False,  # the session itself, not a resource within one
    ),
    _progress(
        "participant",
        ev.ParticipantEvent,
        (*_MEETING, "participantId"),
        ("joined", "left"),
        failed=False,
        restart_to="joined",
    ),
    _progress("recording", ev.RecordingEvent, _MEETING, _RECORDER, restart_to="starting"),
    _progress(
        "participant-track-recording",
        ev.ParticipantTrackRecordingEvent,
        (*_MEETING, "participantId", "kind"),
        _RECORDER,
        restart_to="starting",
    ),
    _progress(
        "participant-recording",
        ev.ParticipantRecordingEvent,
        (*_MEETING, "participantId"),
        _RECORDER,
        restart_to="starting",
    ),
    _progress("livestream", ev.LivestreamEvent, _MEETING, _RECORDER, restart_to="starting"),
    _progress(
        "hls",
        ev.HlsEvent,
        _MEETING,
        ("starting", "started", "playable", "stopping", "stopped"),
        shortcuts=(("started", "stopping"),),
        restart_to="starting",
    ),
    _progress(
        "transcription",
        ev.TranscriptionEvent,
        ("id",),
        ("started", "stopped"),
        failed_from_idle=True,
        more_webhooks={"transcription-completed": "stopped"},
        after_session={"type": "post"},  # post transcriptions start once the meeting is over
    ),
    _progress(
        "merge-recording",
        ev.MergeRecordingEvent,
        ("id",),
        ("completed",),
        failed_from_idle=True,
        session_scoped=False,
    ),
    _progress(
        "resource",
        ev.ResourceEvent,
        ("id",),
        ("acquired",),
        failed=False,
        session_scoped=False,
    ),
    _progress(
        "ai-deployment-session",
        ev.AiDeploymentSessionEvent,
        ("sessionId",),
        _RECORDER,
        prefixes=("ai-deployment-session", "agent-session"),
        session_scoped=False,
    ),
)


def _bfs(edges: Iterable[tuple[str, str]], start: str) -> dict[str, tuple[str, ...]]:
    """Shortest forward path from ``start`` to every reachable state (its inner states)."""
    out: dict[str, list[str]] = {}
    for a, b in edges:
        out.setdefault(a, []).append(b)
    paths: dict[str, tuple[str, ...]] = {start: ()}
    queue = deque([start])
    while queue:
        s = queue.popleft()
        for t in out.get(s, ()):
            if t not in paths:
                paths[t] = paths[s] + ((s,) if s != start else ())
                queue.append(t)
    return paths


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


@frozen
class Lifecycle:
    """A validated lifecycle: its definition, shared machine and compiled table."""

    definition: LifecycleDef
    machine: Machine = attrs.field(repr=False)
    table: Mapping[str, Mapping[str, Step]] = attrs.field(repr=False)
    event_classes: Mapping[str, type[ev.Event]] = attrs.field(repr=False)
    final_states: frozenset[str]
    entry_state: str

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def states(self) -> tuple[str, ...]:
        return self.definition.states

    def mermaid(self) -> str:
        """The state diagram as Mermaid ``stateDiagram-v2`` text, drawn by transitions."""
        d = self.definition
        graph = GraphMachine(
            model=_Placeholder(),
            states=list(d.states),
            transitions=_machine_edges(d),
            initial=IDLE,
            auto_transitions=False,
            graph_engine="mermaid",
            title=d.name,
            show_state_attributes=False,
        )
        text: str = graph.get_graph().draw(None)
        # the placeholder model's current state is not part of the definition, and
        # Mermaid reads the title from front matter as `title: ...`
        text = text.replace(f"Class {IDLE} s_active", f"Class {IDLE} s_default")
        return text.replace(f"---\n{d.name}\n---", f"---\ntitle: {d.name}\n---", 1)

    def dot(self) -> str:
        """The state diagram as Graphviz DOT text."""
        d = self.definition
        lines = [
            f'digraph "{d.name}" {{',
            "  rankdir=LR;",
            '  "__start" [shape=point];',
            f'  "__start" -> "{IDLE}";',
        ]
        for (a, b), types in _edge_labels(d).items():
            style = ', style="dashed"' if (a, b) in d.restart else ""
            label = "\\n".join(types)
            lines.append(f'  "{a}" -> "{b}" [label="{label}"{style}];')
        return "\n".join([*lines, "}"]) + "\n"


class _Placeholder:
    """``get_graph()`` needs one model; this one is never driven."""


def _edge_labels(d: LifecycleDef) -> dict[tuple[str, str], list[str]]:
    labels: dict[tuple[str, str], list[str]] = {}
    for a, b in (*d.forward, *d.restart):
        labels[(a, b)] = [w for w, t in d.webhooks.items() if t == b]
    return labels


def _machine_edges(d: LifecycleDef) -> list[dict[str, str]]:
    return [
        {"trigger": w, "source": a, "dest": b}
        for (a, b), types in _edge_labels(d).items()
        for w in types
    ]


def compile_lifecycle(d: LifecycleDef) -> Lifecycle:
    """Validate ``d``, build its shared machine and compile its classification table.

    Raises :class:`DefinitionError` when a structural rule is broken: one initial state
    (``idle``, never re-entered), every state reachable from it, every state reached by
    some webhook type and every webhook type mapped to a state, and restart edges only
    out of final states (the states no forward edge leaves).
    """

    def fail(why: str) -> DefinitionError:
        return DefinitionError(f"lifecycle {d.name!r}: {why}")

    if len(set(d.states)) != len(d.states) or not d.states or d.states[0] != IDLE:
        raise fail(f"states must be unique and start with the one initial state {IDLE!r}")
    known = set(d.states)
    for a, b in (*d.forward, *d.restart):
        if a not in known or b not in known:
            raise fail(f"edge {a} -> {b} names an unknown state")
    if IDLE in {b for _, b in (*d.forward, *d.restart)}:
        raise fail(f"no edge may lead back to the initial state {IDLE!r}")
    for w, t in d.webhooks.items():
        if t not in known or t == IDLE:
            raise fail(f"webhook {w!r} maps to {t!r}, not a state it can reach")
    if set(d.webhooks.values()) != known - {IDLE}:
        raise fail("every state but idle must be reached by some webhook type")
    if not d.key_fields:
        raise fail("a lifecycle needs key fields")

    machine = Machine(
        model=None,
        states=list(d.states),
        transitions=_machine_edges(d),
        initial=IDLE,
        auto_transitions=False,
        send_event=False,
    )
    graph: dict[str, set[str]] = {
        s: {str(t.dest) for e in machine.events.values() for t in e.transitions.get(s, ())}
        for s in d.states
    }
    restart = set(d.restart)
    forward = [
        (a, b)
        for a, bs in graph.items()
        for b in sorted(bs, key=d.states.index)
        if (a, b) not in restart
    ]
    final = frozenset(s for s in d.states if not any(a == s for a, _ in forward))
    for a, b in restart:
        if a not in final:
            raise fail(f"restart edge {a} -> {b} must leave a final state")
    reach = {s: _bfs(forward, s) for s in d.states}
    unreachable = known - set(reach[IDLE])
    if unreachable:
        raise fail(f"states {sorted(unreachable)} are not reachable from {IDLE!r}")

    table: dict[str, dict[str, Step]] = {}
    for s in d.states:
        row = table[s] = {}
        for w, t in d.webhooks.items():
            if t in graph[s]:
                row[w] = Step(Outcome.APPLIED, t, (), (s, t) in restart)
            elif t == s:
                row[w] = Step(Outcome.DUPLICATE, t)
            elif t in reach[s]:
                row[w] = Step(Outcome.GAP, t, reach[s][t])
            elif s in reach[t]:
                row[w] = Step(Outcome.OUT_OF_ORDER, t)
            else:
                row[w] = Step(Outcome.ILLEGAL, t)

    classes = {
        w: attrs.frozen(kw_only=True)(
            type(
                _camel(w),
                (d.shape,),
                {
                    "webhook_type": w,
                    "lifecycle": d.name,
                    "__module__": __name__,
                    "__doc__": f"The ``{w}`` webhook: {d.name} becomes ``{t}``.",
                },
            )
        )
        for w, t in d.webhooks.items()
    }
    for cls in classes.values():  # importable by name, so that events pickle
        globals().setdefault(cls.__name__, cls)
    entry = d.states[1]
    return Lifecycle(d, machine, table, classes, final, entry)


def _registry(defs: Iterable[LifecycleDef]) -> tuple[dict[str, Lifecycle], dict[str, Lifecycle]]:
    by_name: dict[str, Lifecycle] = {}
    by_type: dict[str, Lifecycle] = {}
    for d in defs:
        if d.name in by_name:
            raise DefinitionError(f"lifecycle {d.name!r} is defined twice")
        lc = by_name[d.name] = compile_lifecycle(d)
        for w in d.webhooks:
            if w in by_type:
                raise DefinitionError(f"webhook {w!r} belongs to two lifecycles")
            by_type[w] = lc
    return by_name, by_type


LIFECYCLES, WEBHOOK_TYPES = _registry(DEFINITIONS)
"""Every lifecycle by name, and the lifecycle of every known webhook type."""
