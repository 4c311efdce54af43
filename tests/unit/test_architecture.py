"""The package's shape: imports only go down, and hidden limits are checked."""

from __future__ import annotations

import ast
from pathlib import Path

import attrs
import pytest

from lifecycle import DefinitionError, Event, Outcome, _convert, _core
from lifecycle.stores import BACKENDS
from lifecycle.stores import memory as memory_store

PACKAGE = Path(_core.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every lifecycle module ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lifecycle")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("lifecycle"):
                continue
            for alias in node.names:  # `from . import x` may import the module x
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    found |= (
        {t.partition(":")[0] for t in BACKENDS.values()} if name == "lifecycle.stores" else set()
    )
    return found - {name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_the_module_graph_has_no_cycle() -> None:
    """No module imports, even lazily, one that imports it back (directly or not)."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(GRAPH.get(name, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep] if dep in path else [name, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert [] == cycles


def reaches(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in GRAPH.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


@pytest.mark.parametrize(
    "module",
    [
        "lifecycle.errors",
        "lifecycle._events",
        "lifecycle._lifecycles",
        "lifecycle._convert",
        "lifecycle._records",
        "lifecycle._core",
    ],
)
def test_the_core_imports_no_engine_store_or_interface(module: str) -> None:
    """Data and core modules never reach the engine, a store, the server or the CLI."""
    upward = {
        m
        for m in reaches(module)
        if m.startswith(
            (
                "lifecycle._engine",
                "lifecycle.stores",
                "lifecycle.server",
                "lifecycle._cli",
                "lifecycle._http",
            )
        )
        or m == "lifecycle"
    }
    assert set() == upward


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("lifecycle.stores")))
def test_stores_never_import_the_engine_or_an_interface(module: str) -> None:
    """A backend implements the store protocol; it knows nothing of who feeds it."""
    assert {"lifecycle._engine", "lifecycle._cli", "lifecycle"} & reaches(module) == set()
    assert not any(m.startswith("lifecycle.server") for m in reaches(module))


def test_errors_import_nothing_of_the_package() -> None:
    """Every module may raise from errors.py: it sits at the bottom."""
    assert set() == GRAPH["lifecycle.errors"]


def test_history_entry_bits_are_checked() -> None:
    """Outcomes and webhook types that outgrow a packed history entry fail at build."""
    _core.check_widths(len(Outcome), len(_core.TYPES))  # today's fit
    _core.check_widths(8, 128)
    with pytest.raises(DefinitionError, match="do not fit"):
        _core.check_widths(9, 1)
    with pytest.raises(DefinitionError, match="do not fit"):
        _core.check_widths(1, 129)


def test_memory_log_entry_bits_are_checked() -> None:
    """State names and outcomes that outgrow a memory log entry fail at build."""
    memory_store.check_widths(len(memory_store.STATES), len(Outcome))
    with pytest.raises(DefinitionError, match="do not fit"):
        memory_store.check_widths(17, 1)
    with pytest.raises(DefinitionError, match="do not fit"):
        memory_store.check_widths(1, 9)


def test_a_field_type_the_checks_do_not_know_fails_at_definition() -> None:
    """An event field of a type with no check raises, instead of being checked as text."""

    @attrs.frozen(kw_only=True)
    class Odd(Event):
        meeting_id: str
        count: int | None = None

    with pytest.raises(DefinitionError, match=r"Odd\.count: no check for fields of type"):
        _convert._spec(Odd, ("meetingId",))
