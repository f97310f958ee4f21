"""Every check of a definition beyond its shape: the graph, the edges and loops, the
expressions and templates, the HTTP tools, the chat branches. Each returns problems
with their paths; `parse_definition` (domain/definitions/parsing.py) gathers them."""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from domain.actions import action_problems, prompt_problems
from domain.definitions.graph import find_cycle, reachable
from domain.definitions.nodes import (
    NODE_ID,
    AgentNode,
    ChatNode,
    ExtractNode,
    HumanNode,
    JoinNode,
    LlmNode,
    MapNode,
    ModelNode,
    ParallelNode,
    RemoteNode,
    SetNode,
    SubworkflowNode,
    SwitchNode,
    ToolNode,
    WaitNode,
)
from domain.definitions.spec import WorkflowSpec
from domain.errors import Problem, problems_of
from domain.expressions import compile_expression
from domain.http_tools import TOOL_NAME, tool_problems
from domain.schemas import schema_problems
from domain.templates import parse_template
from domain.tools import TOOLS


def graph_problems(spec: WorkflowSpec) -> list[Problem]:
    """Unknown targets, joins with one way in, unreachable nodes, loops and cycles."""
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
    cycle = find_cycle(spec)
    if cycle:
        problems.append(
            Problem(
                f"nodes.{cycle[0]}",
                "cycle: "
                + " -> ".join(cycle)
                + "; only a loop edge (loop: {max_iterations: N}) may close a cycle",
            )
        )
    return problems


def _unknown(target: str, spec: WorkflowSpec) -> str:
    return f"unknown node {target!r} (known: {', '.join(spec.nodes)})"


def expression_problems(
    spec: WorkflowSpec, allowed_hosts: frozenset[str] | None = None
) -> list[Problem]:
    """The CEL expressions, templates, schemas, tools and actions of every node."""
    problems: list[Problem] = []
    problems += json_schema_problems(spec.inputs, "inputs")
    problems += http_tool_problems(spec, allowed_hosts)
    if spec.output:
        problems += problems_of(compile_expression, spec.output, "output")
    for node_id, node in spec.nodes.items():
        at = f"nodes.{node_id}"
        problems += action_problems(node_id, node)
        if isinstance(node, ModelNode):
            problems += problems_of(parse_template, node.prompt, f"{at}.prompt")
            if node.system:
                problems += problems_of(parse_template, node.system, f"{at}.system")
        if isinstance(node, LlmNode) and node.output_schema is not None:
            problems += json_schema_problems(node.output_schema, f"{at}.output_schema")
        if isinstance(node, AgentNode):
            for index, tool in enumerate(node.tools):
                if spec.tool(tool) is None:
                    known = spec.known_tools()
                    problems.append(
                        Problem(f"{at}.tools[{index}]", f"unknown tool {tool!r} (known: {known})")
                    )
        elif isinstance(node, SwitchNode):
            for index, case in enumerate(node.cases):
                problems += problems_of(compile_expression, case.when, f"{at}.cases[{index}].when")
        elif isinstance(node, HumanNode):
            if node.value:
                problems += problems_of(compile_expression, node.value, f"{at}.value")
            for field in ("title", "instructions", "assignee"):
                if getattr(node, field):
                    problems += problems_of(parse_template, getattr(node, field), f"{at}.{field}")
            try:
                jsonschema.Draft202012Validator.check_schema(node.form)
            except jsonschema.SchemaError as error:
                problems.append(Problem(f"{at}.form", f"not a valid JSON schema: {error.message}"))
        elif isinstance(node, ToolNode):
            if node.tool in spec.tools and spec.tools[node.tool].workflow:
                problems.append(
                    Problem(
                        f"{at}.tool",
                        "a workflow tool is for agent nodes: "
                        "use a subworkflow node to run a workflow as a step",
                    )
                )
            elif spec.tool(node.tool) is None:
                known = spec.known_tools()
                problems.append(
                    Problem(f"{at}.tool", f"unknown tool {node.tool!r} (known: {known})")
                )
            for name, value in node.arguments.items():
                if isinstance(value, str):
                    problems += problems_of(parse_template, value, f"{at}.arguments.{name}")
        elif isinstance(node, RemoteNode | SubworkflowNode):
            for name, value in node.input.items():
                if isinstance(value, str):
                    problems += problems_of(parse_template, value, f"{at}.input.{name}")
        elif isinstance(node, WaitNode):
            for field in ("until", "event"):
                if getattr(node, field):
                    problems += problems_of(
                        compile_expression, getattr(node, field), f"{at}.{field}"
                    )
        elif isinstance(node, ChatNode):
            problems += chat_problems(node, at)
        elif isinstance(node, MapNode):
            problems += problems_of(compile_expression, node.items, f"{at}.items")
            for phase in ("on_enter", "on_exit"):
                if getattr(node.do, phase):
                    problems.append(
                        Problem(f"{at}.do.{phase}", f"put {phase} on the map node, not in do")
                    )
            problems += problems_of(parse_template, node.do.prompt, f"{at}.do.prompt")
            if node.do.system:
                problems += problems_of(parse_template, node.do.system, f"{at}.do.system")
        elif isinstance(node, SetNode):
            for name, value in node.vars.items():
                if isinstance(value, str):
                    problems += problems_of(parse_template, value, f"{at}.vars.{name}")
        elif isinstance(node, ExtractNode):
            problems += problems_of(parse_template, node.document, f"{at}.document")
            problems += problems_of(parse_template, node.instructions, f"{at}.instructions")
            problems += json_schema_problems(node.fields_schema, f"{at}.schema")
            if node.fields_schema.get("type") != "object":
                problems.append(Problem(f"{at}.schema.type", "must be object: fields by name"))
    return problems


def http_tool_problems(
    spec: WorkflowSpec, allowed_hosts: frozenset[str] | None = None
) -> list[Problem]:
    """The declared HTTP tools: names, templates, and their hosts against `allowed_hosts`
    (not checked when None: a run's pinned graph was checked when it was published)."""
    problems = []
    for name, tool in spec.tools.items():
        at = f"tools.{name}"
        if not re.match(TOOL_NAME, name):
            problems.append(Problem(at, f"a tool name must match {TOOL_NAME}"))
        if TOOLS.get(name) is not None:
            problems.append(Problem(at, f"{name!r} is a registered tool: choose another name"))
        for field, message in tool_problems(name, tool, allowed_hosts):
            problems.append(Problem(f"{at}.{field}" if field else at, message))
        templates = {"url": tool.url or "", **{f"headers.{k}": v for k, v in tool.headers.items()}}
        templates |= {f"body.{k}": v for k, v in (tool.body or {}).items() if isinstance(v, str)}
        for field, source in templates.items():
            problems += problems_of(parse_template, source, f"{at}.{field}")
    return problems


def json_schema_problems(schema: dict[str, Any], path: str) -> list[Problem]:
    """`schema` is no valid JSON schema: where and why."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        return [Problem(f"{path}{where}", f"not a valid JSON schema: {error.message}")]
    return []


def chat_problems(node: ChatNode, at: str) -> list[Problem]:
    """A chat node's templates and branches (one of reply, prompt and action each)."""
    problems: list[Problem] = []
    for field in ("system", "greeting", "title", "assignee"):
        if getattr(node, field):
            problems += problems_of(parse_template, getattr(node, field), f"{at}.{field}")
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
            problems += problems_of(parse_template, branch.reply, f"{where}.reply")
        if branch.prompt is not None:
            problems += problems_of(parse_template, branch.prompt, f"{where}.prompt")
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


def edge_problems(spec: WorkflowSpec) -> list[Problem]:
    """Every problem of the edge lists of `spec`, each with its path: unknown or repeated
    targets, invalid CEL and templates, loop edges with a trigger, a switch with a `next`."""
    problems: list[Problem] = []
    for node_id, node in spec.nodes.items():
        next = getattr(node, "next", None)
        if node.kind == "switch" and next is not None:
            message = "a switch goes on through its cases and default only"
            problems.append(Problem(f"nodes.{node_id}.next", message))
            continue
        if not isinstance(next, list):
            continue
        seen: set[str] = set()
        for index, edge in enumerate(next):
            at = f"nodes.{node_id}.next[{index}]"
            if edge.to not in spec.nodes:
                known = ", ".join(spec.nodes)
                problems.append(Problem(f"{at}.to", f"unknown node {edge.to!r} (known: {known})"))
            elif edge.to in seen:
                problems.append(
                    Problem(f"{at}.to", f"{node_id!r} has an edge to {edge.to!r} already")
                )
            seen.add(edge.to)
            if edge.when:
                problems += problems_of(compile_expression, edge.when, f"{at}.when")
            if edge.trigger and edge.trigger.condition:
                problems += problems_of(
                    compile_expression, edge.trigger.condition, f"{at}.trigger.condition"
                )
            for number, validator in enumerate(edge.validators):
                where = f"{at}.validators[{number}]"
                if validator.expression is not None:
                    problems += problems_of(
                        compile_expression, validator.expression, f"{where}.expression"
                    )
                if validator.llm is not None:
                    problems += prompt_problems(validator.llm, f"{where}.llm")
            if edge.loop and (edge.trigger or edge.validators):
                problems.append(
                    Problem(
                        at,
                        "a loop edge is decided at once when its source completes: "
                        "give it a when, not a trigger or validators",
                    )
                )
    return problems


def loop_problems(spec: WorkflowSpec) -> list[Problem]:
    """Loop edges must lead back: their target must reach their source without them."""
    problems: list[Problem] = []
    for node_id, node in spec.nodes.items():
        next = getattr(node, "next", None)
        if not isinstance(next, list):
            continue
        for index, edge in enumerate(next):
            if edge.loop and edge.to in spec.nodes and node_id not in reachable(spec, edge.to):
                problems.append(
                    Problem(
                        f"nodes.{node_id}.next[{index}].loop",
                        f"a loop edge must lead back to a node before {node_id!r}, but "
                        f"{edge.to!r} does not lead to {node_id!r}: drop loop, or point it "
                        "at an earlier node",
                    )
                )
    return problems
