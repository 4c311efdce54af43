"""The inline SVG state diagram: well-formed, complete, laid out without overlaps."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

import attrs
import jinja2
import markupsafe
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import Event, LifecycleDef
from lifecycle._lifecycles import IDLE, LIFECYCLES, Lifecycle
from lifecycle.server._diagram import _esc, _layers, _Layout, diagram

SVG = "{http://www.w3.org/2000/svg}"
Rect = tuple[float, float, float, float]  # x, y, width, height


def fake(
    states: Sequence[str],
    forward: Sequence[tuple[str, str]],
    restart: Sequence[tuple[str, str]] = (),
) -> Lifecycle:
    """A lifecycle built without the registry's checks, for names and shapes it forbids."""
    webhooks = {f"x-{s}": s for s in states[1:]}
    d = LifecycleDef(
        "fake", ("id",), Event, tuple(states), tuple(forward), tuple(restart), webhooks
    )
    final = frozenset(s for s in states if not any(a == s for a, _ in forward))
    return attrs.evolve(LIFECYCLES["session"], definition=d, final_states=final)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert f"{SVG}svg" == root.tag
    return root


def boxes(root: ET.Element) -> dict[str, Rect]:
    found: dict[str, Rect] = {}
    for g in root.iter(f"{SVG}g"):
        rect = g.find(f"{SVG}rect[@class='box']")
        assert rect is not None
        found[g.attrib["data-state"]] = tuple(  # type: ignore[assignment]
            float(rect.attrib[k]) for k in ("x", "y", "width", "height")
        )
    return found


def edges(root: ET.Element) -> list[ET.Element]:
    return [p for p in root.iter(f"{SVG}path") if "data-edge" in p.attrib]


def apart(r: Rect, s: Rect) -> bool:
    return r[0] + r[2] <= s[0] or s[0] + s[2] <= r[0] or r[1] + r[3] <= s[1] or s[1] + s[3] <= r[1]


def check(lc: Lifecycle, counts: Mapping[str, int]) -> ET.Element:
    """The checks every diagram passes; returns the parsed SVG."""
    d = lc.definition
    root = parse(diagram(lc, counts))
    groups = {g.attrib["data-state"]: g for g in root.iter(f"{SVG}g")}
    assert list(d.states) == list(groups)
    for s, g in groups.items():
        assert str(counts.get(s, 0)) == g.attrib["data-count"]
        assert f"s-{s}" in g.attrib["class"].split()
        assert ("final" in g.attrib["class"].split()) == (s in lc.final_states)
    named = {f"{a}->{b}": (a, b) for a, b in {*d.forward, *d.restart}}
    assert sorted(named) == sorted(p.attrib["data-edge"] for p in edges(root))
    for p in edges(root):
        restart = named[p.attrib["data-edge"]] in d.restart
        assert restart == ("restart" in p.attrib["class"].split())
        assert "none" == p.attrib["fill"]
        assert p.attrib["marker-end"].startswith("url(#")
    placed = boxes(root)
    names = list(placed)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert apart(placed[a], placed[b]), (a, b)
    vx, vy, vw, vh = map(float, root.attrib["viewBox"].split())
    for x, y, w, h in placed.values():
        assert vx <= x <= x + w <= vx + vw
        assert vy <= y <= y + h <= vy + vh
    return root


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_every_lifecycle_draws_every_state_and_edge_once(name: str) -> None:
    lc = LIFECYCLES[name]
    check(lc, {s: 7 * i for i, s in enumerate(lc.states)})


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_edges_and_labels_run_clear_of_the_boxes(name: str) -> None:
    """S-curves stay between two neighbouring columns; lanes run outside all boxes;
    no edge label covers a box, nor another label."""
    lay = _Layout(LIFECYCLES[name], {})
    rects = [(b.x, b.y, b.w, b.h) for b in lay.boxes.values()]
    for path, _ in lay.drawn.values():
        n = [float(v) for v in re.findall(r"-?[\d.]+", path)]
        if " C" in path:
            x0, x1 = n[0], n[-2]
            assert all(x + w <= x0 or x1 <= x for x, _, w, _ in rects)
        else:
            ax, ay, lane, bx, by = n[0], n[1], n[4], n[8], n[12]
            assert all(lane <= y or y + h <= lane for _, y, _, h in rects)
            for px, py in ((ax, ay), (bx, by)):
                lo, hi = sorted((py, lane))
                assert not any(x < px < x + w and y < hi and lo < y + h for x, y, w, h in rects)
    labels = [(lb.x - lb.w / 2, lb.y - lb.h / 2, lb.w, lb.h) for _, lb in lay.drawn.values()]
    for i, r in enumerate(labels):
        assert all(apart(r, box) for box in rects)
        assert all(apart(r, s) for s in labels[i + 1 :])


def test_hls_layers_follow_the_longest_forward_path() -> None:
    root = parse(diagram(LIFECYCLES["hls"], {}))
    x = {s: r[0] for s, r in boxes(root).items()}
    order = ["idle", "starting", "started", "playable", "stopping"]
    assert order == sorted(order, key=x.__getitem__)
    assert x["stopped"] == x["failed"] > x["stopping"]  # after the started -> stopping shortcut
    restart = [p for p in edges(root) if p.attrib["data-edge"] == "stopped->starting"]
    assert ["edge restart"] == [p.attrib["class"] for p in restart]


def test_layers_fall_back_to_bfs_depth_on_a_cycle() -> None:
    dag = [("idle", "a"), ("a", "b"), ("idle", "b")]
    assert {"idle": 0, "a": 1, "b": 2} == _layers(("idle", "a", "b"), dag)
    cycle = [("idle", "a"), ("a", "b"), ("b", "a"), ("idle", "b")]
    assert {"idle": 0, "a": 1, "b": 1} == _layers(("idle", "a", "b"), cycle)


def test_counts_title_and_description_are_accessible() -> None:
    lc = LIFECYCLES["recording"]
    root = parse(diagram(lc, {"started": 3, "stopped": 1}))
    assert "img" == root.attrib["role"]
    title = root.find(f"{SVG}title")
    desc = root.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert title.attrib["id"] == root.attrib["aria-labelledby"]
    assert desc.attrib["id"] == root.attrib["aria-describedby"]
    assert "recording state diagram" == title.text
    assert (
        "starting: 0 resources; started: 3 resources; stopping: 0 resources; "
        "stopped: 1 resource; failed: 0 resources"
    ) == desc.text
    texts = {
        g.attrib["data-state"]: [t.text for t in g.iter(f"{SVG}text")] for g in root.iter(f"{SVG}g")
    }
    assert ["started", "3 now"] == texts["started"]
    assert [IDLE] == texts[IDLE]


def test_colours_are_left_to_the_css() -> None:
    root = parse(diagram(LIFECYCLES["hls"], {"started": 2}))
    for el in root.iter():
        assert not {"style", "stroke", "color"} & set(el.attrib)
        assert el.attrib.get("fill", "none") == "none"
    assert "hsl" not in ET.tostring(root, encoding="unicode")


def test_the_svg_passes_through_jinja_unescaped() -> None:
    svg = diagram(LIFECYCLES["session"], {})
    assert isinstance(svg, markupsafe.Markup)
    env = jinja2.Environment(autoescape=True)
    assert str(svg) == env.from_string("{{ svg }}").render(svg=svg)


def test_text_is_escaped() -> None:
    assert "a&lt;&amp;&#34;b" == _esc('a<&"b')
    odd = "odd<&>\"'state"
    lc = fake((IDLE, odd, "done"), [(IDLE, odd), (odd, "done")], [("done", odd)])
    root = check(lc, {odd: 2})
    assert {IDLE, odd, "done"} == set(boxes(root))
    assert any(odd in (d.text or "") for d in root.iter(f"{SVG}desc"))


NAMES = st.text(alphabet="ab<&\"'-", min_size=1, max_size=12).filter(lambda s: s != IDLE)


@given(st.data())
def test_any_graph_is_drawn_well_formed_and_without_overlaps(data: st.DataObject) -> None:
    """Arbitrary states and edges (cycles, self-loops, edges back): still a valid drawing."""
    states = [IDLE, *data.draw(st.lists(NAMES, min_size=1, max_size=7, unique=True))]
    pairs = st.tuples(st.sampled_from(states), st.sampled_from(states[1:]))
    forward = data.draw(st.lists(pairs, max_size=12, unique=True))
    restart = data.draw(st.lists(pairs, max_size=3, unique=True))
    restart = [e for e in restart if e not in forward]
    counts = data.draw(st.dictionaries(st.sampled_from(states), st.integers(0, 10**9)))
    check(fake(states, forward, restart), counts)
