"""The WorkflowRun aggregate: one execution of a pinned workflow version.

Public methods decide (check the rules, work out what happens next); `@event` methods
record facts and only update state. The graph semantics: a node's outgoing edges are
`taken` or `skipped` when it completes; a node is ready when every incoming edge is
resolved and at least one was taken; a node whose incoming edges were all skipped is
skipped itself. The run completes when every node is completed or skipped.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.actions import Locator, Performed, model_request, perform, phase_queue
from domain.definitions import (
    ERROR_CLASSES,
    HEDDLE_NAMESPACE,
    AgentNode,
    ChatNode,
    ExtractNode,
    HumanNode,
    JoinNode,
    LlmNode,
    MapNode,
    ParallelNode,
    RemoteNode,
    SetNode,
    SubworkflowNode,
    SwitchNode,
    ToolNode,
    WaitNode,
    WorkflowSpec,
    _ModelNode,
    parse_definition,
)
from domain.durations import DURATION, seconds
from domain.edges import (
    NOT_TAKEN,
    RESOLVED,
    Edge,
    edge_key,
    judge_request,
    loop_body,
    loops_within,
    reachable,
    verdict,
)
from domain.edits import EDGE_FIELDS, apply_edits
from domain.errors import (
    DefinitionInvalid,
    DomainError,
    ExpressionError,
    GraphEditRejected,
    LlmRequestNotPending,
    NodeNotRunning,
    Problem,
    RunNotActive,
    SignalIgnored,
    TaskInvalid,
    TemplateError,
)
from domain.expressions import evaluate, evaluate_condition
from domain.extraction import parse_fields
from domain.llm import LlmRequest, LlmResult, Message, ToolCall
from domain.schemas import schema_problems
from domain.templates import render, render_values
from domain.threads import chat_thread_id
from domain.tools import argument_problems

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


def moment(value: str, field: str) -> datetime:
    """A time given as ISO 8601 (`2026-11-24T09:00:00Z`) or as a duration from now (`2h`)."""
    if re.match(DURATION, value):
        return later(value)
    try:
        return aware(value)
    except ValueError:
        raise RunNotActive(
            f"{field}: {value!r} is neither an ISO 8601 time nor a duration such as 2h"
        ) from None


def later(duration: str | float) -> datetime:
    """Now plus a duration (`90s`, `2h`) or a number of seconds."""
    delay = seconds(duration) if isinstance(duration, str) else duration
    return datetime.now(UTC) + timedelta(seconds=delay)


def aware(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC. Raises ValueError for anything else."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def new_usage() -> dict[str, Any]:
    """A run's usage totals before any model call."""
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
        "cost_usd": 0.0,
        "llm_calls": 0,
        "cost_complete": True,
    }


def add_usage(usage: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Totals after one more model answer (a recorded `LlmResult`); `cost_complete` turns
    false for good once an answer's price was unknown."""
    tokens = result.get("usage", {})
    return {
        "input_tokens": usage.get("input_tokens", 0) + tokens.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0) + tokens.get("output_tokens", 0),
        "cached_tokens": usage.get("cached_tokens", 0) + tokens.get("cached_tokens", 0),
        "cost_usd": round(usage.get("cost_usd", 0.0) + result.get("cost_usd", 0.0), 8),
        "llm_calls": usage.get("llm_calls", 0) + 1,
        "cost_complete": usage.get("cost_complete", True) and result.get("priced", True),
    }


class WorkflowRun(Aggregate):
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
    ) -> None:
        """`fork` makes the run a fork of another (see `handlers/forks.py`): it starts
        from that run's variables, edges and finished nodes at the fork point. `parent`
        makes it a child run: of a `subworkflow` node, or answering an agent's tool call
        (`{run_id, node_id, attempt, call_id?, workflow, depth}`)."""
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

    @property
    def spec(self) -> WorkflowSpec:
        return _spec_of(self.content_hash, self.graph)

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    # Decisions

    def advance(self) -> None:
        """Start every ready node; run `switch` and `set` nodes inline; finish the run.
        A run over its budget pauses instead of starting a node. Edges waiting for a
        condition are checked again first; a run left with nothing but waiting edges waits."""
        if self.status not in ("running", "waiting"):
            return
        self._release_waiting_edges()
        if self.status != "running":
            return
        if self.spec.deadline and "deadline" not in self.timers:
            self._set_timer("deadline", "deadline", seconds(self.spec.deadline))
        progressed = True
        while progressed and self.status == "running":
            progressed = False
            for node_id in self.ready_nodes():
                if self.status != "running":
                    break
                crossed = self.budget_crossed()
                if crossed:
                    self._pause_for_budget(crossed)
                    return
                self._start_node(node_id)
                progressed = True
            if progressed:
                self._release_waiting_edges()  # nodes that ran at once may have set variables
        if self.status == "running" and all(
            n["status"] in ("completed", "skipped") or n.get("handled") for n in self.nodes.values()
        ):
            self._finish()
        elif self.status == "running" and self._only_triggers_left():
            self._run_waiting(sorted(k for k, state in self.edges.items() if state == "waiting"))

    def ready_nodes(self) -> list[str]:
        """Pending nodes whose incoming edges are all resolved, at least one taken."""
        ready = []
        for node_id, parents in self.spec.parents.items():
            if self.nodes[node_id]["status"] != "pending":
                continue
            if not parents:
                if node_id == self.spec.start:
                    ready.append(node_id)
                continue
            states = [self.edges.get(f"{parent}->{node_id}") for parent in parents]
            if all(state in RESOLVED for state in states) and "taken" in states:
                ready.append(node_id)
        return ready

    def complete_llm_call(
        self, node_id: str, attempt: int, result: LlmResult, item: int | None = None
    ) -> None:
        """Record a model's answer (for one `item` of a map node, when given), complete the
        node if that was its last call, and move the run on."""
        self.check_node_is_running(node_id, attempt, item)
        node = self.spec.nodes[node_id]
        if isinstance(node, MapNode):
            assert item is not None
            self._map_item_completed(node_id, attempt, item, result.model_dump(mode="json"))
            self._continue_map(node_id, node)
            self.advance()
            return
        if isinstance(node, AgentNode):
            self.complete_agent_step(node_id, attempt, result)
            return
        self._llm_call_completed(node_id, attempt, result.model_dump(mode="json"))
        assert isinstance(node, LlmNode)
        self._complete_with_output(node_id, node, result.text)
        self.advance()

    # People: tasks, pause, resume, cancel

    def complete_task(
        self,
        task_id: str,
        actor: str,
        decision: str | None,
        data: dict[str, Any] | None,
        comment: str,
    ) -> None:
        """Complete an open task: a human node's (`task_id` is the node) or the budget
        approval. An approval needs `decision` approve or reject; an input task needs
        `data` that matches its form."""
        task = self.tasks.get(task_id)
        if task is None or task["status"] != "open":
            opened = [t for t, v in self.tasks.items() if v["status"] == "open"]
            raise TaskInvalid(
                f"run {self.id} has no open task {task_id!r} (open: {', '.join(opened) or 'none'})"
            )
        if task["type"] == "approval":
            if decision not in ("approve", "reject"):
                raise TaskInvalid(f"task {task_id!r} is an approval: decide approve or reject")
            output: dict[str, Any] = {"decision": decision, "comment": comment, "by": actor}
        else:
            problems = schema_problems(task["form"], data if data is not None else {}, "input")
            if problems:
                raise TaskInvalid(
                    f"task {task_id!r}: the input does not match its form: " + "; ".join(problems)
                )
            output = dict(data or {})
        if task["type"] == "chat":
            raise TaskInvalid(
                f"task {task_id!r} is a chat: complete its thread {task['thread_id']} "
                "(CompleteThread)"
            )
        self._task_completed(task_id, actor, output)
        if task_id == BUDGET_TASK:
            if decision == "approve":
                self._run_resumed(actor)
                self.advance()
            else:
                self._run_cancelled(actor, f"budget not approved: {comment}".strip(": "))
            return
        node = self.spec.nodes[task_id]
        assert isinstance(node, HumanNode)
        self._complete_with_output(task_id, node, output)
        self.advance()

    def reassign_task(
        self,
        task_id: str,
        actor: str,
        assignee: str | None,
        role: str | None,
        priority: int | None,
        reason: str,
    ) -> None:
        """Give an open task to someone else, or raise its priority (escalate)."""
        task = self.tasks.get(task_id)
        if task is None or task["status"] != "open":
            raise TaskInvalid(f"run {self.id} has no open task {task_id!r}")
        changes = {
            key: value
            for key, value in (("assignee", assignee), ("role", role), ("priority", priority))
            if value is not None
        }
        if not changes:
            raise TaskInvalid("give an assignee, a role or a priority")
        self._task_reassigned(task_id, actor, changes, reason)

    def pause(self, actor: str, reason: str, until: str | None = None) -> None:
        """Start no new node until `resume` (or until `until`: a snooze); work in flight
        completes and is recorded."""
        if self.status not in ("running", "waiting"):
            raise RunNotActive(
                f"run {self.id} is {self.status}: only a running or waiting run can pause"
            )
        at = moment(until, "until") if until else None
        self._run_paused(actor, reason, None)
        if at is not None:
            self._set_timer(f"resume:{self.version}", "resume", 0, at=at)

    def resume(self, actor: str, at: str | None = None) -> None:
        """Go on now, or at `at` (a time or a duration from now: a scheduled resume)."""
        if self.status != "paused":
            raise RunNotActive(f"run {self.id} is {self.status}, not paused")
        if self._budget_task_open():
            raise RunNotActive(
                f"run {self.id} waits for its budget approval: complete task {BUDGET_TASK!r}"
            )
        if at:
            self._set_timer(f"resume:{self.version}", "resume", 0, at=moment(at, "at"))
            return
        self._run_resumed(actor)
        self.advance()

    def cancel(self, actor: str, reason: str) -> None:
        """End the run: running nodes and open tasks are cancelled; late results are ignored."""
        if self.is_finished:
            raise RunNotActive(f"run {self.id} is {self.status} already")
        self._run_cancelled(actor, reason)

    def budget_crossed(self) -> list[tuple[str, str]]:
        """The limits of the workflow's budget that this run has reached and no one waived,
        each with a line that says so."""
        budget = self.spec.budget
        if budget is None:
            return []
        used = {
            "max_tokens": self.usage["input_tokens"] + self.usage["output_tokens"],
            "max_cost_usd": self.usage["cost_usd"],
            "max_steps": self.steps,
        }
        return [
            (limit, f"{limit} {getattr(budget, limit)} (used {used[limit]})")
            for limit in ("max_tokens", "max_cost_usd", "max_steps")
            if getattr(budget, limit) is not None
            and used[limit] >= getattr(budget, limit)
            and limit not in self.waived
        ]

    def _pause_for_budget(self, crossed: list[tuple[str, str]]) -> None:
        budget = self.spec.budget
        assert budget is not None
        why = ", ".join(text for _, text in crossed)
        task = {
            "type": "approval",
            "title": f"Run {self.id} of {self.workflow} reached its budget: {why}. "
            "Approve to go on without this limit, reject to cancel the run.",
            "assignee": None,
            "role": budget.approver_role,
            "priority": 90,
            "due_at": None,
            "form": {"type": "object"},
            "value": None,
            "limits": [limit for limit, _ in crossed],
        }
        self._run_paused("heddle", f"budget: {why}", task)

    def edit_graph(self, edits: list[Any], actor: str, reason: str) -> None:
        """Change the graph of a running run: all `edits` or none. The new graph must be a
        valid definition, and every node that has started must stay as it was (a running
        node's outgoing edges excepted: they are decided when it ends). Nodes that became
        ready start at once; nodes left with no way in are skipped."""
        if self.status not in ("running", "waiting"):
            raise GraphEditRejected(
                f"run {self.id} is {self.status}: only a running or waiting run's graph can change"
            )
        graph = apply_edits(self.graph, edits)
        problems = self._edit_problems(graph)
        try:
            spec = parse_definition(graph)
        except DefinitionInvalid as invalid:
            problems += invalid.problems
        if problems:
            raise DefinitionInvalid(problems)
        summary = [edit.model_dump(mode="json", by_alias=True) for edit in edits]
        self._graph_edited(spec.canonical(), spec.content_hash(), summary, actor, reason)
        self._skip_dead_nodes()
        self.advance()

    def _edit_problems(self, graph: dict[str, Any]) -> list[Problem]:
        problems = []
        if graph.get("start") != self.spec.start:
            problems.append(Problem("start", "a running run's start node cannot change"))
        for node_id, state in self.nodes.items():
            status = state["status"]
            if status == "pending":
                continue
            old = self.graph["nodes"][node_id]
            new = graph["nodes"].get(node_id)
            if new is None:
                problems.append(
                    Problem(f"nodes.{node_id}", f"is {status}: only pending nodes can be removed")
                )
                continue
            changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
            if status == "running":
                changed -= EDGE_FIELDS
            if changed:
                what = ", ".join(sorted(changed))
                problems.append(
                    Problem(
                        f"nodes.{node_id}",
                        f"is {status}: its {what} cannot change"
                        + (
                            " (only its outgoing edges can, until it ends)"
                            if status == "running"
                            else ""
                        ),
                    )
                )
        return problems

    # The agent loop: the worker calls the model and the tools; the run decides.

    def complete_agent_step(self, node_id: str, attempt: int, result: LlmResult) -> list[ToolCall]:
        """Record one model turn of an agent node. A turn without tool calls is the answer;
        otherwise each call is checked (known tool, arguments valid against its schema)
        and the valid ones are returned for the worker to run. A rejected call goes back
        to the model as a tool error and counts as a repair."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, AgentNode)
        state = self.nodes[node_id]
        step = state.get("steps", 0) + 1
        self._agent_step_completed(node_id, attempt, step, result.model_dump(mode="json"))
        if not result.tool_calls:
            self._complete_with_output(node_id, node, result.text)
            self.advance()
            return []
        offered = {tool.name: tool for tool in self.llm_request(node_id).tools}
        valid: list[ToolCall] = []
        last_problem = ""
        for call in result.tool_calls:
            definition = offered.get(call.name)
            if definition is None:
                problems = [f"unknown tool {call.name!r}; the tools are: {', '.join(offered)}"]
            else:
                problems = argument_problems(definition, call.arguments)
            if problems:
                last_problem = f"{call.name}: " + "; ".join(problems)
                content = "error: invalid tool call: " + "; ".join(problems)
                self._tool_call_completed(
                    node_id, attempt, step, call.id, call.name, call.arguments, "rejected", content
                )
            else:
                valid.append(call)
        repairs = self.nodes[node_id].get("repairs", 0)
        if repairs > node.max_repairs:
            self._fail_node(
                node_id,
                attempt,
                {
                    "class": "agent",
                    "message": (
                        f"agent node {node_id!r} made {repairs} invalid tool calls, more than its "
                        f"max_repairs of {node.max_repairs}; the last: {last_problem}"
                    ),
                },
            )
            return []
        if step >= node.max_steps:
            self._fail_node(
                node_id,
                attempt,
                {
                    "class": "agent",
                    "message": (
                        f"agent node {node_id!r} used all {node.max_steps} of its max_steps and still "
                        "calls tools instead of answering: raise max_steps or narrow the prompt"
                    ),
                },
            )
            return []
        self._tool_calls_requested(node_id, attempt, step, [c.model_dump() for c in valid])
        self._request_children(node_id, attempt, valid)
        return self.pending_tool_calls(node_id)

    def complete_tool_call(
        self, node_id: str, attempt: int, call_id: str, ok: bool, content: str
    ) -> None:
        """Record what a tool the model called returned (or its error, for the model)."""
        self.check_node_is_running(node_id, attempt)
        pending = {c["id"]: c for c in self.nodes[node_id].get("pending", [])}
        call = pending.get(call_id)
        if call is None:
            raise NodeNotRunning(f"no tool call {call_id!r} is waiting in node {node_id!r}")
        step = self.nodes[node_id]["steps"]
        outcome = "ok" if ok else "error"
        self._tool_call_completed(
            node_id, attempt, step, call_id, call["name"], call["arguments"], outcome, content
        )

    def pending_tool_calls(self, node_id: str) -> list[ToolCall]:
        """Tool calls of an agent node waiting for the worker to run them (those of
        workflow tools wait for child runs instead)."""
        waiting = {child["call_id"] for child in self._tool_call_children(node_id)}
        return [
            ToolCall.model_validate(c)
            for c in self.nodes[node_id].get("pending", [])
            if c["id"] not in waiting
        ]

    def agent_request(self, node_id: str) -> LlmRequest:
        """The next model turn of an agent node: its first request and everything since."""
        first = self.llm_request(node_id)
        messages = [Message.model_validate(m) for m in self.nodes[node_id].get("messages", [])]
        return first.model_copy(update={"messages": [*first.messages, *messages]})

    def record_llm_failure(
        self,
        node_id: str,
        attempt: int,
        try_number: int,
        error: dict[str, Any],
        retry_in: float | None,
        item: int | None = None,
    ) -> None:
        """One try of a model call failed; `retry_in` is None when no retry follows."""
        self.check_node_is_running(node_id, attempt, item)
        self._llm_call_failed(node_id, attempt, try_number, error, retry_in, item)

    def fail_node(
        self, node_id: str, attempt: int, error: dict[str, Any], item: int | None = None
    ) -> None:
        """A node (or one item of a map node) failed for good: the run fails with the
        node's error."""
        self.check_node_is_running(node_id, attempt, item)
        if item is not None:
            error = {**error, "item": item, "message": f"item {item}: {error.get('message')}"}
        self._fail_node(node_id, attempt, error)

    def _fail_node(self, node_id: str, attempt: int, error: dict[str, Any]) -> None:
        """A node attempt failed: try again later if its `retry` covers the error's class,
        else hand over to its `on_error` node, else fail the run."""
        node = self.spec.nodes[node_id]
        retry = node.retries
        tries = attempt - self.attempt_base.get(node_id, 0)  # in this pass of a loop
        if retry is not None and tries < retry.attempts and error.get("class") in retry.errors:
            delay = retry.delay(tries)
            self._node_retry_scheduled(node_id, attempt, error, delay)
            self._set_timer(f"retry:{node_id}:{attempt}", "retry", delay, node_id, attempt)
            return
        if node.on_error:
            self._node_failed(node_id, attempt, error, True)
            self._skip_dead_nodes()
            self.advance()
            return
        self._node_failed(node_id, attempt, error)
        self._run_failed({"node": node_id, **error})

    # Entry and exit actions (what each action does: domain/actions.py)

    def _action_answered(
        self, context: dict[str, Any], result: LlmResult | None, error: dict[str, Any] | None
    ) -> None:
        """The model an `llm` action asked answered (its text goes to the action's `output`
        variable, and the node's remaining actions run) or could not be asked (the node
        fails with the call's error). A node that moved on meanwhile ignores the answer."""
        node_id, attempt, action = context["node_id"], context["attempt"], context["action"]
        state = self.nodes.get(node_id, {})
        if state.get("status") != "running" or state.get("attempt") != attempt:
            return
        if result is None:
            message = f"{action}: {(error or {}).get('message')}"
            self._fail_node(node_id, attempt, {**(error or {}), "message": message})
            return
        self._carry_on(context, result.text)

    def _carry_on(self, waited: dict[str, Any], text: str) -> None:
        """An `llm` action got its answer `text`: set its variable, run the node's remaining
        actions, then its work (after entry actions) or its completion (after exit ones)."""
        node_id, attempt, output = waited["node_id"], waited["attempt"], waited["output"]
        self._action_variables_set(node_id, attempt, waited["action"], {output: text})
        if waited["phase"] == "on_enter":
            if self._enter_node(node_id, attempt, waited["remaining"]):
                self._start_node(node_id, entered=True)
            return
        completion = waited["completion"]
        completion = {**completion, "variables": {**completion["variables"], output: text}}
        exited = self._exit_node(node_id, attempt, waited["remaining"], completion)
        if exited is not None:
            next = completion["next"]
            self._complete_node(node_id, completion["output"], exited, next, exit_actions=False)

    def action_waiting(self, node_id: str) -> dict[str, Any] | None:
        """The `llm` action a running node waits for, if any: its run-level request id,
        the action's path and the request."""
        attempt = self.nodes.get(node_id, {}).get("attempt")
        for request_id, pending in self.llm_requests.items():
            context = pending["context"]
            if (
                pending["purpose"] == "action"
                and pending["status"] == "pending"
                and (context["node_id"], context["attempt"]) == (node_id, attempt)
            ):
                return {"request_id": request_id, "action": context["action"], **pending}
        return None

    def _enter_node(self, node_id: str, attempt: int, queue: list[Locator]) -> bool:
        """Run entry actions from `queue`; True when the node's work may begin now."""
        done = perform(node_id, self.spec.nodes[node_id], queue, self.activation())
        return self._record_actions(node_id, attempt, "on_enter", done, None)

    def _exit_node(
        self, node_id: str, attempt: int, queue: list[Locator], completion: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Run exit actions from `queue`, seeing the node's `output` and the variables it
        sets (`completion`); the variables the node completes with (its own and those the
        actions set), or None while an action waits or after one failed."""
        context = self.activation()
        context["vars"] = {**context["vars"], **completion["variables"]}
        context["nodes"][node_id] = {**context["nodes"][node_id], "output": completion["output"]}
        context["output"] = completion["output"]
        done = perform(node_id, self.spec.nodes[node_id], queue, context)
        completion = {**completion, "variables": {**completion["variables"], **done.variables}}
        if not self._record_actions(node_id, attempt, "on_exit", done, completion):
            return None
        return completion["variables"]  # type: ignore[no-any-return]

    def _record_actions(
        self,
        node_id: str,
        attempt: int,
        phase: str,
        done: Performed,
        completion: dict[str, Any] | None,
    ) -> bool:
        """Record what actions did; True when none waits and none failed. A failed action
        fails the node (class `definition`); one waiting for a model keeps it running."""
        for effect in done.effects:
            if effect.kind == "variables":
                variables = effect.data["variables"]
                self._action_variables_set(node_id, attempt, effect.action, variables)
            else:
                artifact_id = uuid5(self.id, f"{node_id}:{attempt}:{effect.action}")
                digest = "sha256:" + hashlib.sha256(effect.data["content"].encode()).hexdigest()
                self._artifact_saved(
                    str(artifact_id), node_id, attempt, effect.action, sha256=digest, **effect.data
                )
        kind = self.spec.nodes[node_id].kind
        if done.failure is not None:
            if self.nodes[node_id]["status"] != "running":
                self._node_started(node_id, kind, attempt, {})
            self._fail_node(node_id, attempt, {"class": "definition", "message": done.failure})
            return False
        if done.waiting is not None:
            wait = done.waiting
            if self.nodes[node_id]["status"] != "running":
                self._node_entering(node_id, kind, attempt)
            context = {
                "node_id": node_id,
                "attempt": attempt,
                "phase": phase,
                "action": wait.action,
                "output": wait.output,
                "remaining": wait.remaining,
                "completion": completion,
            }
            request_id = f"action:{node_id}:{attempt}:{wait.action}"
            self._request_llm(request_id, "action", wait.request, copy.deepcopy(context))
            return False
        return True

    # Timers: set as events, fired by the timer role through `FireTimer` commands.

    def _set_timer(
        self,
        timer_id: str,
        purpose: str,
        delay: float,
        node_id: str | None = None,
        attempt: int | None = None,
        at: datetime | None = None,
    ) -> None:
        fire_at = at if at is not None else later(delay)
        self._timer_set(timer_id, purpose, fire_at.isoformat(), node_id, attempt)

    def fire_timer(self, timer_id: str) -> bool:
        """A timer is due: do what it was set for. False (and nothing changes) when it has
        fired already, or no longer matters (the run ended, the node moved on)."""
        timer = self.timers.get(timer_id)
        if timer is None or timer["status"] != "pending" or self.is_finished:
            return False
        self._timer_fired(timer_id)
        node_id, attempt, purpose = timer["node_id"], timer["attempt"], timer["purpose"]
        state = self.nodes.get(node_id, {}) if node_id else {}
        if purpose == "deadline":
            deadline = self.spec.deadline
            self._run_failed(
                {"class": "deadline", "message": f"the run passed its deadline of {deadline}"}
            )
        elif purpose == "resume" and self.status == "paused":
            if not self._budget_task_open():
                self._run_resumed("heddle")
                self.advance()
        elif purpose == "retry" and state.get("status") == "retrying":
            self._start_node(node_id)
            self.advance()
        elif purpose == "edge":
            self._scheduled_edge_due(timer_id, node_id, attempt)
        elif state.get("status") == "running" and state.get("attempt") == attempt:
            if purpose == "wait":
                node = self.spec.nodes[node_id]
                fired = {"fired_at": timer["fire_at"]}
                self._complete_with_output(node_id, node, fired)
                self.advance()
            elif purpose == "timeout":
                self._fail_node(
                    node_id,
                    attempt,
                    {
                        "class": "timeout",
                        "message": f"node {node_id!r} took longer than its timeout of "
                        f"{self.spec.nodes[node_id].timeout}",
                    },
                )
        return True

    def complete_tool_node(self, node_id: str, attempt: int, ok: bool, content: str) -> None:
        """Record what a `tool` node's tool returned (JSON output when it is JSON), or its
        error (class `task`)."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, ToolNode)
        if not ok:
            self._fail_node(node_id, attempt, {"class": "task", "message": content})
            return
        try:
            output: Any = json.loads(content)
        except ValueError:
            output = content
        self._complete_with_output(node_id, node, output)
        self.advance()

    def complete_remote(
        self,
        node_id: str,
        attempt: int,
        status: str,
        output: Any,
        error: dict[str, Any] | None,
        edits: list[Any],
        actor: str,
    ) -> None:
        """Record what a remote worker answered. `ok`: the output (after the graph edits it
        returned, if the node accepts edits); `task_error`: the work failed (class `task`);
        `infra_error`: the worker could not do it now (class `retryable`, retried)."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, RemoteNode)
        message = (error or {}).get("message") or "no message"
        if status == "task_error":
            self._fail_node(node_id, attempt, {"class": "task", "message": message})
            return
        if status == "infra_error":
            self._fail_node(node_id, attempt, {"class": "retryable", "message": message})
            return
        if edits and not node.accept_edits:
            self._fail_node(
                node_id,
                attempt,
                {
                    "class": "task",
                    "message": (
                        f"the worker returned graph edits, but node {node_id!r} does not accept them "
                        "(set accept_edits: true)"
                    ),
                },
            )
            return
        if edits:
            try:
                self.edit_graph(edits, actor, f"returned by the {node.capability} worker")
            except (DefinitionInvalid, GraphEditRejected) as invalid:
                self._fail_node(
                    node_id,
                    attempt,
                    {
                        "class": "task",
                        "message": f"the worker's graph edits were refused: {invalid}",
                    },
                )
                return
        self._complete_with_output(node_id, node, output)
        self.advance()

    # Subworkflows: a child run per `subworkflow` node attempt or agent call of a workflow
    # tool, started and reported by commands that handlers/subworkflows.py sends when it
    # sees this run's (and the child's) events.

    def _start_subworkflow(self, node_id: str, node: SubworkflowNode, attempt: int) -> None:
        started = {
            "workflow": node.workflow,
            "version": node.version,
            "input": render_values(node.input, self.activation()),
            "run_id": str(self._child_id(node_id, attempt)),
        }
        self._node_started(node_id, node.kind, attempt, started)
        if self.depth + 1 > MAX_DEPTH:
            self.fail_subworkflow_start(started["run_id"], self._too_deep(node.workflow))

    def _child_id(self, node_id: str, attempt: int, call_id: str | None = None) -> UUID:
        where = f"{node_id}/{attempt}" + (f"/{call_id}" if call_id else "")
        return uuid5(HEDDLE_NAMESPACE, f"child/{self.id}/{where}")

    def _too_deep(self, workflow: str) -> str:
        return (
            f"subworkflow {workflow!r} would nest {self.depth + 1} runs deep, more than "
            f"{MAX_DEPTH}: does a workflow call itself without an end?"
        )

    @property
    def depth(self) -> int:
        """How many parents this run has."""
        return int(self.parent["depth"]) if self.parent else 0

    def _running_child(self, child_id: str) -> dict[str, Any]:
        child = self.children.get(child_id)
        if child is None or child["status"] != "running":
            raise NodeNotRunning(f"run {self.id} waits for no child run {child_id}")
        self.check_node_is_running(child["node_id"], child["attempt"])
        return child

    def child_parent(self, child_id: str) -> dict[str, Any]:
        """What a child run that this run waits for starts with: its workflow, version
        and input, and the parent it records (`run_id`, `node_id`, `attempt`, `call_id`
        for an agent's tool call, `workflow`, `depth`)."""
        child = self._running_child(child_id)
        return {
            "workflow": child["workflow"],
            "version": child["version"],
            "input": child["input"],
            "parent": {
                "run_id": str(self.id),
                "node_id": child["node_id"],
                "attempt": child["attempt"],
                **({"call_id": child["call_id"]} if child.get("call_id") else {}),
                "workflow": self.workflow,
                "depth": self.depth + 1,
            },
        }

    def fail_subworkflow_start(self, child_id: str, message: str) -> None:
        """The child run could not start (no such workflow or version, input that does not
        match its inputs): a `subworkflow` node fails with class `definition`; an agent's
        tool call gets the reason as its result."""
        self.complete_subworkflow(
            child_id, "failed", None, {"class": "definition", "message": message, "start": True}
        )

    def complete_subworkflow(
        self, child_id: str, status: str, output: Any, error: dict[str, Any] | None
    ) -> None:
        """A child run ended. A `subworkflow` node completes with the child's output, or
        fails with the child's error class (`task` when the child was cancelled), so that
        the node's `retry` and `on_error` apply. An agent's tool call gets the output as
        JSON, or the error, as its result."""
        child = self._running_child(child_id)
        node_id, attempt, call_id = child["node_id"], child["attempt"], child.get("call_id")
        self._child_finished(child_id, status)
        error = error or {}
        if error.get("start"):
            message = error["message"]
        else:
            where = f" at node {error['node']!r}" if error.get("node") else ""
            why = error.get("message") or status
            message = f"child run {child_id} of {child['workflow']} {status}{where}: {why}"
        if call_id is not None:
            ok = status == "completed"
            content = json.dumps(output) if ok else f"error: {message}"
            self.complete_tool_call(node_id, attempt, call_id, ok, content)
        elif status == "completed":
            self._complete_with_output(node_id, self.spec.nodes[node_id], output)
            self.advance()
        else:
            failure = {
                "class": error.get("class") if error.get("class") in ERROR_CLASSES else "task",
                "message": message,
                "child_run_id": child_id,
            }
            self._fail_node(node_id, attempt, failure)

    def children_to_cancel(self) -> list[str]:
        """Child runs still running whose node attempt has ended (the run was cancelled or
        failed, the node timed out or was skipped): they should be cancelled."""
        return [
            child_id
            for child_id, child in self.children.items()
            if child["status"] == "running"
            and (
                self.is_finished
                or self.nodes.get(child["node_id"], {}).get("status") != "running"
                or self.nodes[child["node_id"]]["attempt"] != child["attempt"]
            )
        ]

    def waits_for_children(self, node_id: str) -> bool:
        """Whether an agent node waits for tool calls that child runs answer."""
        return any(child["status"] == "running" for child in self._tool_call_children(node_id))

    def _tool_call_children(self, node_id: str) -> list[dict[str, Any]]:
        """The child runs that answer tool calls of the agent node's current attempt."""
        attempt = self.nodes[node_id]["attempt"]
        return [
            child
            for child in self.children.values()
            if (child["node_id"], child["attempt"]) == (node_id, attempt) and child.get("call_id")
        ]

    def _request_children(self, node_id: str, attempt: int, calls: list[ToolCall]) -> None:
        """Start a child run for each call of a workflow tool among an agent's calls."""
        for call in calls:
            tool = self.spec.tools.get(call.name)
            if tool is None or tool.workflow is None:
                continue
            if self.depth + 1 > MAX_DEPTH:
                problem = self._too_deep(tool.workflow)
                self._tool_call_completed(
                    node_id,
                    attempt,
                    self.nodes[node_id]["steps"],
                    call.id,
                    call.name,
                    call.arguments,
                    "error",
                    f"error: {problem}",
                )
                continue
            self._child_run_requested(
                node_id,
                attempt,
                call.id,
                str(self._child_id(node_id, attempt, call.id)),
                tool.workflow,
                tool.version,
                call.arguments,
            )

    # Extraction: the worker reads the document and asks the model; the run checks.

    def complete_extraction(
        self, node_id: str, attempt: int, source: dict[str, Any], result: LlmResult
    ) -> None:
        """Record an `extract` node's model answer and where its text came from; the node
        completes with the fields that match its schema and those that do not, each with
        the reason. An answer that is not a JSON object fails the node (class `task`)."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, ExtractNode)
        self._extraction_completed(node_id, attempt, source, result.model_dump(mode="json"))
        try:
            fields, invalid = parse_fields(node.fields_schema, result.text)
        except ValueError as error:
            self._fail_node(node_id, attempt, {"class": "task", "message": str(error)})
            return
        output = {"fields": fields, "invalid": invalid, "source": source}
        self._complete_with_output(node_id, node, output)
        self.advance()

    def signal(self, name: str, data: dict[str, Any], actor: str) -> list[str]:
        """An outside event reached the run: every `wait` node whose `event` condition
        holds for it completes with the event. Returns those nodes; none is an error."""
        event_value = {"name": name, "data": data, "by": actor}
        matched = []
        for node_id, state in self.nodes.items():
            node = self.spec.nodes.get(node_id)
            if state["status"] != "running" or not isinstance(node, WaitNode) or not node.event:
                continue
            if self.action_waiting(node_id) is not None:
                continue  # its entry actions have not finished, or its exit ones run
            if evaluate_condition(node.event, {**self.activation(), "event": event_value}):
                matched.append(node_id)
        if not matched:
            waiting = [
                n
                for n, st in self.nodes.items()
                if st["status"] == "running" and isinstance(self.spec.nodes.get(n), WaitNode)
            ]
            raise SignalIgnored(
                f"no node of run {self.id} waits for this event (waiting: "
                f"{', '.join(waiting) or 'none'})"
            )
        self._signal_received(name, data, actor, matched)
        for node_id in matched:
            node = self.spec.nodes[node_id]
            assert isinstance(node, WaitNode)
            self._complete_with_output(node_id, node, event_value)
        self.advance()
        return matched

    def skip_node(self, node_id: str, actor: str, reason: str) -> None:
        """A person skips a step that is running, waiting or retrying: it completes with
        no output and the run goes on; its open task, if any, is cancelled."""
        state = self.nodes.get(node_id)
        if (
            self.status not in ("running", "paused")
            or state is None
            or state["status"] not in ("running", "retrying")
        ):
            current = [n for n, st in self.nodes.items() if st["status"] in ("running", "retrying")]
            raise RunNotActive(
                f"node {node_id!r} of run {self.id} is not running (running: "
                f"{', '.join(current) or 'none'})"
            )
        self._node_skipped_by(node_id, actor, reason)
        self._complete_node(node_id, None, {}, None, exit_actions=False)
        self.advance()

    def complete_chat(self, node_id: str, attempt: int, actor: str, output: Any) -> None:
        """A `chat` node's thread was completed: the node completes with its output."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, ChatNode)
        self._task_completed(node_id, actor, {"thread_id": output["thread_id"]})
        self._complete_with_output(node_id, node, output)
        self.advance()

    def record_chat_reply(
        self, node_id: str, attempt: int, reply_id: str, result: LlmResult
    ) -> None:
        """A model replied in the thread of a running `chat` node: the run pays for it."""
        self.check_node_is_running(node_id, attempt)
        self._chat_reply_completed(node_id, attempt, reply_id, result.model_dump(mode="json"))

    def _chat_for(self, node_id: str, node: ChatNode, attempt: int) -> dict[str, Any]:
        """What a started `chat` node hands its thread: the templates rendered over the run
        now, so the thread needs nothing else of the run."""
        context = self.activation()
        thread_id = str(chat_thread_id(self.id, node_id, attempt))
        title = render(node.title, context) if node.title else f"{self.workflow}: {node_id}"
        reply = None
        if node.model:
            reply = {
                "model": node.model,
                "system": render(node.system, context) if node.system else None,
                "temperature": node.temperature,
                "max_tokens": node.max_tokens,
                "options": node.options,
                "credential": node.credential,
                "stream": node.stream,
            }
        branches = {}
        for name, branch in node.branches.items():
            chosen = branch.model_dump(exclude_defaults=True)
            for field in ("reply", "prompt"):
                if field in chosen:
                    chosen[field] = render(chosen[field], context)
            branches[name] = {"label": branch.label or name, **chosen}
        return {
            "thread_id": thread_id,
            "title": title,
            "reply": reply,
            "branches": branches,
            "greeting": render(node.greeting, context) if node.greeting else None,
            "task": {
                "type": "chat",
                "title": title,
                "instructions": "",
                "assignee": render(node.assignee, context) if node.assignee else None,
                "role": node.role,
                "priority": node.priority,
                "due_at": None,
                "form": {"type": "object"},
                "value": None,
                "thread_id": thread_id,
            },
        }

    def _budget_task_open(self) -> bool:
        return self.tasks.get(BUDGET_TASK, {}).get("status") == "open"

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

    def _start_node(self, node_id: str, entered: bool = False) -> None:
        """Start a node: its entry actions, then its work (`entered`: the entry actions
        have run, the work is next)."""
        node = self.spec.nodes[node_id]
        attempt = self.nodes[node_id]["attempt"] + (0 if entered else 1)
        entry = [] if entered else phase_queue(node, "on_enter")
        if entry and not self._enter_node(node_id, attempt, entry):
            return
        try:
            if isinstance(node, _ModelNode):
                request = self._llm_request_for(node)
                self._node_started(node_id, node.kind, attempt, request.model_dump(mode="json"))
                recorded = self._recorded.get(request.fingerprint())
                if recorded is not None and isinstance(node, LlmNode):
                    self._llm_call_replayed(node_id, attempt, recorded)
                    self._complete_with_output(node_id, node, recorded["text"])
            elif isinstance(node, SwitchNode):
                chosen = self._choose_case(node)
                self._node_started(node_id, node.kind, attempt, {})
                self._complete_node(node_id, {"next": chosen}, {}, chosen)
            elif isinstance(node, HumanNode):
                self._node_started(node_id, node.kind, attempt, {"task": self._task_for(node)})
            elif isinstance(node, ChatNode):
                chat = self._chat_for(node_id, node, attempt)
                self._node_started(node_id, node.kind, attempt, chat)
            elif isinstance(node, ToolNode):
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
                    )
            elif isinstance(node, SubworkflowNode):
                self._start_subworkflow(node_id, node, attempt)
            elif isinstance(node, ExtractNode):
                context = self.activation()
                started = {
                    "document": render(node.document, context),
                    "instructions": render(node.instructions, context),
                }
                self._node_started(node_id, node.kind, attempt, started)
            elif isinstance(node, RemoteNode):
                context = self.activation()
                task = {
                    "task_id": f"{self.id}:{node_id}:{attempt}",
                    "capability": node.capability,
                    "input": render_values(node.input, context),
                }
                self._node_started(node_id, node.kind, attempt, task)
            elif isinstance(node, WaitNode):
                if node.event:
                    self._node_started(node_id, node.kind, attempt, {"event": node.event})
                else:
                    at = self._wait_until(node)
                    self._node_started(node_id, node.kind, attempt, {"until": at.isoformat()})
                    self._set_timer(f"wait:{node_id}:{attempt}", "wait", 0, node_id, attempt, at)
            elif isinstance(node, ParallelNode):
                self._node_started(node_id, node.kind, attempt, {})
                self._complete_node(node_id, None, {}, None)
            elif isinstance(node, JoinNode):
                outputs = [
                    self.nodes[parent].get("output")
                    for parent in self.spec.parents[node_id]
                    if self.nodes[parent]["status"] == "completed"
                ]
                self._node_started(node_id, node.kind, attempt, {})
                self._complete_with_output(node_id, node, outputs)
            elif isinstance(node, MapNode):
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
                self._continue_map(node_id, node)
            elif isinstance(node, SetNode):
                context = self.activation()
                values = render_values(node.vars, context)
                self._node_started(node_id, node.kind, attempt, {})
                self._complete_node(node_id, values, values, None)
            state = self.nodes[node_id]
            if node.timeout and state["status"] == "running" and state["attempt"] == attempt:
                timeout = seconds(node.timeout)
                self._set_timer(
                    f"timeout:{node_id}:{attempt}", "timeout", timeout, node_id, attempt
                )
        except (ExpressionError, TemplateError) as error:
            failure = {"class": "definition", "message": str(error)}
            if self.nodes[node_id]["status"] != "running":
                self._node_started(node_id, node.kind, attempt, {})
            self._fail_node(node_id, attempt, failure)

    def _wait_until(self, node: WaitNode) -> datetime:
        if node.for_:
            return later(node.for_)
        assert node.until
        value = evaluate(node.until, self.activation())
        try:
            return aware(str(value))
        except ValueError:
            raise ExpressionError(
                f"until {node.until!r} gave {value!r}, not an ISO 8601 time"
            ) from None

    def _task_for(self, node: HumanNode) -> dict[str, Any]:
        context = self.activation()
        due_at = None
        if node.due_in:
            due_at = later(node.due_in).isoformat()
        return {
            "type": node.task,
            "title": render(node.title, context),
            "instructions": render(node.instructions, context) if node.instructions else "",
            "assignee": render(node.assignee, context) if node.assignee else None,
            "role": node.role,
            "priority": node.priority,
            "due_at": due_at,
            "form": node.form,
            "value": evaluate(node.value, context) if node.value else None,
        }

    def _continue_map(self, node_id: str, node: MapNode) -> None:
        """Start items while fewer than `concurrency` run; complete the node after the last."""
        state = self.nodes[node_id]
        items = state["input"]["items"]
        started = state.get("item_states", {})
        running = sum(1 for item in started.values() if item["status"] == "running")
        for index in range(len(started), len(items)):
            if running >= node.concurrency:
                return
            context = {**self.activation(), "item": items[index], "index": index}
            request = self._llm_request_for(node.do, context)
            self._map_item_started(
                node_id, state["attempt"], index, request.model_dump(mode="json")
            )
            running += 1
        if running == 0:
            results = [started[str(index)]["output"] for index in range(len(items))]
            self._complete_with_output(node_id, node, results)

    def _complete_node(
        self,
        node_id: str,
        output: Any,
        variables: dict[str, Any],
        next: str | None,
        exit_actions: bool = True,
    ) -> None:
        """The node's work is done: its exit actions run (unless a person skipped it), then
        it completes and its outgoing edges are resolved."""
        node = self.spec.nodes[node_id]
        if exit_actions and node.on_exit:
            completion = {"output": output, "variables": dict(variables), "next": next}
            attempt = self.nodes[node_id]["attempt"]
            exited = self._exit_node(node_id, attempt, phase_queue(node, "on_exit"), completion)
            if exited is None:
                return
            variables = exited
        self._node_completed(node_id, output, variables, next)
        self._decide_edges(node_id)
        self._skip_dead_nodes()

    def _complete_with_output(self, node_id: str, node: Any, output: Any) -> None:
        """Complete a node that hands `output` to its `output` variable, if it names one."""
        self._complete_node(node_id, output, {node.output: output} if node.output else {}, None)

    def _skip_dead_nodes(self) -> None:
        dead = self._dead_nodes()
        if dead:
            self._nodes_skipped(dead)

    def _llm_request_for(
        self, node: _ModelNode, context: dict[str, Any] | None = None
    ) -> LlmRequest:
        tools = [
            tool
            for name in (node.tools if isinstance(node, AgentNode) else [])
            if (tool := self.spec.tool(name)) is not None
        ]
        return model_request(node, context or self.activation(), tools)

    def _choose_case(self, node: SwitchNode) -> str | None:
        context = self.activation()
        for case in node.cases:
            if evaluate_condition(case.when, context):
                return case.next
        return node.default

    def _finish(self) -> None:
        output: Any = dict(self.variables)
        if self.spec.output:
            try:
                output = evaluate(self.spec.output, self.activation())
            except ExpressionError as error:
                self._run_failed({"class": "definition", "message": f"output: {error}"})
                return
        self._run_completed(output)

    # Facts

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

    def _dead_nodes(self) -> list[str]:
        """Pending nodes that can no longer run: every incoming edge was skipped."""
        edges = dict(self.edges)
        dead: list[str] = []
        changed = True
        while changed:
            changed = False
            for node_id, parents in self.spec.parents.items():
                if not parents or node_id in dead or self.nodes[node_id]["status"] != "pending":
                    continue
                if all(edges.get(f"{p}->{node_id}") in NOT_TAKEN for p in parents):
                    dead.append(node_id)
                    for target in self.spec.nodes[node_id].targets():
                        edges[f"{node_id}->{target}"] = "skipped"
                    changed = True
        return dead

    # Edges: `when`, triggers, validators and loops (the model: domain/edges.py).
    #
    # A `next` list's edges are decided when their source completes: loop edges first
    # (one taken runs the loop body again and leaves the other edges for the next pass),
    # then the others in order. An edge is `skipped` when its `when` is false, `waiting`
    # while its trigger has not fired, `validating` while a model judges it, `blocked`
    # when a validator fails (a blocked edge counts as skipped), else `taken`. When every
    # edge of a node is decided, none taken and one blocked, the node fails with class
    # `validation`, so that its `retry` and `on_error` apply.

    def set_variables(self, variables: dict[str, Any], actor: str, reason: str = "") -> None:
        """Set run variables from outside; edges waiting for a condition are checked again."""
        if self.is_finished:
            raise RunNotActive(f"run {self.id} is {self.status}: its variables cannot change")
        self._variables_set(variables, actor, reason)
        self.advance()

    def reopen_edges(self) -> None:
        """Decide again the edges a fork took over undecided (they waited for a trigger
        or a judge in the source run): set their timers anew, ask their judges again."""
        context = self.activation()
        for source, state in self.nodes.items():
            if state["status"] != "completed":
                continue
            undecided = [
                edge
                for edge in self._listed_edges(source)
                if not edge.loop and edge_key(source, edge.to) not in self.edges
            ]
            for edge in undecided:
                if not self._open_edge(source, edge, context):
                    break
            if undecided:
                self._check_source_stuck(source)

    def _listed_edges(self, node_id: str) -> list[Edge]:
        node = self.spec.nodes[node_id]
        if isinstance(node, (SwitchNode, ParallelNode)) or not isinstance(node.next, list):
            return []
        return list(node.next)

    def _edge(self, source: str, target: str) -> Edge | None:
        return next((e for e in self._listed_edges(source) if e.to == target), None)

    def _decide_edges(self, source: str) -> None:
        edges = self._listed_edges(source)
        if not edges:
            return
        context = self.activation()
        for edge in edges:
            if edge.loop and self._take_loop(source, edge, context):
                return
        for edge in edges:
            if not edge.loop and not self._open_edge(source, edge, context):
                return
        self._check_source_stuck(source)

    def _take_loop(self, source: str, edge: Edge, context: dict[str, Any]) -> bool:
        """Run the loop body again when the bound allows and `when` holds; True if so (or
        if the source failed on its `when`)."""
        assert edge.loop is not None
        passes = self.loops.get(edge_key(source, edge.to), 1)
        if passes >= edge.loop.max_iterations:
            why = f"loop bound reached: {passes} of {edge.loop.max_iterations} iterations ran"
            self._edge_decided(source, edge.to, "skipped", why)
            return False
        through = self._when_passes(source, edge, context)
        if not through:
            return through is None
        body = loop_body(self.spec, source, edge.to)
        after = reachable(self.spec, edge.to) - set(body)
        skipped = {n for n, state in self.nodes.items() if state["status"] == "skipped"}
        revived = [n for n in self.spec.nodes if n in after and n in skipped]
        inner = [key for key in loops_within(self.spec, body) if key != edge_key(source, edge.to)]
        self._loop_iterated(source, edge.to, passes + 1, body + revived, sorted(inner))
        return True

    def _open_edge(self, source: str, edge: Edge, context: dict[str, Any]) -> bool:
        """Decide an edge as far as it can be now; False if the source failed instead."""
        through = self._when_passes(source, edge, context)
        if not through:
            return through is not None
        trigger = edge.trigger
        if trigger is not None and trigger.condition is not None:
            if not self._condition_holds(trigger.condition, context):
                self._edge_decided(source, edge.to, "waiting", f"until {trigger.condition}")
                return True
        elif trigger is not None and trigger.schedule is not None:
            at = trigger.schedule.fire_at(datetime.now(UTC))
            attempt = self.nodes[source]["attempt"]
            key = edge_key(source, edge.to)
            self._set_timer(f"edge:{key}:{attempt}", "edge", 0, source, attempt, at)
            self._edge_decided(source, edge.to, "waiting", f"until {at.isoformat()}")
            return True
        self._validate_edge(source, edge, 0, context)
        return True

    def _when_passes(self, source: str, edge: Edge, context: dict[str, Any]) -> bool | None:
        """Whether the edge's `when` lets it through (True without one). False: it does
        not, and the edge is skipped. None: it cannot be evaluated, and the source node
        fails with class `definition`."""
        if edge.when is None:
            return True
        try:
            holds = evaluate_condition(edge.when, context)
        except ExpressionError as error:
            failure = {"class": "definition", "message": f"the edge to {edge.to!r}: when: {error}"}
            self._fail_node(source, self.nodes[source]["attempt"], failure)
            return None
        if not holds:
            self._edge_decided(source, edge.to, "skipped", f"when {edge.when!r} is false")
        return holds

    @staticmethod
    def _condition_holds(condition: str, context: dict[str, Any]) -> bool:
        """A trigger's condition; one that cannot be evaluated yet (a variable not set,
        say) does not hold."""
        try:
            return evaluate_condition(condition, context)
        except ExpressionError:
            return False

    def _validate_edge(
        self, source: str, edge: Edge, first: int, context: dict[str, Any] | None = None
    ) -> None:
        """Run the edge's validators from `first` on: take it when all pass, block it at the
        first that fails, or ask a model and wait for its verdict."""
        context = context or self.activation()
        attempt = self.nodes[source]["attempt"]
        for index in range(first, len(edge.validators)):
            validator = edge.validators[index]
            try:
                if validator.llm is not None:
                    request = judge_request(validator.llm, context)
                    asking = f"validator {index}: asking {request.model}"
                    self._edge_decided(source, edge.to, "validating", asking)
                    request_id = f"validator:{edge_key(source, edge.to)}:{attempt}:{index}"
                    about = {"source": source, "target": edge.to, "attempt": attempt}
                    about["validator"] = index
                    self._request_llm(request_id, "validator", request, about)
                    return
                assert validator.expression is not None
                passed = evaluate_condition(validator.expression, context)
                reason = validator.message or f"{validator.expression} is false"
            except (ExpressionError, TemplateError) as error:
                passed, reason = False, f"the validator could not be evaluated: {error}"
            if not passed:
                self._transition_blocked(source, edge.to, index, validator.kind, reason)
                return
        self._edge_decided(source, edge.to, "taken", "validated" if edge.validators else "")

    def _validator_answered(
        self, context: dict[str, Any], result: LlmResult | None, error: dict[str, Any] | None
    ) -> None:
        """A judge answered (or could not be asked): go on with the next validator, or block."""
        source, target, index = context["source"], context["target"], context["validator"]
        edge = self._edge(source, target)
        if (
            edge is None
            or self.edges.get(edge_key(source, target)) != "validating"
            or self.nodes[source]["attempt"] != context["attempt"]
        ):
            return
        if result is not None:
            passed, why = verdict(result)
        else:
            passed, why = False, f"the judge could not be asked: {(error or {}).get('message')}"
        if passed:
            self._validate_edge(source, edge, index + 1)
        else:
            message = edge.validators[index].message
            reason = f"{message}: {why}" if message else why
            self._transition_blocked(source, target, index, "llm", reason)
        self._check_source_stuck(source)

    def _check_source_stuck(self, source: str) -> None:
        """Fail a node whose edges are all decided, none taken, one blocked."""
        edges = self._listed_edges(source)
        states = [self.edges.get(edge_key(source, edge.to)) for edge in edges]
        if self.nodes[source]["status"] != "completed" or "blocked" not in states:
            return
        if "taken" in states or not all(state in RESOLVED for state in states):
            return
        reasons = [
            f"to {edge.to!r}: {self.blocked[edge_key(source, edge.to)]}"
            for edge in edges
            if self.edges.get(edge_key(source, edge.to)) == "blocked"
        ]
        message = f"no transition out of {source!r} passed its validators: " + "; ".join(reasons)
        error = {"class": "validation", "message": message}
        self._fail_node(source, self.nodes[source]["attempt"], error)

    def _release_waiting_edges(self) -> None:
        """Take (after their validators) the edges whose trigger condition now holds."""
        waiting = [key for key, state in self.edges.items() if state == "waiting"]
        if not waiting:
            return
        context = self.activation()
        for key in waiting:
            source, _, target = key.partition("->")
            edge = self._edge(source, target)
            if (
                edge is None
                or edge.trigger is None
                or edge.trigger.condition is None
                or self.edges.get(key) != "waiting"
            ):
                continue
            if self._condition_holds(edge.trigger.condition, context):
                self._validate_edge(source, edge, 0, context)
                self._check_source_stuck(source)

    def _scheduled_edge_due(self, timer_id: str, source: str | None, attempt: int | None) -> None:
        key = timer_id.split(":")[1]
        target = key.partition("->")[2]
        edge = self._edge(source, target) if source else None
        if (
            edge is None
            or source is None
            or self.edges.get(key) != "waiting"
            or self.nodes[source]["attempt"] != attempt
        ):
            return
        self._validate_edge(source, edge, 0)
        self._check_source_stuck(source)
        self.advance()

    def _only_triggers_left(self) -> bool:
        """Nothing runs and no model is asked, but some edge waits for its trigger."""
        return (
            "waiting" in self.edges.values()
            and not any(n["status"] in ("running", "retrying") for n in self.nodes.values())
            and not any(r["status"] == "pending" for r in self.llm_requests.values())
        )

    @event("EdgeDecided")
    def _edge_decided(self, source: str, target: str, state: str, reason: str) -> None:
        self._set_edge(edge_key(source, target), state)

    @event("TransitionBlocked")
    def _transition_blocked(
        self, source: str, target: str, validator: int, kind: str, reason: str
    ) -> None:
        self._set_edge(edge_key(source, target), "blocked")
        self.blocked[edge_key(source, target)] = reason

    def _set_edge(self, key: str, state: str) -> None:
        self.edges[key] = state
        if self.status == "waiting" and state != "waiting":
            self.status = "running"  # an edge moved: the run goes on

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

    # Run-level model calls: a call the run asks for outside any node, keyed by its
    # purpose (an edge's `llm` validator: "validator"). The worker answers it
    # (handlers/llm_requests.py) and records the answer with `complete_llm_request` or
    # `fail_llm_request`; the run hands it to the method LLM_REQUEST_PURPOSES names.

    def _request_llm(
        self, request_id: str, purpose: str, request: LlmRequest, context: dict[str, Any]
    ) -> None:
        assert purpose in LLM_REQUEST_PURPOSES, purpose
        self._llm_requested(request_id, purpose, request.model_dump(mode="json"), context)
        recorded = self._recorded.get(request.fingerprint())
        if recorded is not None:  # a fork in `recorded` mode: the same call was answered
            self._llm_request_replayed(request_id, purpose, recorded)
            result = LlmResult.model_validate(recorded)
            getattr(self, LLM_REQUEST_PURPOSES[purpose])(context, result, None)

    def check_llm_request_pending(self, request_id: str) -> dict[str, Any]:
        """The pending request `request_id`; raises LlmRequestNotPending otherwise."""
        pending = self.llm_requests.get(request_id)
        if self.is_finished or pending is None or pending["status"] != "pending":
            raise LlmRequestNotPending(f"run {self.id} waits for no model call {request_id!r}")
        return pending

    def complete_llm_request(self, request_id: str, result: LlmResult) -> None:
        """Record the model's answer to a run-level request and act on it."""
        pending = self.check_llm_request_pending(request_id)
        self._llm_request_completed(request_id, pending["purpose"], result.model_dump(mode="json"))
        getattr(self, LLM_REQUEST_PURPOSES[pending["purpose"]])(pending["context"], result, None)
        self.advance()

    def fail_llm_request(self, request_id: str, error: dict[str, Any]) -> None:
        """Record that a run-level request got no answer (after the provider's retries)."""
        pending = self.check_llm_request_pending(request_id)
        self._llm_request_failed(request_id, pending["purpose"], error)
        getattr(self, LLM_REQUEST_PURPOSES[pending["purpose"]])(pending["context"], None, error)
        self.advance()

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


LLM_REQUEST_PURPOSES = {"validator": "_validator_answered", "action": "_action_answered"}
"""For each purpose of a run-level model call, the `WorkflowRun` method that takes the
answer: `(context, result or None, error or None)`."""

__all__ = ["IO_NODE_KINDS", "TERMINAL_STATUSES", "DomainError", "WorkflowRun"]
