"""Node starters: what each kind of node does when its work begins, one method per
kind, found through the `NODE_STARTERS` table (keyed by node class)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from domain.definitions import (
    AgentNode,
    ChatNode,
    ExtractNode,
    HumanNode,
    JoinNode,
    LlmNode,
    MapNode,
    NodeBase,
    ParallelNode,
    RemoteNode,
    SetNode,
    SubworkflowNode,
    SwitchNode,
    ToolNode,
    WaitNode,
)
from domain.errors import ExpressionError
from domain.expressions import evaluate, evaluate_condition
from domain.llm import LlmRequest
from domain.runs.base import MAX_DEPTH, RunBase
from domain.templates import render, render_values
from domain.tools import argument_problems


class NodeStarters(RunBase):
    """How each kind of node begins its work once its entry actions have run."""

    def _start_model(
        self,
        node_id: str,
        node: LlmNode | AgentNode,
        attempt: int,
        *,
        now: datetime,
        request: LlmRequest | None = None,
    ) -> None:
        """An `llm` or `agent` node records its request (the node's own, or `request`: a
        repair's); a fork in `recorded` mode re-serves an `llm` node's recorded answer at
        once."""
        request = request or self._llm_request_for(node)
        self._node_started(node_id, node.kind, attempt, request.model_dump(mode="json"))
        recorded = self._recorded.get(request.fingerprint())
        if recorded is not None and isinstance(node, LlmNode):
            self._llm_call_replayed(node_id, attempt, recorded)
            self._take_answer(node_id, node, attempt, recorded["text"], now=now)

    def _start_switch(self, node_id: str, node: SwitchNode, attempt: int, *, now: datetime) -> None:
        chosen = self._choose_case(node)
        self._node_started(node_id, node.kind, attempt, {})
        self._complete_node(node_id, {"next": chosen}, {}, chosen, now=now)

    def _start_human(self, node_id: str, node: HumanNode, attempt: int, *, now: datetime) -> None:
        self._node_started(node_id, node.kind, attempt, {"task": self._task_for(node, now=now)})

    def _start_chat(self, node_id: str, node: ChatNode, attempt: int, *, now: datetime) -> None:
        chat = self._chat_for(node_id, node, attempt)
        self._node_started(node_id, node.kind, attempt, chat)

    def _start_tool(self, node_id: str, node: ToolNode, attempt: int, *, now: datetime) -> None:
        context = self.activation()
        arguments = render_values(node.arguments, context)
        started = {"tool": node.tool, "arguments": arguments}
        self._node_started(node_id, node.kind, attempt, started)
        definition = self.spec.tool(node.tool)
        problems = (
            argument_problems(definition, arguments)
            if definition
            else [f"unknown tool {node.tool!r}"]
        )
        if problems:
            self._fail_node(
                node_id,
                attempt,
                {
                    "class": "definition",
                    "message": f"tool {node.tool!r}: " + "; ".join(problems),
                },
                now=now,
            )

    def _start_subworkflow(
        self, node_id: str, node: SubworkflowNode, attempt: int, *, now: datetime
    ) -> None:
        run_id = str(self._child_id(node_id, attempt))
        started = {
            "workflow": node.workflow,
            "version": node.version,
            "input": render_values(node.input, self.activation()),
            "run_id": run_id,
        }
        self._node_started(node_id, node.kind, attempt, started)
        if self.depth + 1 > MAX_DEPTH:
            self.fail_subworkflow_start(run_id, self._too_deep(node.workflow), now=now)

    def _start_extract(
        self, node_id: str, node: ExtractNode, attempt: int, *, now: datetime
    ) -> None:
        context = self.activation()
        started = {
            "document": render(node.document, context),
            "instructions": render(node.instructions, context),
        }
        self._node_started(node_id, node.kind, attempt, started)

    def _start_remote(self, node_id: str, node: RemoteNode, attempt: int, *, now: datetime) -> None:
        context = self.activation()
        task = {
            "task_id": f"{self.id}:{node_id}:{attempt}",
            "capability": node.capability,
            "input": render_values(node.input, context),
        }
        self._node_started(node_id, node.kind, attempt, task)

    def _start_wait(self, node_id: str, node: WaitNode, attempt: int, *, now: datetime) -> None:
        if node.event:
            self._node_started(node_id, node.kind, attempt, {"event": node.event})
        else:
            at = self._wait_until(node, now=now)
            self._node_started(node_id, node.kind, attempt, {"until": at.isoformat()})
            self._set_timer(f"wait:{node_id}:{attempt}", "wait", 0, node_id, attempt, at, now=now)

    def _start_parallel(
        self, node_id: str, node: ParallelNode, attempt: int, *, now: datetime
    ) -> None:
        self._node_started(node_id, node.kind, attempt, {})
        self._complete_node(node_id, None, {}, None, now=now)

    def _start_join(self, node_id: str, node: JoinNode, attempt: int, *, now: datetime) -> None:
        outputs = [
            self.nodes[parent].get("output")
            for parent in self.spec.parents[node_id]
            if self.nodes[parent]["status"] == "completed"
        ]
        self._node_started(node_id, node.kind, attempt, {})
        self._complete_with_output(node_id, node, outputs, now=now)

    def _start_map(self, node_id: str, node: MapNode, attempt: int, *, now: datetime) -> None:
        items = evaluate(node.items, self.activation())
        if not isinstance(items, list):
            raise ExpressionError(
                f"items {node.items!r} gave {type(items).__name__}, expected a list"
            )
        if len(items) > node.max_items:
            raise ExpressionError(
                f"items {node.items!r} gave {len(items)} items, more than "
                f"max_items ({node.max_items})"
            )
        self._node_started(node_id, node.kind, attempt, {"items": items})
        self._continue_map(node_id, node, now=now)

    def _start_set(self, node_id: str, node: SetNode, attempt: int, *, now: datetime) -> None:
        context = self.activation()
        values = render_values(node.vars, context)
        self._node_started(node_id, node.kind, attempt, {})
        self._complete_node(node_id, values, values, None, now=now)

    def _choose_case(self, node: SwitchNode) -> str | None:
        context = self.activation()
        for case in node.cases:
            if evaluate_condition(case.when, context):
                return case.next
        return node.default


class Starter(Protocol):
    """Begins the work of a node of one kind: `(run, node_id, node, attempt, now=...)`."""

    def __call__(
        self, run: NodeStarters, node_id: str, node: Any, attempt: int, /, *, now: datetime
    ) -> None: ...


NODE_STARTERS: dict[type[NodeBase], Starter] = {
    LlmNode: NodeStarters._start_model,
    AgentNode: NodeStarters._start_model,
    SwitchNode: NodeStarters._start_switch,
    HumanNode: NodeStarters._start_human,
    ChatNode: NodeStarters._start_chat,
    ToolNode: NodeStarters._start_tool,
    SubworkflowNode: NodeStarters._start_subworkflow,
    ExtractNode: NodeStarters._start_extract,
    RemoteNode: NodeStarters._start_remote,
    WaitNode: NodeStarters._start_wait,
    ParallelNode: NodeStarters._start_parallel,
    JoinNode: NodeStarters._start_join,
    MapNode: NodeStarters._start_map,
    SetNode: NodeStarters._start_set,
}
"""One starter per node kind."""
