"""People: tasks, pause, resume, cancel, graph edits, signals and skipped steps."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from domain.definitions import HumanNode, WaitNode, parse_definition
from domain.edits import EDGE_FIELDS, apply_edits
from domain.errors import (
    DefinitionInvalid,
    GraphEditRejected,
    Problem,
    RunNotActive,
    SignalIgnored,
    TaskForbidden,
    TaskInvalid,
)
from domain.expressions import evaluate, evaluate_condition
from domain.runs.base import BUDGET_TASK, RunBase
from domain.runs.timers import later, moment
from domain.schemas import schema_problems
from domain.templates import render


class People(RunBase):
    """Decisions people (and their tools) make about a run."""

    def check_task_is_for(self, task_id: str, actor: str, roles: Collection[str]) -> None:
        """Only the task's assignee, or someone in its role, may complete or reassign an
        open task; anyone may act on one with neither."""
        task = self.tasks.get(task_id)
        if task is None or task["status"] != "open":
            return  # complete_task and reassign_task say what is wrong
        assignee, role = task.get("assignee"), task.get("role")
        if not (assignee or role) or actor == assignee or role in roles:
            return
        wanted = " or ".join(
            f"{what} {value!r}" for what, value in (("assignee", assignee), ("role", role)) if value
        )
        raise TaskForbidden(
            f"task {task_id!r} of run {self.id} is for {wanted}: {actor!r} (roles: "
            f"{', '.join(sorted(roles)) or 'none'}) may not act on it"
        )

    def complete_task(
        self,
        task_id: str,
        actor: str,
        decision: str | None,
        data: dict[str, Any] | None,
        comment: str,
        *,
        now: datetime,
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
                self.advance(now=now)
            else:
                self._run_cancelled(actor, f"budget not approved: {comment}".strip(": "))
            return
        node = self.spec.nodes[task_id]
        assert isinstance(node, HumanNode)
        self._complete_with_output(task_id, node, output, now=now)
        self.advance(now=now)

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

    def pause(self, actor: str, reason: str, until: str | None = None, *, now: datetime) -> None:
        """Start no new node until `resume` (or until `until`: a snooze); work in flight
        completes and is recorded."""
        if self.status not in ("running", "waiting"):
            raise RunNotActive(
                f"run {self.id} is {self.status}: only a running or waiting run can pause"
            )
        at = moment(until, "until", now) if until else None
        self._run_paused(actor, reason, None)
        if at is not None:
            self._set_timer(f"resume:{self.version}", "resume", 0, at=at, now=now)

    def resume(self, actor: str, at: str | None = None, *, now: datetime) -> None:
        """Go on now, or at `at` (a time or a duration from now: a scheduled resume)."""
        if self.status != "paused":
            raise RunNotActive(f"run {self.id} is {self.status}, not paused")
        if self._budget_task_open():
            raise RunNotActive(
                f"run {self.id} waits for its budget approval: complete task {BUDGET_TASK!r}"
            )
        if at:
            self._set_timer(
                f"resume:{self.version}", "resume", 0, at=moment(at, "at", now), now=now
            )
            return
        self._run_resumed(actor)
        self.advance(now=now)

    def cancel(self, actor: str, reason: str) -> None:
        """End the run: running nodes and open tasks are cancelled; late results are ignored."""
        if self.is_finished:
            raise RunNotActive(f"run {self.id} is {self.status} already")
        self._run_cancelled(actor, reason)

    def edit_graph(
        self,
        edits: list[Any],
        actor: str,
        reason: str,
        *,
        now: datetime,
        allowed_hosts: frozenset[str],
    ) -> None:
        """Change the graph of a running run: all `edits` or none. The new graph must be a
        valid definition (its HTTP tools calling only `allowed_hosts`), and every node that
        has started must stay as it was (a running node's outgoing edges excepted: they are
        decided when it ends). Nodes that became ready start at once; nodes left with no way
        in are skipped."""
        if self.status not in ("running", "waiting"):
            raise GraphEditRejected(
                f"run {self.id} is {self.status}: only a running or waiting run's graph can change"
            )
        graph = apply_edits(self.graph, edits)
        problems = self._edit_problems(graph)
        try:
            spec = parse_definition(graph, allowed_hosts)
        except DefinitionInvalid as invalid:
            problems += invalid.problems
        if problems:
            raise DefinitionInvalid(problems)
        summary = [edit.model_dump(mode="json", by_alias=True) for edit in edits]
        self._graph_edited(spec.canonical(), spec.content_hash(), summary, actor, reason)
        self._skip_dead_nodes()
        self.advance(now=now)

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

    def signal(self, name: str, data: dict[str, Any], actor: str, *, now: datetime) -> list[str]:
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
            self._complete_with_output(node_id, node, event_value, now=now)
        self.advance(now=now)
        return matched

    def complete_by(self, actor: str, outcome: str, notes: str) -> None:
        """A person ends the run with an outcome: the steps that are running are skipped
        (their tasks with them), and so are those still to come; the output is the outcome."""
        if self.is_finished:
            raise RunNotActive(f"run {self.id} is {self.status} already")
        reason = f"the run was completed by {actor}: {outcome}"
        going = [n for n, st in self.nodes.items() if st["status"] in ("running", "retrying")]
        for node_id in going:
            self._node_skipped_by(node_id, actor, reason)
        left = ("pending", "running", "retrying", "waiting")
        remaining = [n for n, st in self.nodes.items() if st["status"] in left]
        if remaining:
            self._nodes_skipped(remaining)
        self._run_completed({"outcome": outcome, "notes": notes, "completed_by": actor})

    def skip_node(self, node_id: str, actor: str, reason: str, *, now: datetime) -> None:
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
        self._complete_node(node_id, None, {}, None, exit_actions=False, now=now)
        self.advance(now=now)

    def _task_for(self, node: HumanNode, *, now: datetime) -> dict[str, Any]:
        context = self.activation()
        due_at = None
        if node.due_in:
            due_at = later(node.due_in, now).isoformat()
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
