"""A run's graph laid out for the server-rendered SVG of its page: nodes in layers from
the start node (the longest forward path to each), edges between them, each coloured by
what the run did (a node's status, an edge taken or skipped, a loop edge drawn back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.definitions.edges import edge_key, forward_targets, loop_targets
from domain.definitions.spec import WorkflowSpec

WIDTH, HEIGHT = 150, 40
"""A node's box."""
GAP_X, GAP_Y = 30, 56
MARGIN = 16


@dataclass(frozen=True)
class Box:
    node_id: str
    kind: str
    status: str
    x: int
    y: int

    @property
    def label(self) -> str:
        return self.node_id if len(self.node_id) <= 18 else self.node_id[:17] + "…"


@dataclass(frozen=True)
class Line:
    path: str
    state: str
    """`taken`, `skipped`, `loop` or `open` (not decided yet)."""


@dataclass(frozen=True)
class Layout:
    boxes: list[Box]
    lines: list[Line]
    width: int
    height: int


def layers(spec: WorkflowSpec) -> dict[str, int]:
    """Each node's layer: the longest forward path from the start node to it (nodes the
    start does not reach go below the rest)."""
    depth = {spec.start: 0}
    order = [spec.start]
    for node_id in order:  # grows as nodes are reached; forward edges have no cycle
        for target in forward_targets(spec.nodes[node_id]):
            if target in spec.nodes and depth.get(target, -1) < depth[node_id] + 1:
                depth[target] = depth[node_id] + 1
                order.append(target)
    bottom = max(depth.values()) + 1
    return {node_id: depth.get(node_id, bottom) for node_id in spec.nodes}


def layout(spec: WorkflowSpec, nodes: dict[str, Any], edges: dict[str, str]) -> Layout:
    """Where each node and edge goes, with the statuses of `nodes` (the run's node
    states) and `edges` (its decided edges, `source->target`: taken or skipped)."""
    depth = layers(spec)
    rows: dict[int, list[str]] = {}
    for node_id in spec.nodes:
        rows.setdefault(depth[node_id], []).append(node_id)
    widest = max(len(row) for row in rows.values())
    width = 2 * MARGIN + widest * WIDTH + (widest - 1) * GAP_X
    boxes: dict[str, Box] = {}
    for level, row in rows.items():
        span = len(row) * WIDTH + (len(row) - 1) * GAP_X
        left = (width - span) // 2
        for index, node_id in enumerate(row):
            state = nodes.get(node_id, {})
            boxes[node_id] = Box(
                node_id,
                spec.nodes[node_id].kind,
                str(state.get("status", "pending")),
                left + index * (WIDTH + GAP_X),
                MARGIN + level * (HEIGHT + GAP_Y),
            )
    lines = []
    for node_id, node in spec.nodes.items():
        looping = loop_targets(node)
        for target in node.targets():
            if target not in boxes:
                continue
            state = "loop" if target in looping else edges.get(edge_key(node_id, target), "open")
            lines.append(Line(_path(boxes[node_id], boxes[target], target in looping), state))
    height = 2 * MARGIN + (max(rows) + 1) * HEIGHT + max(rows) * GAP_Y
    return Layout(list(boxes.values()), lines, width, height)


def _path(source: Box, target: Box, back: bool) -> str:
    """An SVG path from `source` to `target`: down into its top, or (a loop edge) from
    the source's side back up to the target's side."""
    if back:
        x1, y1 = source.x + WIDTH, source.y + HEIGHT // 2
        x2, y2 = target.x + WIDTH, target.y + HEIGHT // 2
        bulge = max(x1, x2) + GAP_X
        return f"M{x1},{y1} C{bulge},{y1} {bulge},{y2} {x2},{y2}"
    x1, y1 = source.x + WIDTH // 2, source.y + HEIGHT
    x2, y2 = target.x + WIDTH // 2, target.y
    middle = (y1 + y2) // 2
    return f"M{x1},{y1} C{x1},{middle} {x2},{middle} {x2},{y2}"
