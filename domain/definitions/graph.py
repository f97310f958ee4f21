"""Walks over a workflow's graph: what is reachable, what a loop runs again, cycles."""

from __future__ import annotations

from collections.abc import Iterable

from domain.definitions.edges import edge_key, forward_targets, loop_targets
from domain.definitions.spec import WorkflowSpec


def reachable(spec: WorkflowSpec, start: str) -> set[str]:
    """The nodes reachable from `start` through forward edges, `start` included."""
    seen = {start}
    stack = [start]
    while stack:
        for target in forward_targets(spec.nodes[stack.pop()]):
            if target in spec.nodes and target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def loop_body(spec: WorkflowSpec, source: str, target: str) -> list[str]:
    """The nodes a loop edge `source -> target` runs again: those on a forward path from
    `target` to `source`, both included, in graph order."""
    from_target = reachable(spec, target)
    return [n for n in spec.nodes if n in from_target and source in reachable(spec, n)]


def loops_within(spec: WorkflowSpec, body: Iterable[str]) -> list[str]:
    """The loop edges (as keys) whose source and target are both in `body`."""
    inside = set(body)
    return [
        edge_key(node_id, target)
        for node_id in inside
        for target in sorted(loop_targets(spec.nodes[node_id]))
        if target in inside
    ]


def find_cycle(spec: WorkflowSpec) -> list[str] | None:
    """A cycle of forward edges (its nodes, the first repeated at the end), if any."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node_id: str) -> list[str] | None:
        state[node_id] = 1
        stack.append(node_id)
        for target in forward_targets(spec.nodes[node_id]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node_id] = 2
        return None

    for node_id in spec.nodes:
        if node_id not in state:
            found = visit(node_id)
            if found:
                return found
    return None
