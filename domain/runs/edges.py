"""Edges: `when`, triggers, validators and loops (the model: domain/definitions/edges.py).

A `next` list's edges are decided when their source completes: loop edges first
(one taken runs the loop body again and leaves the other edges for the next pass),
then the others in order. An edge is `skipped` when its `when` is false, `waiting`
while its trigger has not fired, `validating` while a model judges it, `blocked`
when a validator fails (a blocked edge counts as skipped), else `taken`. When every
edge of a node is decided, none taken and one blocked, the node fails with class
`validation`, so that its `retry` and `on_error` apply."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.definitions.edges import RESOLVED, Edge, edge_key, judge_request, verdict
from domain.definitions.graph import loop_body, loops_within, reachable
from domain.errors import ExpressionError, RunNotActive, TemplateError
from domain.expressions import evaluate_condition
from domain.llm import LlmResult
from domain.runs.base import RunBase


class Edges(RunBase):
    """Deciding a node's outgoing edges, their triggers, validators and loops."""

    def set_variables(
        self, variables: dict[str, Any], actor: str, reason: str = "", *, now: datetime
    ) -> None:
        """Set run variables from outside; edges waiting for a condition are checked again."""
        if self.is_finished:
            raise RunNotActive(f"run {self.id} is {self.status}: its variables cannot change")
        self._variables_set(variables, actor, reason)
        self.advance(now=now)

    def reopen_edges(self, *, now: datetime) -> None:
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
                if not self._open_edge(source, edge, context, now=now):
                    break
            if undecided:
                self._check_source_stuck(source, now=now)

    def _edge(self, source: str, target: str) -> Edge | None:
        return next((e for e in self._listed_edges(source) if e.to == target), None)

    def _decide_edges(self, source: str, *, now: datetime) -> None:
        edges = self._listed_edges(source)
        if not edges:
            return
        context = self.activation()
        for edge in edges:
            if edge.loop and self._take_loop(source, edge, context, now=now):
                return
        for edge in edges:
            if not edge.loop and not self._open_edge(source, edge, context, now=now):
                return
        self._check_source_stuck(source, now=now)

    def _take_loop(
        self, source: str, edge: Edge, context: dict[str, Any], *, now: datetime
    ) -> bool:
        """Run the loop body again when the bound allows and `when` holds; True if so (or
        if the source failed on its `when`)."""
        assert edge.loop is not None
        passes = self.loops.get(edge_key(source, edge.to), 1)
        if passes >= edge.loop.max_iterations:
            why = f"loop bound reached: {passes} of {edge.loop.max_iterations} iterations ran"
            self._edge_decided(source, edge.to, "skipped", why)
            return False
        through = self._when_passes(source, edge, context, now=now)
        if not through:
            return through is None
        body = loop_body(self.spec, source, edge.to)
        after = reachable(self.spec, edge.to) - set(body)
        skipped = {n for n, state in self.nodes.items() if state["status"] == "skipped"}
        revived = [n for n in self.spec.nodes if n in after and n in skipped]
        inner = [key for key in loops_within(self.spec, body) if key != edge_key(source, edge.to)]
        self._loop_iterated(source, edge.to, passes + 1, body + revived, sorted(inner))
        return True

    def _open_edge(
        self, source: str, edge: Edge, context: dict[str, Any], *, now: datetime
    ) -> bool:
        """Decide an edge as far as it can be now; False if the source failed instead."""
        through = self._when_passes(source, edge, context, now=now)
        if not through:
            return through is not None
        trigger = edge.trigger
        if trigger is not None and trigger.condition is not None:
            if not self._condition_holds(trigger.condition, context):
                self._edge_decided(source, edge.to, "waiting", f"until {trigger.condition}")
                return True
        elif trigger is not None and trigger.schedule is not None:
            at = trigger.schedule.fire_at(now)
            attempt = self.nodes[source]["attempt"]
            key = edge_key(source, edge.to)
            self._set_timer(f"edge:{key}:{attempt}", "edge", 0, source, attempt, at, now=now)
            self._edge_decided(source, edge.to, "waiting", f"until {at.isoformat()}")
            return True
        self._validate_edge(source, edge, 0, context, now=now)
        return True

    def _when_passes(
        self, source: str, edge: Edge, context: dict[str, Any], *, now: datetime
    ) -> bool | None:
        """Whether the edge's `when` lets it through (True without one). False: it does
        not, and the edge is skipped. None: it cannot be evaluated, and the source node
        fails with class `definition`."""
        if edge.when is None:
            return True
        try:
            holds = evaluate_condition(edge.when, context)
        except ExpressionError as error:
            failure = {"class": "definition", "message": f"the edge to {edge.to!r}: when: {error}"}
            self._fail_node(source, self.nodes[source]["attempt"], failure, now=now)
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
        self,
        source: str,
        edge: Edge,
        first: int,
        context: dict[str, Any] | None = None,
        *,
        now: datetime,
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
                    self._request_llm(request_id, "validator", request, about, now=now)
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
        self,
        context: dict[str, Any],
        result: LlmResult | None,
        error: dict[str, Any] | None,
        *,
        now: datetime,
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
            self._validate_edge(source, edge, index + 1, now=now)
        else:
            message = edge.validators[index].message
            reason = f"{message}: {why}" if message else why
            self._transition_blocked(source, target, index, "llm", reason)
        self._check_source_stuck(source, now=now)

    def _check_source_stuck(self, source: str, *, now: datetime) -> None:
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
        self._fail_node(source, self.nodes[source]["attempt"], error, now=now)

    def _release_waiting_edges(self, *, now: datetime) -> None:
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
                self._validate_edge(source, edge, 0, context, now=now)
                self._check_source_stuck(source, now=now)

    def _scheduled_edge_due(
        self, timer_id: str, source: str | None, attempt: int | None, *, now: datetime
    ) -> None:
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
        self._validate_edge(source, edge, 0, now=now)
        self._check_source_stuck(source, now=now)
        self.advance(now=now)

    def _only_triggers_left(self) -> bool:
        """Nothing runs and no model is asked, but some edge waits for its trigger."""
        return (
            "waiting" in self.edges.values()
            and not any(n["status"] in ("running", "retrying") for n in self.nodes.values())
            and not any(r["status"] == "pending" for r in self.llm_requests.values())
        )
