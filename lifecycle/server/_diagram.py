"""A lifecycle's state diagram as inline SVG, laid out here with no external tool.

States stand in layers from left to right, by their longest forward path from idle.
An edge to the next layer is an S-curve between the two boxes' sides; every other edge
(skipping layers, going back, restarting) runs along a lane above or below all boxes.
Only classes and data attributes are emitted: the page's CSS does the colouring.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import markupsafe
from attrs import frozen

from .._lifecycles import IDLE, Lifecycle, _edge_labels

__all__ = ["diagram"]

BOX_H = 46.0
NAME_W = 8.0  # estimated width of a character of a state name (13px, bold)
COUNT_W = 6.5  # ... of a count (11px)
LABEL_W = 6.0  # ... of an edge label (10px)
LINE_H = 12.0  # height of an edge label line
WRAP = 20  # edge label lines longer than this break after a hyphen
GAP = 10.0  # between lanes, and between the boxes and the first lane
PAD = 12.0  # around the drawing

Edge = tuple[str, str]


@frozen
class _Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@frozen
class _Label:
    x: float  # centre
    y: float
    lines: tuple[str, ...]

    @property
    def h(self) -> float:
        return len(self.lines) * LINE_H

    @property
    def w(self) -> float:
        return max((len(s) for s in self.lines), default=0) * LABEL_W


def _esc(value: object) -> str:
    """``value`` as text safe in XML content and quoted attributes."""
    return str(markupsafe.escape(value))


def _num(v: float) -> str:
    return f"{round(v, 1):g}"


def _layers(states: Sequence[str], forward: Iterable[Edge]) -> dict[str, int]:
    """Each state's longest forward path from the first state, or its BFS depth if the
    forward edges have a cycle."""
    succ: dict[str, list[str]] = {s: [] for s in states}
    indegree = dict.fromkeys(states, 0)
    for a, b in forward:
        succ[a].append(b)
        indegree[b] += 1
    order = [s for s in states if indegree[s] == 0]
    for s in order:  # Kahn's topological sort: `order` grows as the loop runs
        for t in succ[s]:
            indegree[t] -= 1
            if indegree[t] == 0:
                order.append(t)
    depth = dict.fromkeys(states, 0)
    if len(order) == len(states):
        for s in order:
            for t in succ[s]:
                depth[t] = max(depth[t], depth[s] + 1)
        return depth
    seen, queue = {states[0]}, deque(states[:1])
    while queue:
        s = queue.popleft()
        for t in succ[s]:
            if t not in seen:
                seen.add(t)
                depth[t] = depth[s] + 1
                queue.append(t)
    return depth


def _wrap(types: Iterable[str]) -> tuple[str, ...]:
    """One line per webhook type, long ones broken after hyphens."""
    lines: list[str] = []
    for w in types:
        line = ""
        for part in w.replace("-", "-\0").split("\0"):
            if line and len(line) + len(part) > WRAP:
                lines.append(line)
                line = ""
            line += part
        lines.append(line)
    return tuple(lines)


def _spread(n: int, room: float) -> list[float]:
    """Offsets from the middle for ``n`` ports along ``room``."""
    step = min(12.0, room / max(n, 1))
    return [(i - (n - 1) / 2) * step for i in range(n)]


def _overlap(i: tuple[float, float], j: tuple[float, float]) -> bool:
    return i[0] < j[1] and j[0] < i[1]


def _lane_path(a: tuple[float, float], b: tuple[float, float], lane: float) -> str:
    """Out of ``a`` straight to the lane, along it, and into ``b``, corners rounded."""
    (ax, ay), (bx, by) = a, b
    r = min(10.0, abs(bx - ax) / 2, abs(lane - ay), abs(lane - by))
    dx = r if bx >= ax else -r
    ra, rb = (r if lane > ay else -r), (r if lane > by else -r)
    return (
        f"M{_num(ax)},{_num(ay)} V{_num(lane - ra)} Q{_num(ax)},{_num(lane)} "
        f"{_num(ax + dx)},{_num(lane)} H{_num(bx - dx)} Q{_num(bx)},{_num(lane)} "
        f"{_num(bx)},{_num(lane - rb)} V{_num(by)}"
    )


class _Layout:
    """Where each state's box goes, then each edge's path and label."""

    def __init__(self, lifecycle: Lifecycle, counts: Mapping[str, int]) -> None:
        d = lifecycle.definition
        self.labels = {e: _wrap(types) for e, types in _edge_labels(d).items()}
        self.layer = _layers(d.states, d.forward)
        self.columns: dict[int, list[str]] = {}
        for s in d.states:
            self.columns.setdefault(self.layer[s], []).append(s)
        direct = [e for e in self.labels if self.layer[e[1]] == self.layer[e[0]] + 1]
        self.boxes = self._boxes(d.states, counts, direct)
        self.port: dict[tuple[Edge, int], float] = {}  # (edge, end) -> x or y
        self.drawn: dict[Edge, tuple[str, _Label]] = {}
        self._direct(direct)
        self._lanes([e for e in self.labels if e not in direct])

    def _boxes(
        self, states: Sequence[str], counts: Mapping[str, int], direct: list[Edge]
    ) -> dict[str, _Box]:
        """Columns left to right, each centred; the gaps leave room for the labels."""
        w = max(
            [len(s) * NAME_W + 24 for s in states]
            + [len(f"{counts.get(s, 0)} now") * COUNT_W + 24 for s in states]
            + [80.0]
        )
        col_gap = max([len(line) * LABEL_W + 24 for e in direct for line in self.labels[e]] + [56])
        tallest = max([len(self.labels[e]) * LINE_H for e in direct] + [0.0])
        row = BOX_H + max(28.0, 2 * (tallest + 4) - BOX_H)  # fanned-out labels stay apart
        height = max(len(c) for c in self.columns.values()) * row
        return {
            s: _Box(i * (w + col_gap), (height - len(column) * row) / 2 + j * row, w, BOX_H)
            for i, column in self.columns.items()
            for j, s in enumerate(column)
        }

    def _direct(self, edges: list[Edge]) -> None:
        """Edges to the next layer: S-curves from a's right side to b's left side."""
        at: dict[tuple[str, int], list[Edge]] = {}
        for e in edges:
            for end in (0, 1):
                at.setdefault((e[end], end), []).append(e)
        for (s, end), es in at.items():
            height = {e: self.boxes[e[1 - end]].cy for e in es}  # of the other end
            es.sort(key=height.__getitem__)
            for e, off in zip(es, _spread(len(es), BOX_H - 12), strict=True):
                self.port[(e, end)] = self.boxes[s].cy + off
        for e in edges:
            a, b = self.boxes[e[0]], self.boxes[e[1]]
            x0, x1, y0, y1 = a.x + a.w, b.x, self.port[(e, 0)], self.port[(e, 1)]
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            path = f"M{_num(x0)},{_num(y0)} C{_num(mx)},{_num(y0)} {_num(mx)},{_num(y1)} "
            self.drawn[e] = (path + f"{_num(x1)},{_num(y1)}", _Label(mx, my, self.labels[e]))

    def _at_end(self, s: str, side: str) -> bool:
        column = self.columns[self.layer[s]]
        return s == (column[0] if side == "top" else column[-1])

    def _span(self, e: Edge) -> tuple[float, float]:
        lo, hi = sorted((self.layer[e[0]], self.layer[e[1]]))
        return (lo - 0.3, hi + 0.3) if lo == hi else (lo, hi)  # a loop blocks its column

    def _lanes(self, edges: list[Edge]) -> None:
        """Every other edge: out of the top or bottom of a box (one with no box beyond
        it, where possible), along a lane outside all boxes and labels, and in."""
        sides: dict[Edge, str] = {}
        allowed = {
            e: [s for s in ("top", "bottom") if self._at_end(e[0], s) and self._at_end(e[1], s)]
            or ["top", "bottom"]
            for e in edges
        }
        for e in sorted(edges, key=lambda e: len(allowed[e])):  # the constrained ones first
            prefer = "bottom" if self.layer[e[1]] > self.layer[e[0]] else "top"
            crowd = {
                s: sum(sides.get(f) == s and _overlap(self._span(e), self._span(f)) for f in edges)
                for s in allowed[e]
            }
            sides[e] = min(allowed[e], key=lambda s: (crowd[s], s != prefer))
        lane: dict[Edge, int] = {}  # short spans nearest the boxes, so that lanes nest
        for e in sorted(edges, key=lambda e: (self._span(e)[1] - self._span(e)[0], self._span(e))):
            span = self._span(e)
            taken = {
                lane[f] for f in lane if sides[f] == sides[e] and _overlap(span, self._span(f))
            }
            lane[e] = min(set(range(len(taken) + 1)) - taken)

        # along a box's side: first the edges going left, inner lanes first, then those
        # going right, outer lanes first, so that no two lanes cross there
        at: dict[tuple[str, str], list[tuple[Edge, int]]] = {}
        for e in edges:
            for end in (0, 1):
                at.setdefault((e[end], sides[e]), []).append((e, end))
        for (s, _), items in at.items():
            x, order = self.boxes[s].cx, {}
            for e, end in items:
                other = self.boxes[e[1 - end]].cx
                going_left = other < x or (other == x and end == 1)
                order[(e, end)] = (0, lane[e]) if going_left else (1, -lane[e])
            items.sort(key=order.__getitem__)
            for (e, end), off in zip(items, _spread(len(items), self.boxes[s].w - 16), strict=True):
                self.port[(e, end)] = x + off

        placed = [label for _, label in self.drawn.values()]
        for side, sign in (("top", -1.0), ("bottom", 1.0)):
            rim = [b.y + (b.h if sign > 0 else 0) for b in self.boxes.values()]
            rim += [lb.y + sign * lb.h / 2 for lb in placed]
            y = max(rim) if sign > 0 else min(rim)
            mine = [e for e in edges if sides[e] == side]
            for depth in range(max([lane[e] + 1 for e in mine] + [0])):
                here = [e for e in mine if lane[e] == depth]
                tall = max([len(self.labels[e]) * LINE_H for e in here] + [LINE_H])
                y += sign * (GAP + tall / 2)
                for e in here:
                    a, b = self.boxes[e[0]], self.boxes[e[1]]
                    ya, yb = (a.y + a.h, b.y + b.h) if sign > 0 else (a.y, b.y)
                    xa, xb = self.port[(e, 0)], self.port[(e, 1)]
                    label = _Label((xa + xb) / 2, y, self.labels[e])
                    self.drawn[e] = (_lane_path((xa, ya), (xb, yb), y), label)
                y += sign * tall / 2


def _state(name: str, box: _Box, count: int, final: bool) -> str:
    """One state: a rounded box (two if final) with its name and, but for idle, count."""
    classes = [
        "state",
        f"s-{name}",
        *(["final"] if final else []),
        *(["initial"] if name == IDLE else []),
    ]
    x, y, w, h = map(_num, (box.x, box.y, box.w, box.h))
    parts = [
        f'<g class="{_esc(" ".join(classes))}" data-state="{_esc(name)}" data-count="{count}">',
        f'<rect class="box" x="{x}" y="{y}" width="{w}" height="{h}" rx="8"/>',
    ]
    if final:
        x, y, w, h = map(_num, (box.x + 3, box.y + 3, box.w - 6, box.h - 6))
        parts.append(f'<rect class="inner" x="{x}" y="{y}" width="{w}" height="{h}" rx="5"/>')
    cx, middle = _num(box.cx), 'text-anchor="middle"'
    name_y = box.cy + 4.5 if name == IDLE else box.y + 19
    parts.append(f'<text class="name" x="{cx}" y="{_num(name_y)}" {middle}>{_esc(name)}</text>')
    if name != IDLE:
        parts.append(
            f'<text class="count" x="{cx}" y="{_num(box.y + 36)}" {middle}>{count} now</text>'
        )
    return "".join([*parts, "</g>"])


def _edge_label(label: _Label, restart: bool) -> str:
    """The webhook types of an edge, one per line, centred on the edge's midpoint."""
    top = label.y - label.h / 2 + LINE_H - 3
    lines = "".join(
        f'<tspan x="{_num(label.x)}" y="{_num(top + i * LINE_H)}">{_esc(line)}</tspan>'
        for i, line in enumerate(label.lines)
    )
    classes = "edge-label restart" if restart else "edge-label"
    return f'<text class="{classes}" text-anchor="middle">{lines}</text>' if lines else ""


def diagram(lifecycle: Lifecycle, counts: Mapping[str, int]) -> markupsafe.Markup:
    """``lifecycle``'s state diagram as inline SVG, with ``counts`` resources per state."""
    d, lay = lifecycle.definition, _Layout(lifecycle, counts)
    i = _esc(f"lc-diagram-{lifecycle.name}")  # prefix of the ids, unique on a page
    n = {s: counts.get(s, 0) for s in d.states}
    desc = "; ".join(f"{s}: {n[s]} resource{'' if n[s] == 1 else 's'}" for s in d.states[1:])
    restart = set(d.restart)
    edges: list[str] = []
    labels: list[str] = []
    for e, (path, label) in lay.drawn.items():
        classes = "edge restart" if e in restart else "edge"
        edges.append(
            f'<path class="{classes}" data-edge="{_esc(f"{e[0]}->{e[1]}")}" d="{path}" '
            f'fill="none" marker-end="url(#{i}-arrow)"/>'
        )
        labels.append(_edge_label(label, e in restart))
    boxes = [_state(s, lay.boxes[s], n[s], s in lifecycle.final_states) for s in d.states]
    xs = [v for b in lay.boxes.values() for v in (b.x, b.x + b.w)]
    ys = [v for b in lay.boxes.values() for v in (b.y, b.y + b.h)]
    for _, lb in lay.drawn.values():
        xs += [lb.x - lb.w / 2, lb.x + lb.w / 2]
        ys += [lb.y - lb.h / 2, lb.y + lb.h / 2]
    x0, y0 = min(xs) - PAD, min(ys) - PAD
    view = " ".join(map(_num, (x0, y0, max(xs) + PAD - x0, max(ys) + PAD - y0)))
    return markupsafe.Markup(
        "".join(
            [
                f'<svg xmlns="http://www.w3.org/2000/svg" class="lifecycle-diagram" '
                f'viewBox="{view}" width="100%" role="img" aria-labelledby="{i}-title" '
                f'aria-describedby="{i}-desc">',
                f'<title id="{i}-title">{_esc(lifecycle.name)} state diagram</title>',
                f'<desc id="{i}-desc">{_esc(desc)}</desc>',
                f'<defs><marker id="{i}-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
                'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
                '<path class="arrowhead" d="M0,1 L10,5 L0,9 z"/></marker></defs>',
                *edges,
                *boxes,
                *labels,
                "</svg>",
            ]
        )
    )
