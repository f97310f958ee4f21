"""Edits to a running run's graph, and the overrides a fork applies to its copy.

An edit list is applied to a copy of the run's graph in order; the result must be a valid
definition (`parse_definition`), and the run checks that it leaves every node that has
started as it was (see `WorkflowRun.edit_graph`). Either every edit applies or none.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.definitions import NODE_ID, WorkflowSpec, parse_definition
from domain.errors import DefinitionInvalid, Problem

EDGE_FIELDS = frozenset({"next", "cases", "default"})
"""A node's outgoing edges: they may change while it runs, since they are decided when it ends."""


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AddNode(_Edit):
    """Add a node; something must lead to it (another edit, or `insert_before`)."""

    op: Literal["add_node"]
    node: str = Field(pattern=NODE_ID.pattern)
    definition: dict[str, Any]


class InsertBefore(_Edit):
    """Add `new` between `node` and every node that hands over to it; `new` goes on to `node`."""

    op: Literal["insert_before"]
    node: str
    new: str = Field(pattern=NODE_ID.pattern)
    definition: dict[str, Any]


class UpdateNode(_Edit):
    """Replace fields of a node (`set`) and remove others (`unset`)."""

    op: Literal["update_node"]
    node: str
    set: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)


class RemoveNode(_Edit):
    """Remove a pending node; edges into it must be removed or redirected too."""

    op: Literal["remove_node"]
    node: str


class AddEdge(_Edit):
    """Make `from` hand over to `to` (its `next`; a node has one)."""

    op: Literal["add_edge"]
    source: str = Field(alias="from")
    target: str = Field(alias="to")


class RemoveEdge(_Edit):
    """Remove the edge `from` → `to` (a `next`, a switch case or default)."""

    op: Literal["remove_edge"]
    source: str = Field(alias="from")
    target: str = Field(alias="to")


Edit = Annotated[
    AddNode | InsertBefore | UpdateNode | RemoveNode | AddEdge | RemoveEdge,
    Field(discriminator="op"),
]


def apply_edits(graph: dict[str, Any], edits: list[Any]) -> dict[str, Any]:
    """The graph document after `edits`, not yet validated; raises DefinitionInvalid
    listing every edit that cannot apply, each at `edits[i]`."""
    result = copy.deepcopy(graph)
    nodes: dict[str, dict[str, Any]] = result["nodes"]
    problems: list[Problem] = []
    for index, edit in enumerate(edits):
        problem = _apply(nodes, edit)
        if problem:
            problems.append(Problem(f"edits[{index}]", problem))
    if problems:
        raise DefinitionInvalid(problems)
    return result


def _apply(nodes: dict[str, dict[str, Any]], edit: Any) -> str | None:
    """Apply one edit in place, or say why it cannot apply."""
    named = getattr(edit, "node", None) or getattr(edit, "source", None)
    if not isinstance(edit, AddNode) and named not in nodes:
        return f"no node {named!r} (nodes: {', '.join(nodes)})"
    if isinstance(edit, AddNode | InsertBefore):
        new = edit.node if isinstance(edit, AddNode) else edit.new
        if new in nodes:
            return f"node {new!r} exists already"
        nodes[new] = dict(edit.definition)
        if isinstance(edit, InsertBefore):
            for node in nodes.values():
                if node is not nodes[new]:
                    _retarget(node, edit.node, new)
            nodes[new]["next"] = edit.node
    elif isinstance(edit, UpdateNode):
        if "kind" in edit.set and edit.set["kind"] != nodes[edit.node].get("kind"):
            return "a node's kind cannot change: remove it and add a new one"
        nodes[edit.node].update(edit.set)
        for field in edit.unset:
            nodes[edit.node].pop(field, None)
    elif isinstance(edit, RemoveNode):
        del nodes[edit.node]
    elif isinstance(edit, AddEdge | RemoveEdge):
        return _edit_edge(nodes[edit.source], edit)
    return None


def _edit_edge(node: dict[str, Any], edit: AddEdge | RemoveEdge) -> str | None:
    if node.get("kind") == "switch":
        return "a switch's edges are its cases and default: change them with update_node"
    if isinstance(node.get("next"), list):
        return _edit_listed_edge(node["next"], edit)
    if isinstance(edit, AddEdge):
        if node.get("next") not in (None, edit.target):
            return (
                f"{edit.source!r} hands over to {node['next']!r} already and a node has one "
                "next: remove that edge first, or use insert_before"
            )
        node["next"] = edit.target
    elif node.get("next") != edit.target:
        return f"there is no edge {edit.source} -> {edit.target}"
    else:
        node.pop("next")
    return None


def _edit_listed_edge(edges: list[dict[str, Any]], edit: AddEdge | RemoveEdge) -> str | None:
    """Add an immediate edge to a `next` list, or remove one (with its trigger, validators
    or loop) from it."""
    targets = [edge.get("to") for edge in edges]
    if isinstance(edit, AddEdge):
        if edit.target not in targets:
            edges.append({"to": edit.target})
        return None
    if edit.target not in targets:
        return f"there is no edge {edit.source} -> {edit.target}"
    del edges[targets.index(edit.target)]
    return None


def _retarget(node: dict[str, Any], old: str, new: str) -> None:
    """Point every edge of `node` that goes to `old` at `new` instead (a loop edge keeps
    its target: it leads back, not on)."""
    if node.get("next") == old:
        node["next"] = new
    listed = node.get("next")
    for edge in listed if isinstance(listed, list) else []:
        if edge.get("to") == old and "loop" not in edge:
            edge["to"] = new
    if node.get("default") == old:
        node["default"] = new
    for case in node.get("cases", []):
        if case.get("next") == old:
            case["next"] = new


def with_overrides(
    graph: dict[str, Any], prompts: dict[str, str], models: dict[str, str]
) -> WorkflowSpec:
    """A fork's graph: the source's, with new prompts and models for some model nodes."""
    edits: list[Any] = []
    problems: list[Problem] = []
    for field, overrides in (("prompt", prompts), ("model", models)):
        for node_id, value in overrides.items():
            node = graph["nodes"].get(node_id)
            if node is None or "prompt" not in node:
                kind = "no node" if node is None else f"{node.get('kind')} node, not a model node:"
                problems.append(Problem(f"{field}s.{node_id}", f"{kind} {node_id!r}"))
            else:
                edits.append(UpdateNode(op="update_node", node=node_id, set={field: value}))
    if problems:
        raise DefinitionInvalid(problems)
    return parse_definition(apply_edits(graph, edits))
