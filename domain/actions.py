"""Entry and exit actions: what a node does when it starts (`on_enter`) and when its work
is done (`on_exit`), as lists run in order.

Four kinds, each written as a mapping with one key:

- `variable`: `{set: {name: template}}` renders templates into string variables (as a
  `set` node does), `{compute: {name: CEL}}` evaluates expressions and keeps their type;
- `conditional`: `{if: CEL, then: [actions], else: [actions]}`;
- `document`: `{name: template, content_type, template}` renders an artifact, saved for
  the run and the node;
- `llm`: `{model, prompt, system, ..., output}` asks a model; its answer text goes to the
  variable `output`. The run worker makes the call; the run waits for it.

This module is pure: `perform` works out what a list of actions does against an
activation and returns the effects for `WorkflowRun` to record as events. A node's
actions are addressed by locators such as `["on_enter", 1, "then", 0]`, which name the
action at `nodes.<id>.on_enter[1].conditional.then[0]`: a run waiting for a model in
the middle of its actions records the locators still to run and carries on from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.errors import ExpressionError, Problem, TemplateError, problems_of
from domain.expressions import compile_expression, evaluate, evaluate_condition
from domain.llm import LlmRequest, Message
from domain.templates import parse_template, render

VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
CONTENT_TYPE = r"^[a-z]+/[A-Za-z0-9.+-]+(;\s*charset=[A-Za-z0-9-]+)?$"
MAX_ARTIFACT_BYTES = 256 * 1024
"""The most a document may hold: its content travels in an event, through Kafka."""
MAX_ARTIFACT_NAME = 200
KINDS = ("variable", "conditional", "document", "llm")
Phase = Literal["on_enter", "on_exit"]
Locator = list[str | int]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class VariableAction(_Strict):
    """Set variables: `set` values that are strings are templates (the variable gets the
    rendered string; other values are stored as written); `compute` values are CEL
    expressions whose results keep their type."""

    set: dict[str, Any] = Field(default_factory=dict)
    compute: dict[str, str] = Field(default_factory=dict)


class ConditionalAction(_Strict):
    """Run `then` when the CEL condition `if` holds, else `else`."""

    if_: str = Field(alias="if")
    then: list[Action] = Field(default_factory=list)
    else_: list[Action] = Field(default_factory=list, alias="else")


class DocumentAction(_Strict):
    """Render `template` into an artifact called `name` (a template too)."""

    name: str = Field(min_length=1, max_length=MAX_ARTIFACT_NAME)
    content_type: str = Field(default="text/markdown", pattern=CONTENT_TYPE)
    template: str


class LlmAction(_Strict):
    """Ask a model; the answer's text goes to the variable `output`."""

    model: str = Field(pattern=r"^[a-z][a-z0-9_-]*:.+$", description="provider:model")
    prompt: str
    system: str | None = None
    output: str = Field(pattern=VARIABLE_NAME)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Action(_Strict):
    """One action: exactly one of `variable`, `conditional`, `document` and `llm`."""

    variable: VariableAction | None = None
    conditional: ConditionalAction | None = None
    document: DocumentAction | None = None
    llm: LlmAction | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Action:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"an action is exactly one of {', '.join(KINDS)} "
                f"(this one has {', '.join(given) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)


ConditionalAction.model_rebuild()


class ActionFailed(Exception):
    """An action could not run; the message starts with the action's path."""


# Where an action is


def path_of(node_id: str, locator: Locator) -> str:
    """Where a locator points: `["on_enter", 1, "then", 0]` of node `draft` is
    `nodes.draft.on_enter[1].conditional.then[0]`."""
    text = f"nodes.{node_id}.{locator[0]}[{locator[1]}]"
    for index in range(2, len(locator), 2):
        text += f".conditional.{locator[index]}[{locator[index + 1]}]"
    return text


def action_at(node: Any, locator: Locator) -> Action:
    action: Action = getattr(node, str(locator[0]))[int(locator[1])]
    for index in range(2, len(locator), 2):
        assert action.conditional is not None
        branch = action.conditional.then if locator[index] == "then" else action.conditional.else_
        action = branch[int(locator[index + 1])]
    return action


def phase_queue(node: Any, phase: Phase) -> list[Locator]:
    """The locators of a node's `on_enter` or `on_exit` actions, in order."""
    return [[phase, index] for index in range(len(getattr(node, phase)))]


# What actions do


@dataclass(frozen=True)
class Effect:
    """A fact for the run to record: `variables` set, or a `document` rendered."""

    kind: Literal["variables", "document"]
    action: str
    data: dict[str, Any]


@dataclass(frozen=True)
class LlmWait:
    """An `llm` action waits for its answer; `remaining` runs after it."""

    action: str
    request: LlmRequest
    output: str
    remaining: list[Locator]


@dataclass
class Performed:
    """What running a list of actions came to: its effects in order, every variable it
    set (last value wins), and then either the end, a wait for a model, or a failure."""

    effects: list[Effect] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    waiting: LlmWait | None = None
    failure: str | None = None


def perform(node_id: str, node: Any, queue: list[Locator], activation: dict[str, Any]) -> Performed:
    """Run the actions at `queue` in order against `activation` (not changed: a copy sees
    the variables set by earlier actions). Stops at the first `llm` action, or at the
    first action that fails, whose path and problem are then in `failure`."""
    done = Performed()
    context = {**activation, "vars": dict(activation["vars"])}
    queue = [list(locator) for locator in queue]
    while queue:
        locator = queue.pop(0)
        action, path = action_at(node, locator), path_of(node_id, locator)
        try:
            if action.variable is not None:
                values = _variables(action.variable, context)
                context["vars"].update(values)
                done.variables.update(values)
                done.effects.append(Effect("variables", path, {"variables": values}))
            elif action.conditional is not None:
                branch = "then" if evaluate_condition(action.conditional.if_, context) else "else"
                actions = action.conditional.then if branch == "then" else action.conditional.else_
                queue[:0] = [[*locator, branch, index] for index in range(len(actions))]
            elif action.document is not None:
                done.effects.append(Effect("document", path, _document(action.document, context)))
            elif action.llm is not None:
                request = model_request(action.llm, context)
                done.waiting = LlmWait(path, request, action.llm.output, queue)
                return done
        except (ExpressionError, TemplateError, ValueError) as error:
            done.failure = f"{path}: {error}"
            return done
    return done


def _variables(action: VariableAction, context: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in action.set.items():
        values[name] = render(value, context) if isinstance(value, str) else value
    for name, source in action.compute.items():
        values[name] = evaluate(source, context)
    return values


def _document(action: DocumentAction, context: dict[str, Any]) -> dict[str, Any]:
    name = render(action.name, context).strip()
    if not name or len(name) > MAX_ARTIFACT_NAME:
        raise ValueError(
            f"document name {name!r} must be 1 to {MAX_ARTIFACT_NAME} characters once rendered"
        )
    content = render(action.template, context)
    size = len(content.encode())
    if size > MAX_ARTIFACT_BYTES:
        raise ValueError(
            f"document {name!r} is {size:,} bytes, more than the {MAX_ARTIFACT_BYTES:,} "
            "an artifact may hold: shorten the template or split the document"
        )
    return {"name": name, "content_type": action.content_type, "content": content, "size": size}


def model_request(
    source: Any,
    context: dict[str, Any],
    tools: list[Any] | None = None,
    instructions: str | None = None,
) -> LlmRequest:
    """The model call that `source` (an `llm` action, an edge's judge, or a node that calls
    a model: its `model`, `prompt`, `system`, `temperature`, `max_tokens`, `options`,
    `credential`) asks for, its templates rendered over `context`. `instructions` come
    first in the system message, before `source`'s own `system`."""
    system = render(source.system, context) if source.system else None
    if instructions is not None:
        system = instructions if system is None else f"{instructions}\n\n{system}"
    messages = []
    if system is not None:
        messages.append(Message(role="system", content=system))
    messages.append(Message(role="user", content=render(source.prompt, context)))
    return LlmRequest(
        model=source.model,
        messages=messages,
        temperature=source.temperature,
        max_tokens=source.max_tokens,
        options=source.options,
        credential=source.credential,
        tools=tools or [],
    )


# Validation of a definition's actions


def action_problems(node_id: str, node: Any) -> list[Problem]:
    """Every problem of a node's actions that can be found before a run: expressions that
    do not compile, templates that do not parse, variable names that CEL cannot read."""
    problems: list[Problem] = []
    for phase in ("on_enter", "on_exit"):
        for index, action in enumerate(getattr(node, phase, ())):
            problems += _problems(action, f"nodes.{node_id}.{phase}[{index}]")
    return problems


def _problems(action: Action, at: str) -> list[Problem]:
    problems: list[Problem] = []
    if action.variable is not None:
        where = f"{at}.variable"
        if not action.variable.set and not action.variable.compute:
            problems.append(Problem(where, "give the variables to set in set or compute"))
        for part in ("set", "compute"):
            for name, value in getattr(action.variable, part).items():
                if not re.match(VARIABLE_NAME, name):
                    problems.append(
                        Problem(
                            f"{where}.{part}", f"variable name {name!r} must match {VARIABLE_NAME}"
                        )
                    )
                elif part == "compute":
                    problems += problems_of(compile_expression, value, f"{where}.compute.{name}")
                elif isinstance(value, str):
                    problems += problems_of(parse_template, value, f"{where}.set.{name}")
    elif action.conditional is not None:
        where = f"{at}.conditional"
        problems += problems_of(compile_expression, action.conditional.if_, f"{where}.if")
        for branch, actions in (
            ("then", action.conditional.then),
            ("else", action.conditional.else_),
        ):
            for index, inner in enumerate(actions):
                problems += _problems(inner, f"{where}.{branch}[{index}]")
    elif action.document is not None:
        for part in ("name", "template"):
            problems += problems_of(
                parse_template, getattr(action.document, part), f"{at}.document.{part}"
            )
    elif action.llm is not None:
        problems += prompt_problems(action.llm, f"{at}.llm")
    return problems


def prompt_problems(source: Any, at: str) -> list[Problem]:
    """The problems of the templates of a model call (`source`'s `prompt` and `system`)."""
    problems = problems_of(parse_template, source.prompt, f"{at}.prompt")
    if source.system:
        problems += problems_of(parse_template, source.system, f"{at}.system")
    return problems
