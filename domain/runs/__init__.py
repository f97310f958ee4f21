"""The WorkflowRun aggregate: one execution of a pinned workflow version.

Public methods decide (check the rules, work out what happens next); `@event` methods
record facts and only update state. The graph semantics: a node's outgoing edges are
`taken` or `skipped` when it completes; a node is ready when every incoming edge is
resolved and at least one was taken; a node whose incoming edges were all skipped is
skipped itself. The run completes when every node is completed or skipped.

The facts (`@event` methods and their nested event classes) are all here: stored event
topics are `domain.runs:WorkflowRun.<Event>` and must not change. The decisions live in
one mixin per concern: scheduling.py and starters.py (moving the run on, one starter per
node kind), edges.py, people.py, agents.py, actions.py, timers.py, workers.py (tool and
remote nodes), children.py, chat.py, extraction.py, requests.py (run-level model calls)
and usage.py; base.py holds the state they share.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.definitions import SwitchNode
from domain.definitions.edges import edge_key
from domain.errors import DomainError
from domain.llm import Message, ToolCall
from domain.runs.actions import Actions
from domain.runs.agents import Agents
from domain.runs.base import (
    BUDGET_TASK,
    IO_NODE_KINDS,
    MAX_DEPTH,
    TERMINAL_STATUSES,
    TOOL_NODE,
    NodeStatus,
    RunStatus,
)
from domain.runs.chat import Chat
from domain.runs.children import Children
from domain.runs.edges import Edges
from domain.runs.extraction import Extraction
from domain.runs.people import People
from domain.runs.requests import LLM_REQUEST_PURPOSES, ModelRequests
from domain.runs.scheduling import Scheduling
from domain.runs.timers import Timers, aware, later, moment
from domain.runs.usage import Usage, add_usage, new_usage
from domain.runs.workers import Workers


class WorkflowRun(
    Scheduling,
    Edges,
    People,
    Agents,
    Actions,
    Timers,
    Workers,
    Children,
    Chat,
    Extraction,
    ModelRequests,
    Usage,
    Aggregate,
):
    """A run: its pinned graph, node states, variables, usage and outcome."""

    @staticmethod
    def create_id(run_id: UUID, **_: Any) -> UUID:
        return run_id

    @event("Started")
    def __init__(
        self,
        run_id: UUID,
        tenant: str,
        actor: str,
        workflow: str,
        version: int,
        content_hash: str,
        graph: dict[str, Any],
        input: dict[str, Any],
        command_id: str,
        fork: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        binding: dict[str, Any] | None = None,
    ) -> None:
        """`fork` makes the run a fork of another (see `handlers/forks.py`): it starts
        from that run's variables, edges and finished nodes at the fork point. `parent`
        makes it a child run: of a `subworkflow` node, or answering an agent's tool call
        (`{run_id, node_id, attempt, call_id?, workflow, depth}`). `binding`: whom the
        run is for and who works on it (`{customer_id?, assignee?, priority?}`)."""
        self.tenant = tenant
        self.workflow = workflow
        self.workflow_version = version
        self.content_hash = content_hash
        self.graph = graph
        self.input = input
        self.status: RunStatus = "running"
        self.variables: dict[str, Any] = {}
        self.nodes: dict[str, dict[str, Any]] = {
            node_id: {"status": "pending", "attempt": 0} for node_id in graph["nodes"]
        }
        self.edges: dict[str, str] = {}
        self.output: Any = None
        self.error: dict[str, Any] | None = None
        self.usage: dict[str, Any] = new_usage()
        self.forked_from: dict[str, Any] | None = None
        self.steps = 0
        self.timers: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.waived: list[str] = []
        self.loops: dict[str, int] = {}
        self.attempt_base: dict[str, int] = {}
        self.llm_requests: dict[str, dict[str, Any]] = {}
        self.blocked: dict[str, str] = {}
        self._recorded: dict[str, dict[str, Any]] = {}
        self.parent = parent
        self.binding = binding
        self.children: dict[str, dict[str, Any]] = {}
        if fork is not None:
            self.variables = dict(fork["variables"])
            self.nodes.update(fork["nodes"])
            self.edges = dict(fork["edges"])
            self.loops = dict(fork.get("loops", {}))
            self.forked_from = {
                key: fork[key] for key in ("run_id", "node", "version", "mode", "overrides")
            }
            self._recorded = fork.get("recorded", {})

    @event("NodeStarted")
    def _node_started(self, node_id: str, kind: str, attempt: int, input: dict[str, Any]) -> None:
        self.nodes[node_id] = {
            "status": "running",
            "attempt": attempt,
            "kind": kind,
            "input": input,
        }
        self.steps += 1
        if "task" in input and kind in ("human", "chat"):
            self.tasks[node_id] = {**input["task"], "status": "open", "node_id": node_id}
        if kind == "subworkflow":
            self.children[input["run_id"]] = {
                "node_id": node_id,
                "attempt": attempt,
                "workflow": input["workflow"],
                "version": input["version"],
                "input": input["input"],
                "status": "running",
            }

    @event("GraphEdited")
    def _graph_edited(
        self,
        graph: dict[str, Any],
        content_hash: str,
        edits: list[dict[str, Any]],
        actor: str,
        reason: str,
    ) -> None:
        self.graph = graph
        self.content_hash = content_hash
        self.nodes = {
            node_id: self.nodes.get(node_id, {"status": "pending", "attempt": 0})
            for node_id in graph["nodes"]
        }

    @event("TaskCompleted")
    def _task_completed(self, task_id: str, actor: str, output: dict[str, Any]) -> None:
        task = self.tasks[task_id]
        self.tasks[task_id] = {**task, "status": "completed", "by": actor}
        if task_id == BUDGET_TASK and output.get("decision") == "approve":
            self.waived = [*self.waived, *task["limits"]]

    @event("TaskReassigned")
    def _task_reassigned(
        self, task_id: str, actor: str, changes: dict[str, Any], reason: str
    ) -> None:
        self.tasks[task_id] = {**self.tasks[task_id], **changes}

    @event("Paused")
    def _run_paused(self, actor: str, reason: str, task: dict[str, Any] | None) -> None:
        self.status = "paused"
        if task is not None:
            self.tasks[BUDGET_TASK] = {**task, "status": "open", "node_id": None}

    @event("Resumed")
    def _run_resumed(self, actor: str) -> None:
        self.status = "running"

    @event("Cancelled")
    def _run_cancelled(self, actor: str, reason: str) -> None:
        self.status = "cancelled"
        self.error = {"class": "cancelled", "message": reason, "by": actor}
        for node_id, state in self.nodes.items():
            if state["status"] == "running":
                self.nodes[node_id] = {**state, "status": "cancelled"}
        self._close_tasks()

    @event("MapItemStarted")
    def _map_item_started(
        self, node_id: str, attempt: int, index: int, input: dict[str, Any]
    ) -> None:
        states = self.nodes[node_id].setdefault("item_states", {})
        states[str(index)] = {"status": "running", "input": input}

    @event("MapItemCompleted")
    def _map_item_completed(
        self, node_id: str, attempt: int, index: int, result: dict[str, Any]
    ) -> None:
        self.usage = add_usage(self.usage, result)
        self.nodes[node_id]["item_states"][str(index)] = {
            "status": "completed",
            "output": result["text"],
        }

    @event("ChildRunRequested")
    def _child_run_requested(
        self,
        node_id: str,
        attempt: int,
        call_id: str,
        child_run_id: str,
        workflow: str,
        version: int | None,
        input: dict[str, Any],
    ) -> None:
        """An agent called a workflow tool: its result comes from this child run."""
        self.children[child_run_id] = {
            "node_id": node_id,
            "attempt": attempt,
            "call_id": call_id,
            "workflow": workflow,
            "version": version,
            "input": input,
            "status": "running",
        }

    @event("ChildRunFinished")
    def _child_finished(self, child_run_id: str, status: str) -> None:
        self.children[child_run_id] = {**self.children[child_run_id], "status": status}

    @event("ExtractionCompleted")
    def _extraction_completed(
        self, node_id: str, attempt: int, source: dict[str, Any], result: dict[str, Any]
    ) -> None:
        """`source`: where the text came from (document id, pages, characters), never
        the text itself."""
        self.usage = add_usage(self.usage, result)

    @event("LlmCallReplayed")
    def _llm_call_replayed(self, node_id: str, attempt: int, result: dict[str, Any]) -> None:
        """A fork in `recorded` mode re-served a recorded answer: nothing was spent."""

    @event("LlmCallCompleted")
    def _llm_call_completed(self, node_id: str, attempt: int, result: dict[str, Any]) -> None:
        self.usage = add_usage(self.usage, result)

    @event("ChatReplyCompleted")
    def _chat_reply_completed(
        self, node_id: str, attempt: int, reply_id: str, result: dict[str, Any]
    ) -> None:
        """The answer itself is the thread's (`Thread.MessagePosted`); the cost is the run's."""
        self.usage = add_usage(self.usage, result)

    @event("AgentStepCompleted")
    def _agent_step_completed(
        self, node_id: str, attempt: int, step: int, result: dict[str, Any]
    ) -> None:
        self.usage = add_usage(self.usage, result)
        state = self.nodes[node_id]
        message = Message(
            role="assistant",
            content=result["text"],
            tool_calls=[ToolCall.model_validate(c) for c in result.get("tool_calls", [])],
        )
        state["messages"] = [*state.get("messages", []), message.model_dump(mode="json")]
        state["steps"] = step
        state["pending"] = []

    @event("ToolCallsRequested")
    def _tool_calls_requested(
        self, node_id: str, attempt: int, step: int, calls: list[dict[str, Any]]
    ) -> None:
        self.nodes[node_id]["pending"] = calls

    @event("ToolCallCompleted")
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
    ) -> None:
        state = self.nodes[node_id]
        message = Message(role="tool", content=content, tool_call_id=call_id)
        state["messages"] = [*state.get("messages", []), message.model_dump(mode="json")]
        state["pending"] = [c for c in state.get("pending", []) if c["id"] != call_id]
        if outcome == "rejected":
            state["repairs"] = state.get("repairs", 0) + 1

    @event("NodeCompleted")
    def _node_completed(
        self, node_id: str, output: Any, variables: dict[str, Any], next: str | None
    ) -> None:
        state = self.nodes[node_id]
        self.nodes[node_id] = {"status": "completed", "attempt": state["attempt"], "output": output}
        self.variables.update(variables)
        node = self.spec.nodes[node_id]
        taken: set[str | None] = (
            {next} if isinstance(node, SwitchNode) else set(node.next_targets())
        )
        # the edges of a `next` list are decided by the events that follow (EdgeDecided, ...)
        self._resolve_edges(node_id, taken, leave={e.to for e in self._listed_edges(node_id)})

    @event("ActionVariablesSet")
    def _action_variables_set(
        self, node_id: str, attempt: int, action: str, variables: dict[str, Any]
    ) -> None:
        """A `variable` action of a node (or an `llm` action's answer) set these variables."""
        self.variables.update(variables)

    @event("ArtifactSaved")
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
    ) -> None:
        """A `document` action saved an artifact (read at `GET /v1/artifacts/{id}`)."""

    @event("NodeEntering")
    def _node_entering(self, node_id: str, kind: str, attempt: int) -> None:
        """The node's entry actions wait for a model (`LlmRequested`); it runs meanwhile,
        and `NodeStarted` follows once its work begins."""
        self.nodes[node_id] = {"status": "running", "attempt": attempt, "kind": kind}
        self.nodes[node_id]["input"] = {}

    @event("NodesSkipped")
    def _nodes_skipped(self, node_ids: list[str]) -> None:
        for node_id in node_ids:
            self.nodes[node_id] = {"status": "skipped", "attempt": self.nodes[node_id]["attempt"]}
            self._resolve_edges(node_id, set())

    @event("LlmCallFailed")
    def _llm_call_failed(
        self,
        node_id: str,
        attempt: int,
        try_number: int,
        error: dict[str, Any],
        retry_in: float | None,
        item: int | None = None,
    ) -> None:
        self.nodes[node_id]["failures"] = self.nodes[node_id].get("failures", 0) + 1

    @event("NodeFailed")
    def _node_failed(
        self, node_id: str, attempt: int, error: dict[str, Any], handled: bool = False
    ) -> None:
        """`handled`: the node's `on_error` takes over, and the run goes on."""
        self.nodes[node_id] = {"status": "failed", "attempt": attempt, "error": error}
        if handled:
            self.nodes[node_id]["handled"] = True
            self._resolve_edges(node_id, {self.spec.nodes[node_id].on_error})

    @event("NodeRetryScheduled")
    def _node_retry_scheduled(
        self, node_id: str, attempt: int, error: dict[str, Any], delay: float
    ) -> None:
        self.nodes[node_id] = {
            "status": "retrying",
            "attempt": attempt,
            "error": error,
            "retry_in": delay,
        }
        self._clear_edges(node_id)  # a validation failure had decided them

    @event("TimerSet")
    def _timer_set(
        self, timer_id: str, purpose: str, fire_at: str, node_id: str | None, attempt: int | None
    ) -> None:
        self.timers[timer_id] = {
            "purpose": purpose,
            "fire_at": fire_at,
            "node_id": node_id,
            "attempt": attempt,
            "status": "pending",
        }

    @event("TimerFired")
    def _timer_fired(self, timer_id: str) -> None:
        self.timers[timer_id] = {**self.timers[timer_id], "status": "fired"}

    @event("SignalReceived")
    def _signal_received(
        self, name: str, data: dict[str, Any], actor: str, nodes: list[str]
    ) -> None:
        pass

    @event("StepSkipped")
    def _node_skipped_by(self, node_id: str, actor: str, reason: str) -> None:
        if self.tasks.get(node_id, {}).get("status") == "open":
            self.tasks[node_id] = {**self.tasks[node_id], "status": "skipped"}

    @event("Completed")
    def _run_completed(self, output: Any) -> None:
        self.status = "completed"
        self.output = output

    @event("Failed")
    def _run_failed(self, error: dict[str, Any]) -> None:
        self.status = "failed"
        self.error = error
        self._close_tasks()

    @event("EdgeDecided")
    def _edge_decided(self, source: str, target: str, state: str, reason: str) -> None:
        self._set_edge(edge_key(source, target), state)

    @event("TransitionBlocked")
    def _transition_blocked(
        self, source: str, target: str, validator: int, kind: str, reason: str
    ) -> None:
        self._set_edge(edge_key(source, target), "blocked")
        self.blocked[edge_key(source, target)] = reason

    @event("RunWaiting")
    def _run_waiting(self, edges: list[str]) -> None:
        self.status = "waiting"

    @event("LoopIterated")
    def _loop_iterated(
        self, source: str, target: str, iteration: int, nodes: list[str], inner_loops: list[str]
    ) -> None:
        """`nodes` run again: the loop body, and nodes after it that were skipped."""
        self.loops[edge_key(source, target)] = iteration
        for key in inner_loops:
            self.loops.pop(key, None)
        for node_id in nodes:
            attempt = self.nodes[node_id]["attempt"]
            self.nodes[node_id] = {"status": "pending", "attempt": attempt}
            self.attempt_base[node_id] = attempt
            self._clear_edges(node_id)

    @event("VariablesSet")
    def _variables_set(self, variables: dict[str, Any], actor: str, reason: str) -> None:
        self.variables.update(variables)

    @event("LlmRequested")
    def _llm_requested(
        self, request_id: str, purpose: str, request: dict[str, Any], context: dict[str, Any]
    ) -> None:
        self.llm_requests[request_id] = {
            "purpose": purpose,
            "request": request,
            "context": context,
            "status": "pending",
        }

    @event("LlmRequestCompleted")
    def _llm_request_completed(self, request_id: str, purpose: str, result: dict[str, Any]) -> None:
        self.usage = add_usage(self.usage, result)
        self.llm_requests[request_id] = {**self.llm_requests[request_id], "status": "completed"}

    @event("LlmRequestReplayed")
    def _llm_request_replayed(self, request_id: str, purpose: str, result: dict[str, Any]) -> None:
        """A fork in `recorded` mode re-served a recorded answer: nothing was spent."""
        self.llm_requests[request_id] = {**self.llm_requests[request_id], "status": "completed"}

    @event("LlmRequestFailed")
    def _llm_request_failed(self, request_id: str, purpose: str, error: dict[str, Any]) -> None:
        self.llm_requests[request_id] = {**self.llm_requests[request_id], "status": "failed"}

    def _close_tasks(self) -> None:
        for task_id, task in self.tasks.items():
            if task["status"] == "open":
                self.tasks[task_id] = {**task, "status": "cancelled"}

    def _resolve_edges(
        self, node_id: str, taken: set[str | None], leave: set[str] | frozenset[str] = frozenset()
    ) -> None:
        for target in self.spec.nodes[node_id].targets():
            if target not in leave:
                self.edges[f"{node_id}->{target}"] = "taken" if target in taken else "skipped"

    def _clear_edges(self, node_id: str) -> None:
        for target in self.spec.nodes[node_id].targets():
            self.edges.pop(edge_key(node_id, target), None)

    def _set_edge(self, key: str, state: str) -> None:
        self.edges[key] = state
        if self.status == "waiting" and state != "waiting":
            self.status = "running"  # an edge moved: the run goes on


__all__ = [
    "BUDGET_TASK",
    "IO_NODE_KINDS",
    "LLM_REQUEST_PURPOSES",
    "MAX_DEPTH",
    "TERMINAL_STATUSES",
    "TOOL_NODE",
    "DomainError",
    "NodeStatus",
    "RunStatus",
    "WorkflowRun",
    "add_usage",
    "aware",
    "later",
    "moment",
    "new_usage",
]
