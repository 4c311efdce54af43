"""Rewrite the generated sections of the docs from the lifecycle registry.

``python docs/generate.py`` rewrites, in place, the text between the markers
``<!-- generated: begin -->`` and ``<!-- generated: end -->`` of every lifecycle page
(``docs/lifecycles/<name>.md``: facts, diagram, webhook types, transitions and default
deadlines; a page with a stub of prose is created for a new lifecycle), of
``docs/lifecycles/index.md`` and of ``docs/events.md``, and all of ``docs/openapi.json``
(the HTTP API's OpenAPI document). The prose around the markers is never touched.

``python docs/generate.py --check`` changes nothing and exits 1, listing the pages that
drift from the code (CI runs it through ``tests/unit/test_docs.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import get_type_hints

import attrs

from lifecycle import LIFECYCLES, WEBHOOK_TYPES, Lifecycle
from lifecycle._deadlines import DEFAULTS, NAMES, SESSION_END
from lifecycle.server._openapi import openapi

BEGIN = "<!-- generated: begin -->"
END = "<!-- generated: end -->"
NOTICE = "<!-- Written by docs/generate.py from the lifecycle registry: do not edit. -->"

DOCS = Path(__file__).resolve().parent
LIFECYCLE_PAGES = DOCS / "lifecycles"
INDEX_PAGE = LIFECYCLE_PAGES / "index.md"
EVENTS_PAGE = DOCS / "events.md"
OPENAPI = DOCS / "openapi.json"
_BASE = {"extra", "envelope", "tag_key", "warnings"}


def _code(items: Iterable[str]) -> str:
    return ", ".join(f"`{i}`" for i in items) or "none"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def page_of(name: str) -> Path:
    """The page of the lifecycle ``name``."""
    return LIFECYCLE_PAGES / f"{name}.md"


def mermaid_block(lc: Lifecycle) -> str:
    """The fenced Mermaid block of ``lc``: exactly ``lc.mermaid()`` inside the fence."""
    return f"```mermaid\n{lc.mermaid()}\n```"


def _duration(seconds: float | None) -> str:
    """A default deadline in the largest whole unit: ``2 min``, ``24 h``; ``none``."""
    if seconds is None:
        return "none"
    for size, unit in ((3600, "h"), (60, "min")):
        if seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def deadlines_section(lc: Lifecycle) -> list[str]:
    """The ``Deadlines`` part of a lifecycle page: each deadline it may have, by the
    name configuration uses, with its state and default (from ``lifecycle._deadlines``)."""
    names = [n for n in NAMES if n.startswith(f"{lc.name}.")]
    link = "[Time: deadlines](../time.md#deadlines)"
    if not names:
        return [
            f"None: every state after `idle` is final, so a resource is never overdue; see {link}."
        ]
    rows = []
    for name in names:
        state = name.removeprefix(f"{lc.name}.")
        where = "any, once its session ended" if state == SESSION_END else f"`{state}`"
        rows.append([f"`{name}`", where, _duration(DEFAULTS.get(name))])
    shipped = [n for n in names if n in DEFAULTS] or names
    example = ([n for n in shipped if not n.endswith(f".{SESSION_END}")] or shipped)[-1]
    none = " (none: no limit of its own)" if any(n not in DEFAULTS for n in names) else ""
    grace = (
        ", and unfinished in any state once its meeting session ended"
        if lc.definition.session_scoped
        else ""
    )
    return [
        *_table(["Deadline", "State", "Default"], rows),
        "",
        f"How long a resource may stay in each state{none}{grace}; change one with "
        f'`--deadline {example}=30m` or `Engine(deadlines={{"{example}": "30m"}})`, or '
        f"switch it off, as {link} explains.",
    ]


def lifecycle_section(lc: Lifecycle) -> str:
    """The generated part of a lifecycle page: facts, diagram, the webhook types and
    transitions tables, and the deadlines."""
    d = lc.definition
    order = d.states.index
    restarts = [f"`{a}` → `{b}`" for a, b in d.restart]
    starts = [w for w, t in d.webhooks.items() if t == lc.entry_state]
    scoped = (
        f"yes: {_code(starts)} after the session ended warns `after_session_end`"
        if d.session_scoped
        else "no"
    )
    facts = _table(
        ["Property", "Value"],
        [
            ["Key fields", _code(d.key_fields)],
            ["Event shape", f"`{d.shape.__name__}`"],
            ["States", _code(d.states)],
            ["Final states", _code(sorted(lc.final_states, key=order))],
            ["Restart edges", ", ".join(restarts) or "none"],
            ["Session scoped", scoped],
        ],
    )
    types = _table(
        ["Webhook type", "Event class", "Leads to"],
        ([f"`{w}`", f"`{lc.event_classes[w].__name__}`", f"`{t}`"] for w, t in d.webhooks.items()),
    )
    edges = [
        (a, b, "forward") for a, b in sorted(d.forward, key=lambda e: (order(e[0]), order(e[1])))
    ]
    edges += [(a, b, "restart") for a, b in d.restart]
    transitions = _table(
        ["From", "Webhook type(s)", "To", "Kind"],
        (
            [f"`{a}`", _code(w for w, t in d.webhooks.items() if t == b), f"`{b}`", kind]
            for a, b, kind in edges
        ),
    )
    return "\n".join(
        [
            *facts,
            "",
            mermaid_block(lc),
            "",
            "### Webhook types",
            "",
            *types,
            "",
            "### Transitions",
            "",
            *transitions,
            "",
            "### Deadlines",
            "",
            *deadlines_section(lc),
        ]
    )


def index_section() -> str:
    """The generated table of ``docs/lifecycles/index.md``: one row per lifecycle."""
    rows = []
    for name, lc in LIFECYCLES.items():
        d = lc.definition
        rows.append(
            [
                f"[{name}]({name}.md)",
                _code(d.key_fields),
                _code(d.states[1:]),
                _code(sorted(lc.final_states, key=d.states.index)),
                _code(sorted({b for _, b in d.restart})),
                str(len(d.webhooks)),
            ]
        )
    return "\n".join(
        _table(
            [
                "Lifecycle",
                "Key fields",
                "States (after `idle`)",
                "Final",
                "Restarts to",
                "Webhook types",
            ],
            rows,
        )
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _field(name: str, hint: object) -> str:
    """A field by its wire name, with its kind when it is not a string."""
    what = (
        " (timestamp)"
        if hint == datetime | str | None
        else " (list of `FileDetail`)"
        if "FileDetail" in str(hint)
        else ""
    )
    return f"`{_camel(name)}`{what}"


def events_section() -> str:
    """The generated tables of ``docs/events.md``: the shapes, and every type's class."""
    shapes = []
    for name, lc in LIFECYCLES.items():
        d = lc.definition
        hints = get_type_hints(d.shape)  # resolved here: attrs may hold them as text
        fields = [a.name for a in attrs.fields(d.shape) if a.name not in _BASE]
        optional = [_field(f, hints[f]) for f in fields if _camel(f) not in d.key_fields]
        shapes.append(
            [
                f"`{d.shape.__name__}`",
                f"[{name}](lifecycles/{name}.md)",
                _code(d.key_fields),
                ", ".join(optional) or "none",
            ]
        )
    shape_table = _table(["Shape", "Lifecycle", "Key fields", "Other fields"], shapes)
    rows = []
    for w, lc in WEBHOOK_TYPES.items():
        cls = lc.event_classes[w]
        rows.append(
            [
                f"`{w}`",
                f"`{cls.__name__}`",
                f"`{lc.definition.shape.__name__}`",
                f"[{lc.name}](lifecycles/{lc.name}.md)",
                f"`{lc.definition.webhooks[w]}`",
            ]
        )
    type_table = _table(["Webhook type", "Class", "Shape", "Lifecycle", "Leads to"], rows)
    return "\n".join([*shape_table, "", *type_table])


def stub(name: str) -> str:
    """A new lifecycle page: a title, a reminder to write its prose, empty markers."""
    return (
        f"# {name}\n\nTODO: what a `{name}` resource is, and the `data` its status "
        f"keeps.\n\n## Definition\n\n{BEGIN}\n{END}\n"
    )


def splice(text: str, body: str, where: str = "page") -> str:
    """``text`` with the part between its one pair of markers replaced by ``body``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{where}: needs exactly one {BEGIN} and one {END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{NOTICE}\n\n{body}\n\n{END}{tail}"


def openapi_document() -> str:
    """The HTTP API's OpenAPI document, as ``lifecycle serve`` serves it."""
    return json.dumps(openapi(), indent=2) + "\n"


def targets() -> dict[Path, Callable[[], str]]:
    """Every generated page and the function that writes its generated part."""
    out: dict[Path, Callable[[], str]] = {
        page_of(name): partial(lifecycle_section, lc) for name, lc in LIFECYCLES.items()
    }
    out[INDEX_PAGE] = index_section
    out[EVENTS_PAGE] = events_section
    out[OPENAPI] = openapi_document
    return out


def orphans() -> list[Path]:
    """Lifecycle pages of lifecycles that the registry no longer has."""
    known = {page_of(name) for name in LIFECYCLES} | {INDEX_PAGE}
    return sorted(p for p in LIFECYCLE_PAGES.glob("*.md") if p not in known)


def rendered(path: Path, body: Callable[[], str]) -> str:
    """What ``path`` should hold: its prose (or a stub) around a fresh generated part."""
    if path.suffix == ".json":  # generated whole
        return body()
    text = path.read_text() if path.exists() else stub(path.stem)
    return splice(text, body(), str(path.relative_to(DOCS.parent)))


def drift() -> list[str]:
    """The pages that differ from what the code generates, each with why; empty when none."""
    problems = []
    for path, body in targets().items():
        name = path.relative_to(DOCS.parent)
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        try:
            fresh = rendered(path, body)
        except ValueError as e:
            problems.append(str(e))
            continue
        if fresh != path.read_text():
            problems.append(f"{name}: generated section drifts from the code")
    problems += [f"{p.relative_to(DOCS.parent)}: no lifecycle of that name" for p in orphans()]
    return problems


def write() -> list[Path]:
    """Rewrite every generated section; the paths that changed."""
    changed = []
    for path, body in targets().items():
        fresh = rendered(path, body)
        if not path.exists() or fresh != path.read_text():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fresh)
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: rewrite the generated sections, or ``--check`` them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 listing the pages that drift"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python docs/generate.py", file=sys.stderr)
        return 1 if problems else 0
    for path in write():
        print(f"rewrote {path.relative_to(DOCS.parent)}")
    stale = orphans()
    for path in stale:
        print(f"{path.relative_to(DOCS.parent)}: no lifecycle of that name", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
