"""Subworkflows: a child run per `subworkflow` node attempt or agent call of a workflow
tool, started and reported by commands that handlers/subworkflows.py sends when it
sees this run's (and the child's) events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from domain.definitions import ERROR_CLASSES, HEDDLE_NAMESPACE
from domain.errors import NodeNotRunning
from domain.llm import ToolCall
from domain.runs.base import MAX_DEPTH, RunBase


class Children(RunBase):
    """Child runs: starting them, and what their ends mean for this run."""

    def _child_id(self, node_id: str, attempt: int, call_id: str | None = None) -> UUID:
        where = f"{node_id}/{attempt}" + (f"/{call_id}" if call_id else "")
        return uuid5(HEDDLE_NAMESPACE, f"child/{self.id}/{where}")

    def _too_deep(self, workflow: str) -> str:
        return (
            f"subworkflow {workflow!r} would nest {self.depth + 1} runs deep, more than "
            f"{MAX_DEPTH}: does a workflow call itself without an end?"
        )

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

    def fail_subworkflow_start(self, child_id: str, message: str, *, now: datetime) -> None:
        """The child run could not start (no such workflow or version, input that does not
        match its inputs): a `subworkflow` node fails with class `definition`; an agent's
        tool call gets the reason as its result."""
        self.complete_subworkflow(
            child_id,
            "failed",
            None,
            {"class": "definition", "message": message, "start": True},
            now=now,
        )

    def complete_subworkflow(
        self,
        child_id: str,
        status: str,
        output: Any,
        error: dict[str, Any] | None,
        *,
        now: datetime,
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
            self._complete_with_output(node_id, self.spec.nodes[node_id], output, now=now)
            self.advance(now=now)
        else:
            failure = {
                "class": error.get("class") if error.get("class") in ERROR_CLASSES else "task",
                "message": message,
                "child_run_id": child_id,
            }
            self._fail_node(node_id, attempt, failure, now=now)

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
