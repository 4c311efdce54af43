"""The docs stay true to the code: generated sections, diagrams and the API reference.

The doctests of the pages themselves run through pytest's ``--doctest-glob=*.md``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

import lifecycle
from lifecycle import LIFECYCLES
from lifecycle._deadlines import NAMES

DOCS = Path(__file__).resolve().parents[2] / "docs"
LIFECYCLE_PAGES = DOCS / "lifecycles"


def load_generate() -> ModuleType:
    """``docs/generate.py``, imported from its path (docs is not a package)."""
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generate()


def mermaid_blocks(text: str) -> list[str]:
    """The contents of the ```mermaid fenced blocks of a page."""
    return re.findall(r"^```mermaid\n(.*?)\n```$", text, flags=re.DOTALL | re.MULTILINE)


def test_generated_sections_do_not_drift() -> None:
    """``generate.py --check`` finds no page that drifts from the lifecycle registry."""
    problems: list[str] = generate.drift()
    assert [] == problems


def test_check_command_passes(capsys: pytest.CaptureFixture[str]) -> None:
    """``python docs/generate.py --check`` exits 0 and prints nothing."""
    code: int = generate.main(["--check"])
    assert (0, "") == (code, capsys.readouterr().err)


def test_regenerating_undoes_a_hand_edit() -> None:
    """A hand edit inside the markers is noticed, and regenerating restores the page."""
    page = generate.page_of("hls")
    original = page.read_text()
    tampered = original.replace("| `started` | `hls-playable` | `playable` | forward |", "")
    assert tampered != original
    body: str = generate.lifecycle_section(LIFECYCLES["hls"])
    restored: str = generate.splice(tampered, body)
    assert original == restored


def test_prose_outside_the_markers_is_kept() -> None:
    """Splicing replaces only the text between the markers."""
    text = f"# Title\n\nprose\n\n{generate.BEGIN}\nstale\n{generate.END}\n\nmore prose\n"
    expected = (
        f"# Title\n\nprose\n\n{generate.BEGIN}\n{generate.NOTICE}\n\nfresh\n\n"
        f"{generate.END}\n\nmore prose\n"
    )
    assert expected == generate.splice(text, "fresh")


def test_a_page_without_markers_is_an_error() -> None:
    """A page that lost its markers cannot be regenerated silently."""
    with pytest.raises(ValueError, match="needs exactly one"):
        generate.splice("# Title\n\nno markers\n", "fresh")


def test_every_lifecycle_has_a_page() -> None:
    """Each lifecycle of the registry has its page, and there is no page for another."""
    pages = {p.stem for p in LIFECYCLE_PAGES.glob("*.md")} - {"index"}
    assert set(LIFECYCLES) == pages


@pytest.mark.parametrize("name", list(LIFECYCLES))
def test_page_diagram_is_the_code_diagram(name: str) -> None:
    """The one Mermaid block of a lifecycle page is exactly ``Lifecycle.mermaid()``."""
    text = (LIFECYCLE_PAGES / f"{name}.md").read_text()
    assert [LIFECYCLES[name].mermaid()] == mermaid_blocks(text)


@pytest.mark.parametrize("name", list(LIFECYCLES))
def test_page_lists_every_deadline(name: str) -> None:
    """The Deadlines table of a lifecycle page names each deadline of that lifecycle."""
    text = (LIFECYCLE_PAGES / f"{name}.md").read_text()
    deadlines = text.split("### Deadlines", 1)[1]
    missing = [n for n in NAMES if n.startswith(f"{name}.") and f"| `{n}` |" not in deadlines]
    assert [] == missing


@pytest.mark.parametrize("name", list(LIFECYCLES))
def test_index_links_every_lifecycle(name: str) -> None:
    """``docs/lifecycles/index.md`` links the page of each lifecycle."""
    assert f"({name}.md)" in (LIFECYCLE_PAGES / "index.md").read_text()


def test_api_reference_mentions_every_public_name() -> None:
    """Every name in ``lifecycle.__all__`` appears in ``docs/api.md``."""
    text = (DOCS / "api.md").read_text()
    missing = [n for n in lifecycle.__all__ if not re.search(rf"\b{re.escape(n)}\b", text)]
    assert [] == missing


def test_testing_page_mentions_every_strategy() -> None:
    """Every strategy in ``lifecycle.strategies.__all__`` appears in ``docs/testing.md``."""
    strategies = importlib.import_module("lifecycle.strategies")
    text = (DOCS / "testing.md").read_text()
    names: list[str] = strategies.__all__
    missing = [n for n in names if f"`{n}(" not in text]
    assert [] == missing
