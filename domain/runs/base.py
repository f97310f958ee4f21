"""The state of a `WorkflowRun` that every mixin of its decisions reads: its attributes
(set only by its `@event` methods, in domain/runs/__init__.py), the read-only views of
it, and, for the type checker, the facts and decisions the mixins call on one another."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from domain.actions import Locator
from domain.definitions import (
    ChatNode,
    HumanNode,
    LlmNode,
    MapNode,
    ModelNode,
    ParallelNode,
    SwitchNode,
    WaitNode,
    WorkflowSpec,
)
from domain.definitions.edges import Edge
from domain.errors import NodeNotRunning
from domain.llm import LlmRequest, LlmResult, ToolCall

RunStatus = Literal["pending", "running", "paused", "waiting", "completed", "failed", "cancelled"]
NodeStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]
BUDGET_TASK = "budget"
"""The task id of a run's budget approval (node tasks are named by their node)."""
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
IO_NODE_KINDS = frozenset({"llm", "agent"})
TOOL_NODE = "tool"

MAX_DEPTH = 8
"""How deep subworkflows may nest: a workflow that calls itself ends here."""

_SPECS: OrderedDict[str, WorkflowSpec] = OrderedDict()


def _spec_of(content_hash: str, graph: dict[str, Any]) -> WorkflowSpec:
    """Parsed graphs are shared between runs of the same version."""
    spec = _SPECS.get(content_hash)
    if spec is None:
        spec = WorkflowSpec.model_validate(graph)
        _SPECS[content_hash] = spec
        if len(_SPECS) > 512:
            _SPECS.popitem(last=False)
    return spec


class RunBase:
    """What a run knows, and the views of it every concern needs. The mixins of
    `WorkflowRun` derive from it; only `WorkflowRun` records facts."""

    tenant: str
    workflow: str
    workflow_version: int
    content_hash: str
    graph: dict[str, Any]
    input: dict[str, Any]
    status: RunStatus
    variables: dict[str, Any]
    nodes: dict[str, dict[str, Any]]
    edges: dict[str, str]
    output: Any
    error: dict[str, Any] | None
    usage: dict[str, Any]
    forked_from: dict[str, Any] | None
    steps: int
    timers: dict[str, dict[str, Any]]
    tasks: dict[str, dict[str, Any]]
    waived: list[str]
    loops: dict[str, int]
    attempt_base: dict[str, int]
    llm_requests: dict[str, dict[str, Any]]
    blocked: dict[str, str]
    _recorded: dict[str, dict[str, Any]]
    parent: dict[str, Any] | None
    children: dict[str, dict[str, Any]]

    if TYPE_CHECKING:

        @property
        def id(self) -> UUID: ...

        version: int

        # Facts: recorded by `WorkflowRun`'s `@event` methods.

        def _action_variables_set(
            self, node_id: str, attempt: int, action: str, variables: dict[str, Any]
        ) -> None: ...

        def _agent_step_completed(
            self, node_id: str, attempt: int, step: int, result: dict[str, Any]
        ) -> None: ...

        def _artifact_saved(
            self,
            artifact_id: str,
            node_id: str,
            attempt: int,
            action: str,
            name: str,
            content_type: str,
            content: str,
            size: int,
            sha256: str,
        ) -> None: ...

        def _chat_reply_completed(
            self, node_id: str, attempt: int, reply_id: str, result: dict[str, Any]
        ) -> None: ...

        def _child_finished(self, child_run_id: str, status: str) -> None: ...

        def _child_run_requested(
            self,
            node_id: str,
            attempt: int,
            call_id: str,
            child_run_id: str,
            workflow: str,
            version: int | None,
            input: dict[str, Any],
        ) -> None: ...

        def _edge_decided(self, source: str, target: str, state: str, reason: str) -> None: ...

        def _extraction_completed(
            self, node_id: str, attempt: int, source: dict[str, Any], result: dict[str, Any]
        ) -> None: ...

        def _graph_edited(
            self,
            graph: dict[str, Any],
            content_hash: str,
            edits: list[dict[str, Any]],
            actor: str,
            reason: str,
        ) -> None: ...

        def _llm_call_completed(
            self, node_id: str, attempt: int, result: dict[str, Any]
        ) -> None: ...

        def _llm_call_failed(
            self,
            node_id: str,
            attempt: int,
            try_number: int,
            error: dict[str, Any],
            retry_in: float | None,
            item: int | None = None,
        ) -> None: ...

        def _llm_call_replayed(
            self, node_id: str, attempt: int, result: dict[str, Any]
        ) -> None: ...

        def _llm_request_completed(
            self, request_id: str, purpose: str, result: dict[str, Any]
        ) -> None: ...

        def _llm_request_failed(
            self, request_id: str, purpose: str, error: dict[str, Any]
        ) -> None: ...

        def _llm_request_replayed(
            self, request_id: str, purpose: str, result: dict[str, Any]
        ) -> None: ...

        def _llm_requested(
            self, request_id: str, purpose: str, request: dict[str, Any], context: dict[str, Any]
        ) -> None: ...

        def _loop_iterated(
            self, source: str, target: str, iteration: int, nodes: list[str], inner_loops: list[str]
        ) -> None: ...

        def _map_item_completed(
            self, node_id: str, attempt: int, index: int, result: dict[str, Any]
        ) -> None: ...

        def _map_item_started(
            self, node_id: str, attempt: int, index: int, input: dict[str, Any]
        ) -> None: ...

        def _node_completed(
            self, node_id: str, output: Any, variables: dict[str, Any], next: str | None
        ) -> None: ...

        def _node_entering(self, node_id: str, kind: str, attempt: int) -> None: ...

        def _node_failed(
            self, node_id: str, attempt: int, error: dict[str, Any], handled: bool = False
        ) -> None: ...

        def _node_retry_scheduled(
            self, node_id: str, attempt: int, error: dict[str, Any], delay: float
        ) -> None: ...

        def _node_skipped_by(self, node_id: str, actor: str, reason: str) -> None: ...

        def _node_started(
            self, node_id: str, kind: str, attempt: int, input: dict[str, Any]
        ) -> None: ...

        def _nodes_skipped(self, node_ids: list[str]) -> None: ...

        def _run_cancelled(self, actor: str, reason: str) -> None: ...

        def _run_completed(self, output: Any) -> None: ...

        def _run_failed(self, error: dict[str, Any]) -> None: ...

        def _run_paused(self, actor: str, reason: str, task: dict[str, Any] | None) -> None: ...

        def _run_resumed(self, actor: str) -> None: ...

        def _run_waiting(self, edges: list[str]) -> None: ...

        def _signal_received(
            self, name: str, data: dict[str, Any], actor: str, nodes: list[str]
        ) -> None: ...

        def _task_completed(self, task_id: str, actor: str, output: dict[str, Any]) -> None: ...

        def _task_reassigned(
            self, task_id: str, actor: str, changes: dict[str, Any], reason: str
        ) -> None: ...

        def _timer_fired(self, timer_id: str) -> None: ...

        def _timer_set(
            self,
            timer_id: str,
            purpose: str,
            fire_at: str,
            node_id: str | None,
            attempt: int | None,
        ) -> None: ...

        def _tool_call_completed(
            self,
            node_id: str,
            attempt: int,
            step: int,
            call_id: str,
            tool: str,
            arguments: dict[str, Any],
            outcome: str,
            content: str,
        ) -> None: ...

        def _tool_calls_requested(
            self, node_id: str, attempt: int, step: int, calls: list[dict[str, Any]]
        ) -> None: ...

        def _transition_blocked(
            self, source: str, target: str, validator: int, kind: str, reason: str
        ) -> None: ...

        def _variables_set(self, variables: dict[str, Any], actor: str, reason: str) -> None: ...

        # Decisions of the other mixins.

        def _budget_task_open(self) -> bool: ...

        def _chat_for(self, node_id: str, node: ChatNode, attempt: int) -> dict[str, Any]: ...

        def _child_id(self, node_id: str, attempt: int, call_id: str | None = None) -> UUID: ...

        def _complete_node(
            self,
            node_id: str,
            output: Any,
            variables: dict[str, Any],
            next: str | None,
            exit_actions: bool = True,
            *,
            now: datetime,
        ) -> None: ...

        def _complete_with_output(
            self, node_id: str, node: Any, output: Any, *, now: datetime
        ) -> None: ...

        def _take_answer(
            self, node_id: str, node: LlmNode, attempt: int, text: str, *, now: datetime
        ) -> None: ...

        def _continue_map(self, node_id: str, node: MapNode, *, now: datetime) -> None: ...

        def _decide_edges(self, source: str, *, now: datetime) -> None: ...

        def _enter_node(
            self, node_id: str, attempt: int, queue: list[Locator], *, now: datetime
        ) -> bool: ...

        def _exit_node(
            self,
            node_id: str,
            attempt: int,
            queue: list[Locator],
            completion: dict[str, Any],
            *,
            now: datetime,
        ) -> dict[str, Any] | None: ...

        def _fail_node(
            self, node_id: str, attempt: int, error: dict[str, Any], *, now: datetime
        ) -> None: ...

        def _llm_request_for(
            self, node: ModelNode, context: dict[str, Any] | None = None
        ) -> LlmRequest: ...

        def _only_triggers_left(self) -> bool: ...

        def _pause_for_budget(self, crossed: list[tuple[str, str]]) -> None: ...

        def _release_waiting_edges(self, *, now: datetime) -> None: ...

        def _request_children(self, node_id: str, attempt: int, calls: list[ToolCall]) -> None: ...

        def _request_llm(
            self,
            request_id: str,
            purpose: str,
            request: LlmRequest,
            context: dict[str, Any],
            *,
            now: datetime,
        ) -> None: ...

        def _scheduled_edge_due(
            self,
            timer_id: str,
            source: str | None,
            attempt: int | None,
            *,
            now: datetime,
        ) -> None: ...

        def _set_timer(
            self,
            timer_id: str,
            purpose: str,
            delay: float,
            node_id: str | None = None,
            attempt: int | None = None,
            at: datetime | None = None,
            *,
            now: datetime,
        ) -> None: ...

        def _skip_dead_nodes(self) -> None: ...

        def _start_node(self, node_id: str, entered: bool = False, *, now: datetime) -> None: ...

        def _task_for(self, node: HumanNode, *, now: datetime) -> dict[str, Any]: ...

        def _too_deep(self, workflow: str) -> str: ...

        def _tool_call_children(self, node_id: str) -> list[dict[str, Any]]: ...

        def _wait_until(self, node: WaitNode, *, now: datetime) -> datetime: ...

        def action_waiting(self, node_id: str) -> dict[str, Any] | None: ...

        def advance(self, *, now: datetime) -> None: ...

        def budget_crossed(self) -> list[tuple[str, str]]: ...

        def complete_agent_step(
            self, node_id: str, attempt: int, result: LlmResult, *, now: datetime
        ) -> list[ToolCall]: ...

        def complete_tool_call(
            self, node_id: str, attempt: int, call_id: str, ok: bool, content: str
        ) -> None: ...

        def edit_graph(
            self,
            edits: list[Any],
            actor: str,
            reason: str,
            *,
            now: datetime,
            allowed_hosts: frozenset[str],
        ) -> None: ...

        def fail_subworkflow_start(self, child_id: str, message: str, *, now: datetime) -> None: ...

    @property
    def spec(self) -> WorkflowSpec:
        return _spec_of(self.content_hash, self.graph)

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def depth(self) -> int:
        """How many parents this run has."""
        return int(self.parent["depth"]) if self.parent else 0

    def check_node_is_running(self, node_id: str, attempt: int, item: int | None = None) -> None:
        if self.is_finished:
            raise NodeNotRunning(f"run {self.id} is {self.status}: node {node_id!r} is over")
        state = self.nodes.get(node_id)
        if state is None or state["status"] != "running" or state["attempt"] != attempt:
            raise NodeNotRunning(
                f"node {node_id!r} attempt {attempt} is not running in run {self.id}"
            )
        if item is not None and self.item_state(node_id, item).get("status") != "running":
            raise NodeNotRunning(f"item {item} of node {node_id!r} is not running in run {self.id}")
        if self.action_waiting(node_id) is not None:
            raise NodeNotRunning(
                f"node {node_id!r} attempt {attempt} waits for its actions in run {self.id}: "
                "its work is not running"
            )

    def item_state(self, node_id: str, item: int) -> dict[str, Any]:
        """One item of a map node: pending (empty), running (with its request) or completed."""
        return self.nodes[node_id].get("item_states", {}).get(str(item), {})  # type: ignore[no-any-return]

    def llm_request(self, node_id: str) -> LlmRequest:
        """The request recorded when the node started: what the worker must send."""
        return LlmRequest.model_validate(self.nodes[node_id]["input"])

    def activation(self) -> dict[str, Any]:
        """What expressions and templates can see."""
        return {
            "input": self.input,
            "vars": self.variables,
            "nodes": {
                node_id: {
                    "status": state["status"],
                    "output": state.get("output"),
                    "error": state.get("error"),
                }
                for node_id, state in self.nodes.items()
            },
            "run": {
                "id": str(self.id),
                "workflow": self.workflow,
                "version": self.workflow_version,
            },
        }

    def _listed_edges(self, node_id: str) -> list[Edge]:
        node = self.spec.nodes[node_id]
        if isinstance(node, (SwitchNode, ParallelNode)) or not isinstance(node.next, list):
            return []
        return list(node.next)
