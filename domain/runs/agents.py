"""The agent loop: the worker calls the model and the tools; the run decides."""

from __future__ import annotations

from datetime import datetime

from domain.definitions import AgentNode
from domain.errors import NodeNotRunning
from domain.llm import LlmRequest, LlmResult, Message, ToolCall
from domain.runs.base import RunBase
from domain.runs.scheduling import incomplete_failure
from domain.tools import argument_problems


class Agents(RunBase):
    """An agent node's turns and tool calls."""

    def complete_agent_step(
        self, node_id: str, attempt: int, result: LlmResult, *, now: datetime
    ) -> list[ToolCall]:
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
        if (failure := incomplete_failure(node_id, node, result)) is not None:
            self._fail_node(node_id, attempt, failure, now=now)
            return []
        if not result.tool_calls:
            self._complete_with_output(node_id, node, result.text, now=now)
            self.advance(now=now)
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
                now=now,
            )
            return []
        if step >= node.max_steps:
            self._fail_node(
                node_id,
                attempt,
                {
                    "class": "agent",
                    "message": (
                        f"agent node {node_id!r} used all {node.max_steps} of its max_steps "
                        "and still calls tools instead of answering: raise max_steps or narrow "
                        "the prompt"
                    ),
                },
                now=now,
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
