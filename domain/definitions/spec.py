"""The workflow specification: a definition document as written in YAML or JSON."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.definitions.edges import forward_targets
from domain.definitions.nodes import NAME_PATTERN, NODE_ID, Node
from domain.durations import DURATION
from domain.http_tools import HttpTool
from domain.llm import ToolDefinition
from domain.tools import TOOLS


class Budget(BaseModel):
    """Limits per run; crossing one pauses the run and asks for an approval to go on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_steps: int | None = Field(default=None, gt=0, description="nodes started")
    approver_role: str | None = Field(default=None, max_length=100)


class WorkflowSpec(BaseModel):
    """A workflow definition as written in YAML or JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    inputs: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    start: str
    nodes: dict[str, Node] = Field(min_length=1)
    output: str | None = Field(default=None, description="CEL expression for the run's output")
    budget: Budget | None = None
    deadline: str | None = Field(
        default=None, pattern=DURATION, description="a run not finished by then fails"
    )
    tools: dict[str, HttpTool] = Field(
        default_factory=dict, description="HTTP tools for this workflow's tool and agent nodes"
    )

    def tool(self, name: str) -> ToolDefinition | None:
        """A tool nodes may use: one this definition declares, or a registered one."""
        declared = self.tools.get(name)
        return declared.definition(name) if declared else TOOLS.get(name)

    def known_tools(self) -> str:
        return ", ".join(sorted({*TOOLS.names(), *self.tools}))

    @field_validator("nodes")
    @classmethod
    def _node_ids_are_names(cls, nodes: dict[str, Node]) -> dict[str, Node]:
        for node_id in nodes:
            if not NODE_ID.match(node_id):
                raise ValueError(f"node id {node_id!r} must match {NODE_ID.pattern}")
        return nodes

    @cached_property
    def parents(self) -> dict[str, list[str]]:
        """For each node, the nodes with an edge into it, in definition order (loop edges
        do not count: a node waits for its parents, never for a later node)."""
        parents: dict[str, list[str]] = {node_id: [] for node_id in self.nodes}
        for node_id, node in self.nodes.items():
            for target in forward_targets(node):
                if target in parents:
                    parents[target].append(node_id)
        return parents

    def canonical(self) -> dict[str, Any]:
        """The JSON form that the content hash is computed from."""
        return self.model_dump(mode="json", exclude_defaults=True, by_alias=True)

    def content_hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
