"""Workflow definitions: the document people write, its validation, and its aggregate.

A definition is a graph of named nodes. `next` and switch `cases` are its edges. A
published version is immutable and identified by the hash of its canonical content.
The rooms: `nodes.py` (one model per node kind), `edges.py` (the edge model), `spec.py`
(the whole document), `graph.py` (walks over the graph), `problems.py` (every check),
`parsing.py` (`parse_definition`); `WorkflowDefinition` stays here, where its events were
first stored (topic `domain.definitions:WorkflowDefinition`).
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.definitions.nodes import (
    CREDENTIAL_ID,
    ERROR_CLASSES,
    NAME_PATTERN,
    NODE_ID,
    NODE_KINDS,
    AgentNode,
    ChatNode,
    ExtractNode,
    HumanNode,
    JoinNode,
    LlmNode,
    MapNode,
    ModelNode,
    Node,
    NodeBase,
    ParallelNode,
    RemoteNode,
    SetNode,
    SubworkflowNode,
    SwitchNode,
    ToolNode,
    WaitNode,
)
from domain.definitions.parsing import parse_definition
from domain.definitions.problems import input_problems
from domain.definitions.spec import WorkflowSpec
from domain.errors import DefinitionInvalid, Problem

HEDDLE_NAMESPACE = uuid5(NAMESPACE_URL, "https://heddle.dev/ids")


def definition_id(tenant: str, name: str) -> UUID:
    """The aggregate id of a tenant's workflow, stable across versions."""
    return uuid5(HEDDLE_NAMESPACE, f"workflow/{tenant}/{name}")


class WorkflowDefinition(Aggregate):
    """A named workflow of one tenant and its immutable published versions."""

    @staticmethod
    def create_id(tenant: str, name: str) -> UUID:
        return definition_id(tenant, name)

    @event("Created")
    def __init__(self, tenant: str, name: str) -> None:
        self.tenant = tenant
        self.name = name
        self.versions: list[dict[str, Any]] = []

    def publish(self, spec: WorkflowSpec, actor: str) -> int:
        """Publish `spec` as a new version, or return the latest if it is unchanged."""
        if spec.name != self.name:
            raise DefinitionInvalid([Problem("name", f"must be {self.name!r} to publish here")])
        content_hash = spec.content_hash()
        if self.versions and self.versions[-1]["content_hash"] == content_hash:
            return int(self.versions[-1]["version"])
        self._version_published(
            self.tenant, len(self.versions) + 1, content_hash, spec.canonical(), actor
        )
        return len(self.versions)

    @event("VersionPublished")
    def _version_published(
        self, tenant: str, number: int, content_hash: str, spec: dict[str, Any], actor: str
    ) -> None:
        self.versions.append(
            {"version": number, "content_hash": content_hash, "spec": spec, "actor": actor}
        )

    def get_version(self, number: int | None) -> dict[str, Any] | None:
        """A published version by number, or the latest when `number` is None."""
        if not self.versions:
            return None
        if number is None:
            return self.versions[-1]
        if 1 <= number <= len(self.versions):
            return self.versions[number - 1]
        return None


__all__ = [
    "CREDENTIAL_ID",
    "ERROR_CLASSES",
    "HEDDLE_NAMESPACE",
    "NAME_PATTERN",
    "NODE_ID",
    "NODE_KINDS",
    "AgentNode",
    "ChatNode",
    "ExtractNode",
    "HumanNode",
    "JoinNode",
    "LlmNode",
    "MapNode",
    "ModelNode",
    "Node",
    "NodeBase",
    "ParallelNode",
    "RemoteNode",
    "SetNode",
    "SubworkflowNode",
    "SwitchNode",
    "ToolNode",
    "WaitNode",
    "WorkflowDefinition",
    "WorkflowSpec",
    "definition_id",
    "input_problems",
    "parse_definition",
]
