"""Edges that carry more than a target: a `when`, a trigger, validators, a loop bound.

A node's `next` is a node id (an immediate edge, as always) or a list of edge objects:

    next:
      - to: publish
        trigger: {condition: "vars.approved"}   # or {schedule: {delay: 10m}} or cron
        validators:
          - expression: "size(vars.draft) > 200"
            message: "the draft is too short"
          - llm: {model: "openai:gpt-4o-mini", prompt: "Is this reply polite? {{ vars.draft }}"}
      - to: draft
        loop: {max_iterations: 3}
        when: "!vars.good"

This module is the edge model and the pure helpers the run uses to decide edges (the
judge's prompt and verdict, a schedule's next time). Their validation is in
`domain/definitions/problems.py`, the graph walks in `domain/definitions/graph.py`; the
decisions themselves are `WorkflowRun`'s (`domain/runs/edges.py`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.actions import model_request
from domain.durations import DURATION, seconds
from domain.llm import LlmRequest, LlmResult

EDGE_STATES = ("taken", "skipped", "blocked", "waiting", "validating")
"""What a run knows of an edge: decided (`taken`, `skipped`, `blocked` by a validator) or
not yet (`waiting` for its trigger, `validating` while a model judges it)."""
RESOLVED = frozenset({"taken", "skipped", "blocked"})
NOT_TAKEN = frozenset({"skipped", "blocked"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Strict):
    """Take the edge after `delay` (from when its source completed) or at the next time
    the 5-field `cron` expression names (UTC)."""

    delay: str | None = Field(default=None, pattern=DURATION, description="e.g. 10m or 2h")
    cron: str | None = Field(default=None, description="e.g. 0 9 * * 1-5 (UTC)")

    @field_validator("cron")
    @classmethod
    def _cron_is_valid(cls, cron: str | None) -> str | None:
        if cron is not None and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
            raise ValueError(
                f"{cron!r} is not a cron expression: give five fields, minute hour "
                "day-of-month month day-of-week, e.g. '0 9 * * 1-5'"
            )
        return cron

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if (self.delay is None) == (self.cron is None):
            raise ValueError("a schedule needs exactly one of delay and cron")
        return self

    def fire_at(self, now: datetime) -> datetime:
        """When a timer set at `now` for this schedule is due."""
        if self.delay is not None:
            return datetime.fromtimestamp(now.timestamp() + seconds(self.delay), now.tzinfo)
        assert self.cron is not None
        due: datetime = croniter(self.cron, now).get_next(datetime)
        return due


class Trigger(_Strict):
    """When the edge may be taken: once `condition` (CEL) holds, or on a `schedule`.
    An edge without a trigger is immediate: decided when its source completes."""

    condition: str | None = None
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Trigger:
        if (self.condition is None) == (self.schedule is None):
            raise ValueError("a trigger needs exactly one of condition and schedule")
        return self


class Judge(_Strict):
    """A model asked a yes/no question about the transition; a no blocks it."""

    model: str = Field(pattern=r"^[a-z][a-z0-9_-]*:.+$", description="provider:model")
    prompt: str = Field(min_length=1, description="a template")
    system: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Validator(_Strict):
    """One check a transition must pass: a CEL `expression` that must be true, or an
    `llm` judge that must answer yes. `message` is the reason recorded when it fails."""

    expression: str | None = None
    llm: Judge | None = None
    message: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_of(self) -> Validator:
        if (self.expression is None) == (self.llm is None):
            raise ValueError("a validator needs exactly one of expression and llm")
        return self

    @property
    def kind(self) -> str:
        return "expression" if self.expression is not None else "llm"


class Loop(_Strict):
    """A loop edge leads back to an earlier node; the loop body (the nodes from that node
    to this edge's source) runs at most `max_iterations` times, the first pass included."""

    max_iterations: int = Field(ge=2, le=1000)


class Edge(_Strict):
    """An edge of a `next` list."""

    to: str
    when: str | None = Field(
        default=None, description="CEL, decided once when the source completes"
    )
    trigger: Trigger | None = Field(default=None, description="none or `immediate`: at once")
    validators: list[Validator] = Field(default_factory=list)
    loop: Loop | None = None

    @field_validator("trigger", mode="before")
    @classmethod
    def _immediate_is_no_trigger(cls, trigger: Any) -> Any:
        return None if trigger == "immediate" else trigger


def edge_list(next: str | list[Edge] | None) -> list[Edge]:
    """The edges of a `next` as edge objects (a node id is one immediate edge)."""
    if next is None:
        return []
    if isinstance(next, str):
        return [Edge(to=next)]
    return list(next)


def edge_key(source: str, target: str) -> str:
    return f"{source}->{target}"


def loop_targets(node: Any) -> set[str]:
    """The targets of a node's loop edges."""
    next = getattr(node, "next", None)
    return {edge.to for edge in edge_list(next) if edge.loop} if isinstance(next, list) else set()


def forward_targets(node: Any) -> list[str]:
    """Every node this node may hand over to except through a loop edge: the edges that
    join semantics, reachability and the cycle check count."""
    looping = loop_targets(node)
    return [target for target in node.targets() if target not in looping]


# The LLM judge

JUDGE_SYSTEM = (
    "You check a step of a workflow before it goes on. Answer the question with a JSON "
    'object and nothing else: {"pass": true or false, "reason": "one short sentence"}.'
)


def judge_request(judge: Judge, context: dict[str, Any]) -> LlmRequest:
    """The model call that asks `judge`'s question, rendered over the run's `context`."""
    return model_request(judge, context, instructions=JUDGE_SYSTEM)


_YES_NO = re.compile(r"^\W*(yes|no|pass|fail|true|false)\b\W*(.*)$", re.IGNORECASE | re.DOTALL)


def verdict(result: LlmResult) -> tuple[bool, str]:
    """(passed, reason) from a judge's answer: the JSON object it was asked for, or a
    text that starts with yes or no. Anything else fails, saying what came back."""
    text = result.text.strip()
    body = text.removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("pass"), bool):
        return answer["pass"], str(answer.get("reason") or "")
    match = _YES_NO.match(text)
    if match:
        return match.group(1).lower() in ("yes", "pass", "true"), match.group(2).strip()
    shown = text if len(text) <= 200 else text[:200] + "..."
    return False, f"the judge did not answer yes or no: {shown!r}"
