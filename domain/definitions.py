"""Workflow definitions: the document people write, its validation, and its aggregate.

A definition is a graph of named nodes. `next` and switch `cases` are its edges. A
published version is immutable and identified by the hash of its canonical content.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from typing import Annotated, Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

import jsonschema
from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from domain.durations import DURATION, seconds
from domain.edges import Edge, edge_list, edge_problems, forward_targets, loop_problems
from domain.errors import DefinitionInvalid, Problem
from domain.errors import problems_of as _check
from domain.expressions import compile_expression
from domain.http_tools import HTTP_HOSTS, TOOL_NAME, HttpTool, tool_problems
from domain.llm import ToolDefinition
from domain.schemas import schema_problems
from domain.templates import parse_template
from domain.tools import TOOLS

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
HEDDLE_NAMESPACE = uuid5(NAMESPACE_URL, "https://heddle.dev/ids")


ERROR_CLASSES = ("retryable", "fatal", "timeout", "definition", "agent", "task", "validation")
ErrorClass = Literal["retryable", "fatal", "timeout", "definition", "agent", "task", "validation"]


class Retry(BaseModel):
    """Try a failed node again: up to `attempts` in all, waiting `backoff`, then
    `backoff * factor`, and so on, for the error classes in `errors`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(ge=2, le=20)
    backoff: str = Field(default="1s", pattern=DURATION)
    factor: float = Field(default=2.0, ge=1, le=10)
    errors: list[ErrorClass] = Field(default_factory=lambda: ["retryable", "timeout"], min_length=1)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt `attempt` (1 = the first) failed."""
        return seconds(self.backoff) * self.factor ** (attempt - 1)


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    next: str | list[Edge] | None = Field(
        default=None, description="a node id, or a list of edges (domain/edges.py)"
    )
    retry: Retry | None = None
    timeout: str | None = Field(default=None, pattern=DURATION, description="e.g. 30s or 2h")
    on_error: str | None = Field(default=None, description="the node that handles a failure")

    @property
    def retries(self) -> Retry | None:
        """How this node is retried: its `retry`, or its kind's default."""
        return self.retry

    def next_targets(self) -> list[str]:
        """The nodes this node may hand over to when it completes."""
        return [edge.to for edge in edge_list(self.next)]

    def targets(self) -> list[str]:
        """Every node this node may hand over to: the next ones and its error handler."""
        targets = self.next_targets()
        if self.on_error and self.on_error not in targets:
            targets.append(self.on_error)
        return targets


CREDENTIAL_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _ModelNode(_Node):
    """What every node that calls a model has."""

    model: str = Field(pattern=r"^[a-z][a-z0-9_-]*:.+$", description="provider:model")
    prompt: str
    system: str | None = None
    output: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(
        default=None, pattern=CREDENTIAL_ID, description="id of a stored credential"
    )
    stream: bool = Field(default=True, description="publish token deltas to heddle.tokens")


class LlmNode(_ModelNode):
    """Call a model with a rendered prompt; the reply text goes to `output`."""

    kind: Literal["llm"]


class AgentNode(_ModelNode):
    """A tool-calling loop: the model may call `tools` until it answers, within `max_steps`
    model turns and `max_repairs` rejected tool calls; the answer goes to `output`."""

    kind: Literal["agent"]
    tools: list[str] = Field(default_factory=list)
    max_steps: int = Field(default=8, ge=1, le=100)
    max_repairs: int = Field(default=3, ge=0, le=100)


class SwitchCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str
    next: str


class SwitchNode(_Node):
    """Take the first case whose CEL condition holds, else `default`."""

    kind: Literal["switch"]
    cases: list[SwitchCase] = Field(min_length=1)
    default: str | None = None

    def next_targets(self) -> list[str]:
        targets = [case.next for case in self.cases]
        if self.default:
            targets.append(self.default)
        return list(dict.fromkeys(targets))


class SetNode(_Node):
    """Set variables; string values are templates over `input`, `vars` and `nodes`."""

    kind: Literal["set"]
    vars: dict[str, Any] = Field(min_length=1)


class ParallelNode(_Node):
    """Fan out: every branch starts; a `join` (or any node with several parents) meets them."""

    kind: Literal["parallel"]
    branches: list[str] = Field(min_length=2)

    def next_targets(self) -> list[str]:
        return list(dict.fromkeys(self.branches))


class JoinNode(_Node):
    """Fan in: waits for every incoming edge; `output` gets the outputs of the parents that
    ran, in the order the definition lists those parents."""

    kind: Literal["join"]
    output: str | None = None


class MapStep(_ModelNode):
    """What a `map` node does for each item: a model call whose templates also see `item`
    and `index`."""

    kind: Literal["llm"] = "llm"


class MapNode(_Node):
    """Run `do` once per item of the list `items` (CEL), at most `concurrency` at a time;
    `output` gets the results in the order of the items."""

    kind: Literal["map"]
    items: str
    do: MapStep
    concurrency: int = Field(default=4, ge=1, le=100)
    max_items: int = Field(default=1000, ge=1, le=10_000)
    output: str | None = None


class HumanNode(_Node):
    """A task for a person: an `approval` (approve or reject, with a comment) or an `input`
    (data matching `form`, a JSON schema). The run waits at this node until `CompleteTask`;
    `output` gets the decision or the data."""

    kind: Literal["human"]
    task: Literal["approval", "input"] = "approval"
    title: str = Field(min_length=1, max_length=500, description="a template")
    instructions: str = Field(default="", description="a template")
    assignee: str | None = Field(default=None, description="a template; who should do it")
    role: str | None = Field(default=None, max_length=100, description="or who may do it")
    priority: int = Field(default=50, ge=0, le=100)
    due_in: str | None = Field(default=None, pattern=DURATION, description="e.g. 4h or 2d")
    form: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    value: str | None = Field(
        default=None, description="CEL: the customer's value (0-100) for the work queue"
    )
    output: str | None = None


class WaitNode(_Node):
    """Wait for a duration (`for`), until a time (`until`, CEL giving an ISO 8601 time), or
    until a signal that matches `event` (CEL over `event.name` and `event.data`); with
    `timeout`, a wait for a signal fails with class `timeout` when none came in time."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["wait"]
    for_: str | None = Field(default=None, alias="for", pattern=DURATION)
    until: str | None = None
    event: str | None = None
    output: str | None = None


CAPABILITY = r"^[a-z][a-z0-9_-]{0,62}$"


class RemoteNode(_Node):
    """Work done by an outside worker: a task on `heddle.tasks.<capability>`, answered on
    `heddle.task-results` (docs/remote.md). Infrastructure errors are retried (3 attempts
    unless `retry` says otherwise); task errors are not, unless `retry.errors` has `task`."""

    kind: Literal["remote"]
    capability: str = Field(pattern=CAPABILITY)
    input: dict[str, Any] = Field(
        default_factory=dict, description="sent to the worker; string values are templates"
    )
    output: str | None = None
    accept_edits: bool = Field(default=False, description="the worker may return graph edits")

    @property
    def retries(self) -> Retry | None:
        return self.retry or Retry(attempts=3, backoff="2s", errors=["retryable", "timeout"])


class ToolNode(_Node):
    """Call one registered tool with `arguments` (string values are templates), checked
    against the tool's schema; `output` gets what it returns (JSON when it is JSON)."""

    kind: Literal["tool"]
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None


class SubworkflowNode(_Node):
    """Start a child run of a published workflow (the latest version unless `version` is
    set) with `input` (string values are templates) and wait for it: the node completes
    with the child's output, or fails with the child's error."""

    kind: Literal["subworkflow"]
    workflow: str = Field(pattern=NAME_PATTERN)
    version: int | None = Field(default=None, ge=1)
    input: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None


class ExtractNode(_Node):
    """Structured fields from a document through a model: `document` (a template) gives a
    document id (`doc_...`, from `POST /v1/documents`) or the text itself; the model is
    asked for JSON matching `schema`; `output` gets the fields that match and the fields
    that did not, each with the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["extract"]
    model: str = Field(pattern=r"^[a-z][a-z0-9_-]*:.+$", description="provider:model")
    document: str = Field(description="a template: a document id or the text")
    fields_schema: dict[str, Any] = Field(alias="schema", description="a JSON schema (object)")
    instructions: str = Field(default="", description="a template, added to the prompt")
    max_chars: int = Field(default=100_000, ge=100, le=2_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(default=None, pattern=CREDENTIAL_ID)
    output: str | None = None


CHAT_ACTIONS = ("snooze", "skip", "escalate", "schedule")


class ChatBranch(BaseModel):
    """An option a person picks in a chat (`branch: NAME` on a message): a fixed `reply`,
    an LLM reply to its own `prompt`, or a saved `action` on the run (snooze: pause until
    `until`; skip: skip the chat node; escalate: give its task to `assignee`/`role` with
    `priority`; schedule: resume the paused run `at` a time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(default="", max_length=200)
    reply: str | None = Field(default=None, description="a fixed reply (a template)")
    prompt: str | None = Field(default=None, description="an LLM reply to this prompt")
    model: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]*:.+$")
    action: Literal["snooze", "skip", "escalate", "schedule"] | None = None
    until: str | None = Field(default=None, description="snooze: ISO 8601 time or duration")
    at: str | None = Field(default=None, description="schedule: ISO 8601 time or duration")
    assignee: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, max_length=100)
    priority: int | None = Field(default=None, ge=0, le=100)
    reason: str = Field(default="", max_length=1000)


class ChatNode(_Node):
    """A conversation with a person in a thread bound to this node: each user message gets
    a reply from `model` with `system` (a template over the run) as context; `branches` are
    the options a person can pick. The node completes when the thread is completed
    (`CompleteThread`); `output` gets the transcript and the data sent with it."""

    kind: Literal["chat"]
    model: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_-]*:.+$", description="provider:model"
    )
    system: str | None = Field(default=None, description="a template over the run")
    greeting: str | None = Field(default=None, description="the first message (a template)")
    title: str = Field(default="", max_length=500, description="a template")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(default=None, pattern=CREDENTIAL_ID)
    stream: bool = Field(default=True, description="publish token deltas to heddle.tokens")
    branches: dict[str, ChatBranch] = Field(default_factory=dict)
    assignee: str | None = Field(default=None, description="a template; who chats")
    role: str | None = Field(default=None, max_length=100)
    priority: int = Field(default=50, ge=0, le=100)
    output: str | None = None


class Budget(BaseModel):
    """Limits per run; crossing one pauses the run and asks for an approval to go on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_steps: int | None = Field(default=None, gt=0, description="nodes started")
    approver_role: str | None = Field(default=None, max_length=100)


Node = Annotated[
    LlmNode
    | AgentNode
    | SwitchNode
    | SetNode
    | ParallelNode
    | JoinNode
    | MapNode
    | HumanNode
    | WaitNode
    | RemoteNode
    | ToolNode
    | SubworkflowNode
    | ExtractNode
    | ChatNode,
    Field(discriminator="kind"),
]


class WorkflowSpec(BaseModel):
    """A workflow definition as written in YAML or JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    inputs: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    start: str
    nodes: dict[str, Node] = Field(min_length=1)
    output: str | None = Field(default=None, description="CEL expression for the run's output")
    budget: Budget | None = None
    deadline: str | None = Field(
        default=None, pattern=DURATION, description="a run not finished by then fails"
    )
    tools: dict[str, HttpTool] = Field(
        default_factory=dict, description="HTTP tools for this workflow's tool and agent nodes"
    )

    def tool(self, name: str) -> ToolDefinition | None:
        """A tool nodes may use: one this definition declares, or a registered one."""
        declared = self.tools.get(name)
        return declared.definition(name) if declared else TOOLS.get(name)

    def known_tools(self) -> str:
        return ", ".join(sorted({*TOOLS.names(), *self.tools}))

    @field_validator("nodes")
    @classmethod
    def _node_ids_are_names(cls, nodes: dict[str, Node]) -> dict[str, Node]:
        for node_id in nodes:
            if not NODE_ID.match(node_id):
                raise ValueError(f"node id {node_id!r} must match {NODE_ID.pattern}")
        return nodes

    @cached_property
    def parents(self) -> dict[str, list[str]]:
        """For each node, the nodes with an edge into it, in definition order (loop edges
        do not count: a node waits for its parents, never for a later node)."""
        parents: dict[str, list[str]] = {node_id: [] for node_id in self.nodes}
        for node_id, node in self.nodes.items():
            for target in forward_targets(node):
                if target in parents:
                    parents[target].append(node_id)
        return parents

    def canonical(self) -> dict[str, Any]:
        """The JSON form that the content hash is computed from."""
        return self.model_dump(mode="json", exclude_defaults=True, by_alias=True)

    def content_hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


NODE_KINDS = (
    "llm",
    "agent",
    "switch",
    "set",
    "parallel",
    "join",
    "map",
    "human",
    "wait",
    "remote",
    "tool",
    "subworkflow",
    "extract",
    "chat",
)


def parse_definition(document: Any) -> WorkflowSpec:
    """Validate a definition document; raises DefinitionInvalid listing every problem."""
    try:
        spec = WorkflowSpec.model_validate(document)
    except ValidationError as error:
        raise DefinitionInvalid([_problem_from(e) for e in _next_errors(error.errors())]) from None
    problems = _graph_problems(spec) + _expression_problems(spec)
    if problems:
        raise DefinitionInvalid(problems)
    return spec


NEXT_BRANCHES = ("str", "list[Edge]")
"""How pydantic names the two forms of `next` in an error's location."""


def _next_errors(errors: list[Any]) -> list[Any]:
    """The errors of a `next` as one form of it: a list's problems without the complaint
    that it is no string; for anything else, one error that names both forms."""
    kept, named = [], set()
    for error in errors:
        loc = error["loc"]
        branch = next((i for i, part in enumerate(loc) if part in NEXT_BRANCHES), None)
        if branch is None:
            kept.append(error)
        elif isinstance(error["input"], list) and loc[branch] == "str":
            continue
        elif isinstance(error["input"], (list, str)) or len(loc) > branch + 1:
            kept.append(error)
        elif loc[:branch] not in named:
            named.add(loc[:branch])
            kept.append({**error, "loc": loc[:branch], "msg": "give a node id or a list of edges"})
    return kept


def _problem_from(error: Any) -> Problem:
    path = ""
    for part in error["loc"]:
        if part in NEXT_BRANCHES:
            continue  # pydantic's name for a form of `next`
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in NODE_KINDS and path.startswith("nodes."):
            continue  # pydantic's discriminator tag, not part of the user's document
        else:
            path += f".{part}" if path else str(part)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path += ".kind"
    return Problem(path, error["msg"])


def _graph_problems(spec: WorkflowSpec) -> list[Problem]:
    problems: list[Problem] = []
    if spec.start not in spec.nodes:
        problems.append(Problem("start", f"unknown node {spec.start!r}"))
    for node_id, node in spec.nodes.items():
        if isinstance(node, SwitchNode):
            for index, case in enumerate(node.cases):
                if case.next not in spec.nodes:
                    problems.append(
                        Problem(f"nodes.{node_id}.cases[{index}].next", _unknown(case.next, spec))
                    )
            if node.default and node.default not in spec.nodes:
                problems.append(Problem(f"nodes.{node_id}.default", _unknown(node.default, spec)))
        if isinstance(node, ParallelNode):
            for index, branch in enumerate(node.branches):
                if branch not in spec.nodes:
                    problems.append(
                        Problem(f"nodes.{node_id}.branches[{index}]", _unknown(branch, spec))
                    )
            if node.next:
                problems.append(
                    Problem(
                        f"nodes.{node_id}.next", "a parallel node goes on through its branches only"
                    )
                )
        elif isinstance(node.next, str) and node.next not in spec.nodes:
            problems.append(Problem(f"nodes.{node_id}.next", _unknown(node.next, spec)))
        if node.on_error and node.on_error not in spec.nodes:
            problems.append(Problem(f"nodes.{node_id}.on_error", _unknown(node.on_error, spec)))
        if (
            isinstance(node, WaitNode)
            and sum(x is not None for x in (node.for_, node.until, node.event)) != 1
        ):
            problems.append(Problem(f"nodes.{node_id}", "a wait needs one of for, until and event"))
    problems += edge_problems(spec)
    if problems:
        return problems
    for node_id, node in spec.nodes.items():
        parents = spec.parents[node_id]
        if isinstance(node, JoinNode) and len(parents) < 2:
            problems.append(
                Problem(
                    f"nodes.{node_id}",
                    f"a join needs at least two incoming edges; it has {len(parents)}"
                    + (f" (from {', '.join(parents)})" if parents else ""),
                )
            )
    for node_id in spec.nodes:
        if node_id != spec.start and not spec.parents[node_id]:
            problems.append(Problem(f"nodes.{node_id}", f"unreachable from start {spec.start!r}"))
    if spec.start in spec.nodes and spec.parents[spec.start]:
        problems.append(
            Problem("start", f"{spec.start!r} has incoming edges; start must have none")
        )
    problems += loop_problems(spec)
    cycle = _find_cycle(spec)
    if cycle:
        problems.append(
            Problem(
                f"nodes.{cycle[0]}",
                "cycle: " + " -> ".join(cycle)
                + "; only a loop edge (loop: {max_iterations: N}) may close a cycle",
            )
        )
    return problems


def _unknown(target: str, spec: WorkflowSpec) -> str:
    return f"unknown node {target!r} (known: {', '.join(spec.nodes)})"


def _find_cycle(spec: WorkflowSpec) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node_id: str) -> list[str] | None:
        state[node_id] = 1
        stack.append(node_id)
        for target in forward_targets(spec.nodes[node_id]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node_id] = 2
        return None

    for node_id in spec.nodes:
        if node_id not in state:
            found = visit(node_id)
            if found:
                return found
    return None


def _expression_problems(spec: WorkflowSpec) -> list[Problem]:
    problems: list[Problem] = []
    problems += _schema_problems(spec.inputs, "inputs")
    problems += _http_tool_problems(spec)
    if spec.output:
        problems += _check(compile_expression, spec.output, "output")
    for node_id, node in spec.nodes.items():
        at = f"nodes.{node_id}"
        if isinstance(node, _ModelNode):
            problems += _check(parse_template, node.prompt, f"{at}.prompt")
            if node.system:
                problems += _check(parse_template, node.system, f"{at}.system")
        if isinstance(node, AgentNode):
            for index, tool in enumerate(node.tools):
                if spec.tool(tool) is None:
                    known = spec.known_tools()
                    problems.append(
                        Problem(f"{at}.tools[{index}]", f"unknown tool {tool!r} (known: {known})")
                    )
        elif isinstance(node, SwitchNode):
            for index, case in enumerate(node.cases):
                problems += _check(compile_expression, case.when, f"{at}.cases[{index}].when")
        elif isinstance(node, HumanNode):
            if node.value:
                problems += _check(compile_expression, node.value, f"{at}.value")
            for field in ("title", "instructions", "assignee"):
                if getattr(node, field):
                    problems += _check(parse_template, getattr(node, field), f"{at}.{field}")
            try:
                jsonschema.Draft202012Validator.check_schema(node.form)
            except jsonschema.SchemaError as error:
                problems.append(Problem(f"{at}.form", f"not a valid JSON schema: {error.message}"))
        elif isinstance(node, ToolNode):
            if node.tool in spec.tools and spec.tools[node.tool].workflow:
                problems.append(Problem(f"{at}.tool", "a workflow tool is for agent nodes: "
                                        "use a subworkflow node to run a workflow as a step"))
            elif spec.tool(node.tool) is None:
                known = spec.known_tools()
                problems.append(
                    Problem(f"{at}.tool", f"unknown tool {node.tool!r} (known: {known})")
                )
            for name, value in node.arguments.items():
                if isinstance(value, str):
                    problems += _check(parse_template, value, f"{at}.arguments.{name}")
        elif isinstance(node, RemoteNode | SubworkflowNode):
            for name, value in node.input.items():
                if isinstance(value, str):
                    problems += _check(parse_template, value, f"{at}.input.{name}")
        elif isinstance(node, WaitNode):
            for field in ("until", "event"):
                if getattr(node, field):
                    problems += _check(compile_expression, getattr(node, field), f"{at}.{field}")
        elif isinstance(node, ChatNode):
            problems += _chat_problems(node, at)
        elif isinstance(node, MapNode):
            problems += _check(compile_expression, node.items, f"{at}.items")
            problems += _check(parse_template, node.do.prompt, f"{at}.do.prompt")
            if node.do.system:
                problems += _check(parse_template, node.do.system, f"{at}.do.system")
        elif isinstance(node, SetNode):
            for name, value in node.vars.items():
                if isinstance(value, str):
                    problems += _check(parse_template, value, f"{at}.vars.{name}")
        elif isinstance(node, ExtractNode):
            problems += _check(parse_template, node.document, f"{at}.document")
            problems += _check(parse_template, node.instructions, f"{at}.instructions")
            problems += _schema_problems(node.fields_schema, f"{at}.schema")
            if node.fields_schema.get("type") != "object":
                problems.append(Problem(f"{at}.schema.type", "must be object: fields by name"))
    return problems


def _http_tool_problems(spec: WorkflowSpec) -> list[Problem]:
    problems = []
    for name, tool in spec.tools.items():
        at = f"tools.{name}"
        if not re.match(TOOL_NAME, name):
            problems.append(Problem(at, f"a tool name must match {TOOL_NAME}"))
        if TOOLS.get(name) is not None:
            problems.append(Problem(at, f"{name!r} is a registered tool: choose another name"))
        for field, message in tool_problems(name, tool, HTTP_HOSTS.hosts):
            problems.append(Problem(f"{at}.{field}" if field else at, message))
        templates = {"url": tool.url or "", **{f"headers.{k}": v for k, v in tool.headers.items()}}
        templates |= {f"body.{k}": v for k, v in (tool.body or {}).items() if isinstance(v, str)}
        for field, source in templates.items():
            problems += _check(parse_template, source, f"{at}.{field}")
    return problems


def _schema_problems(schema: dict[str, Any], path: str) -> list[Problem]:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        return [Problem(f"{path}{where}", f"not a valid JSON schema: {error.message}")]
    return []


def _chat_problems(node: ChatNode, at: str) -> list[Problem]:
    problems: list[Problem] = []
    for field in ("system", "greeting", "title", "assignee"):
        if getattr(node, field):
            problems += _check(parse_template, getattr(node, field), f"{at}.{field}")
    for name, branch in node.branches.items():
        where = f"{at}.branches.{name}"
        if not NODE_ID.match(name):
            problems.append(Problem(where, f"a branch name must match {NODE_ID.pattern}"))
        given = [f for f in ("reply", "prompt", "action") if getattr(branch, f) is not None]
        if len(given) != 1:
            problems.append(
                Problem(where, "a branch needs exactly one of reply, prompt and action")
            )
            continue
        if branch.reply is not None:
            problems += _check(parse_template, branch.reply, f"{where}.reply")
        if branch.prompt is not None:
            problems += _check(parse_template, branch.prompt, f"{where}.prompt")
            if not (branch.model or node.model):
                problems.append(
                    Problem(f"{where}.model", "an LLM branch needs a model here or on the node")
                )
        needs = {"snooze": "until", "schedule": "at"}.get(branch.action or "")
        if needs and getattr(branch, needs) is None:
            problems.append(Problem(f"{where}.{needs}", f"a {branch.action} branch needs {needs}"))
        if branch.action == "escalate" and not (branch.assignee or branch.role or branch.priority):
            problems.append(
                Problem(where, "an escalate branch needs an assignee, a role or a priority")
            )
    return problems


def input_problems(schema: dict[str, Any], value: Any) -> list[str]:
    """Every way `value` fails the workflow's `inputs` schema, each with its path."""
    return schema_problems(schema, value, "input")


def definition_id(tenant: str, name: str) -> UUID:
    """The aggregate id of a tenant's workflow, stable across versions."""
    return uuid5(HEDDLE_NAMESPACE, f"workflow/{tenant}/{name}")


class WorkflowDefinition(Aggregate):
    """A named workflow of one tenant and its immutable published versions."""

    @staticmethod
    def create_id(tenant: str, name: str) -> UUID:
        return definition_id(tenant, name)

    @event("Created")
    def __init__(self, tenant: str, name: str) -> None:
        self.tenant = tenant
        self.name = name
        self.versions: list[dict[str, Any]] = []

    def publish(self, spec: WorkflowSpec, actor: str) -> int:
        """Publish `spec` as a new version, or return the latest if it is unchanged."""
        if spec.name != self.name:
            raise DefinitionInvalid([Problem("name", f"must be {self.name!r} to publish here")])
        content_hash = spec.content_hash()
        if self.versions and self.versions[-1]["content_hash"] == content_hash:
            return int(self.versions[-1]["version"])
        self._version_published(
            self.tenant, len(self.versions) + 1, content_hash, spec.canonical(), actor
        )
        return len(self.versions)

    @event("VersionPublished")
    def _version_published(
        self, tenant: str, number: int, content_hash: str, spec: dict[str, Any], actor: str
    ) -> None:
        self.versions.append(
            {"version": number, "content_hash": content_hash, "spec": spec, "actor": actor}
        )

    def get_version(self, number: int | None) -> dict[str, Any] | None:
        """A published version by number, or the latest when `number` is None."""
        if not self.versions:
            return None
        if number is None:
            return self.versions[-1]
        if 1 <= number <= len(self.versions):
            return self.versions[number - 1]
        return None
