"""Entry and exit actions of a node (what each action does: domain/actions.py)."""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime
from typing import Any
from uuid import uuid5

from domain.actions import Locator, Performed, perform
from domain.llm import LlmResult
from domain.runs.base import RunBase


class Actions(RunBase):
    """Running a node's `on_enter` and `on_exit` actions and recording what they did."""

    def _action_answered(
        self,
        context: dict[str, Any],
        result: LlmResult | None,
        error: dict[str, Any] | None,
        *,
        now: datetime,
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
            self._fail_node(node_id, attempt, {**(error or {}), "message": message}, now=now)
            return
        self._carry_on(context, result.text, now=now)

    def _carry_on(self, waited: dict[str, Any], text: str, *, now: datetime) -> None:
        """An `llm` action got its answer `text`: set its variable, run the node's remaining
        actions, then its work (after entry actions) or its completion (after exit ones)."""
        node_id, attempt, output = waited["node_id"], waited["attempt"], waited["output"]
        self._action_variables_set(node_id, attempt, waited["action"], {output: text})
        if waited["phase"] == "on_enter":
            if self._enter_node(node_id, attempt, waited["remaining"], now=now):
                self._start_node(node_id, entered=True, now=now)
            return
        completion = waited["completion"]
        completion = {**completion, "variables": {**completion["variables"], output: text}}
        exited = self._exit_node(node_id, attempt, waited["remaining"], completion, now=now)
        if exited is not None:
            next = completion["next"]
            self._complete_node(
                node_id, completion["output"], exited, next, exit_actions=False, now=now
            )

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

    def _enter_node(
        self, node_id: str, attempt: int, queue: list[Locator], *, now: datetime
    ) -> bool:
        """Run entry actions from `queue`; True when the node's work may begin now."""
        done = perform(node_id, self.spec.nodes[node_id], queue, self.activation())
        return self._record_actions(node_id, attempt, "on_enter", done, None, now=now)

    def _exit_node(
        self,
        node_id: str,
        attempt: int,
        queue: list[Locator],
        completion: dict[str, Any],
        *,
        now: datetime,
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
        if not self._record_actions(node_id, attempt, "on_exit", done, completion, now=now):
            return None
        return completion["variables"]  # type: ignore[no-any-return]

    def _record_actions(
        self,
        node_id: str,
        attempt: int,
        phase: str,
        done: Performed,
        completion: dict[str, Any] | None,
        *,
        now: datetime,
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
            self._fail_node(
                node_id, attempt, {"class": "definition", "message": done.failure}, now=now
            )
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
            self._request_llm(request_id, "action", wait.request, copy.deepcopy(context), now=now)
            return False
        return True
