"""Scheduling: which nodes are ready, starting them (one starter per node kind:
domain/runs/starters.py), completing and failing them, finishing the run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.actions import model_request, phase_queue
from domain.definitions import AgentNode, LlmNode, MapNode, ModelNode
from domain.definitions.edges import NOT_TAKEN, RESOLVED
from domain.durations import seconds
from domain.errors import ExpressionError, TemplateError
from domain.expressions import evaluate
from domain.llm import LlmRequest, LlmResult, Message, unfinished
from domain.runs.starters import NODE_STARTERS, NodeStarters
from domain.structured import output_instructions, parsed_answer, repair_prompt, response_format


class Scheduling(NodeStarters):
    """Moving a run on: start what is ready, complete and fail nodes, finish."""

    def advance(self, *, now: datetime) -> None:
        """Start every ready node; run `switch` and `set` nodes inline; finish the run.
        A run over its budget pauses instead of starting a node. Edges waiting for a
        condition are checked again first; a run left with nothing but waiting edges waits."""
        if self.status not in ("running", "waiting"):
            return
        self._release_waiting_edges(now=now)
        if self.status != "running":
            return
        if self.spec.deadline and "deadline" not in self.timers:
            self._set_timer("deadline", "deadline", seconds(self.spec.deadline), now=now)
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
                self._start_node(node_id, now=now)
                progressed = True
            if progressed:
                self._release_waiting_edges(
                    now=now
                )  # nodes that ran at once may have set variables
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
        self,
        node_id: str,
        attempt: int,
        result: LlmResult,
        item: int | None = None,
        *,
        now: datetime,
    ) -> None:
        """Record a model's answer (for one `item` of a map node, when given), complete the
        node if that was its last call, and move the run on. An answer the model did not
        finish fails the node (class `incomplete`) unless the node allows it."""
        self.check_node_is_running(node_id, attempt, item)
        node = self.spec.nodes[node_id]
        if isinstance(node, MapNode):
            assert item is not None
            if (failure := incomplete_failure(node_id, node.do, result)) is not None:
                self.fail_node(node_id, attempt, failure, item, now=now)
                return
            self._map_item_completed(node_id, attempt, item, result.model_dump(mode="json"))
            self._continue_map(node_id, node, now=now)
            self.advance(now=now)
            return
        if isinstance(node, AgentNode):
            self.complete_agent_step(node_id, attempt, result, now=now)
            return
        self._llm_call_completed(node_id, attempt, result.model_dump(mode="json"))
        assert isinstance(node, LlmNode)
        if (failure := incomplete_failure(node_id, node, result)) is not None:
            self._fail_node(node_id, attempt, failure, now=now)
            return
        self._take_answer(node_id, node, attempt, result.text, now=now)
        self.advance(now=now)

    def _take_answer(
        self, node_id: str, node: LlmNode, attempt: int, text: str, *, now: datetime
    ) -> None:
        """An `llm` node's answer: its output; with an `output_schema`, its JSON value if it
        matches, else the model is shown the problems and asked again (a new attempt whose
        request adds the answer and the problems) until `max_repairs`, then the node fails
        (class `output`)."""
        if node.output_schema is None:
            self._complete_with_output(node_id, node, text, now=now)
            return
        value, problems = parsed_answer(node.output_schema, text)
        if not problems:
            self._complete_with_output(node_id, node, value, now=now)
            return
        asked = LlmRequest.model_validate(self.nodes[node_id]["input"])
        repairs = sum(1 for message in asked.messages if message.role == "assistant")
        message = "the answer does not match the node's output_schema: " + "; ".join(problems)
        if repairs >= node.max_repairs:
            message += f" (after {repairs} repairs; max_repairs: {node.max_repairs})"
        error: dict[str, Any] = {"class": "output", "message": message, "problems": problems}
        if repairs >= node.max_repairs:
            self._fail_node(node_id, attempt, error, now=now)
            return
        self._node_retry_scheduled(node_id, attempt, error, 0.0)
        again = [
            Message(role="assistant", content=text),
            Message(role="user", content=repair_prompt(problems)),
        ]
        request = asked.model_copy(update={"messages": [*asked.messages, *again]})
        self._start_model(node_id, node, attempt + 1, request=request, now=now)

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
        self,
        node_id: str,
        attempt: int,
        error: dict[str, Any],
        item: int | None = None,
        *,
        now: datetime,
    ) -> None:
        """A node (or one item of a map node) failed for good: the run fails with the
        node's error."""
        self.check_node_is_running(node_id, attempt, item)
        if item is not None:
            error = {**error, "item": item, "message": f"item {item}: {error.get('message')}"}
        self._fail_node(node_id, attempt, error, now=now)

    def _fail_node(
        self, node_id: str, attempt: int, error: dict[str, Any], *, now: datetime
    ) -> None:
        """A node attempt failed: try again later if its `retry` covers the error's class,
        else hand over to its `on_error` node, else fail the run."""
        node = self.spec.nodes[node_id]
        retry = node.retries
        tries = attempt - self.attempt_base.get(node_id, 0)  # in this pass of a loop
        if retry is not None and tries < retry.attempts and error.get("class") in retry.errors:
            delay = retry.delay(tries)
            self._node_retry_scheduled(node_id, attempt, error, delay)
            self._set_timer(f"retry:{node_id}:{attempt}", "retry", delay, node_id, attempt, now=now)
            return
        if node.on_error:
            self._node_failed(node_id, attempt, error, True)
            self._skip_dead_nodes()
            self.advance(now=now)
            return
        self._node_failed(node_id, attempt, error)
        self._run_failed({"node": node_id, **error})

    def _start_node(self, node_id: str, entered: bool = False, *, now: datetime) -> None:
        """Start a node: its entry actions, then its work (`entered`: the entry actions
        have run, the work is next)."""
        node = self.spec.nodes[node_id]
        attempt = self.nodes[node_id]["attempt"] + (0 if entered else 1)
        entry = [] if entered else phase_queue(node, "on_enter")
        if entry and not self._enter_node(node_id, attempt, entry, now=now):
            return
        try:
            NODE_STARTERS[type(node)](self, node_id, node, attempt, now=now)
            state = self.nodes[node_id]
            if node.timeout and state["status"] == "running" and state["attempt"] == attempt:
                timeout = seconds(node.timeout)
                self._set_timer(
                    f"timeout:{node_id}:{attempt}",
                    "timeout",
                    timeout,
                    node_id,
                    attempt,
                    now=now,
                )
        except (ExpressionError, TemplateError) as error:
            failure = {"class": "definition", "message": str(error)}
            if self.nodes[node_id]["status"] != "running":
                self._node_started(node_id, node.kind, attempt, {})
            self._fail_node(node_id, attempt, failure, now=now)

    def _continue_map(self, node_id: str, node: MapNode, *, now: datetime) -> None:
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
            self._complete_with_output(node_id, node, results, now=now)

    def _complete_node(
        self,
        node_id: str,
        output: Any,
        variables: dict[str, Any],
        next: str | None,
        exit_actions: bool = True,
        *,
        now: datetime,
    ) -> None:
        """The node's work is done: its exit actions run (unless a person skipped it), then
        it completes and its outgoing edges are resolved."""
        node = self.spec.nodes[node_id]
        if exit_actions and node.on_exit:
            completion = {"output": output, "variables": dict(variables), "next": next}
            attempt = self.nodes[node_id]["attempt"]
            exited = self._exit_node(
                node_id, attempt, phase_queue(node, "on_exit"), completion, now=now
            )
            if exited is None:
                return
            variables = exited
        self._node_completed(node_id, output, variables, next)
        self._decide_edges(node_id, now=now)
        self._skip_dead_nodes()

    def _complete_with_output(self, node_id: str, node: Any, output: Any, *, now: datetime) -> None:
        """Complete a node that hands `output` to its `output` variable, if it names one."""
        self._complete_node(
            node_id, output, {node.output: output} if node.output else {}, None, now=now
        )

    def _skip_dead_nodes(self) -> None:
        dead = self._dead_nodes()
        if dead:
            self._nodes_skipped(dead)

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

    def _llm_request_for(
        self, node: ModelNode, context: dict[str, Any] | None = None
    ) -> LlmRequest:
        tools = [
            tool
            for name in (node.tools if isinstance(node, AgentNode) else [])
            if (tool := self.spec.tool(name)) is not None
        ]
        if isinstance(node, LlmNode) and node.output_schema is not None:
            request = model_request(
                node, context or self.activation(), tools, output_instructions(node.output_schema)
            )
            native = {"response_format": response_format(node.output_schema)}
            return request.model_copy(update={"options": {**native, **request.options}})
        return model_request(node, context or self.activation(), tools)

    def _finish(self) -> None:
        output: Any = dict(self.variables)
        if self.spec.output:
            try:
                output = evaluate(self.spec.output, self.activation())
            except ExpressionError as error:
                self._run_failed({"class": "definition", "message": f"output: {error}"})
                return
        self._run_completed(output)


def incomplete_failure(node_id: str, node: ModelNode, result: LlmResult) -> dict[str, Any] | None:
    """The failure of a node whose model did not finish its answer (max_tokens reached,
    filtered, refused), unless the node takes such answers (`allow_incomplete`)."""
    why = unfinished(result)
    if why is None or node.allow_incomplete:
        return None
    return {
        "class": "incomplete",
        "message": f"{why}: raise the node's max_tokens, or set allow_incomplete: true on "
        f"node {node_id!r} to take the answer as it is",
        "finish_reason": result.finish_reason,
    }
