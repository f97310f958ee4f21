"""Tools: what the tools of `agent` and `tool` nodes do, run by the worker (their
declarations: `domain/tools.py`), and the `tool` nodes waiting for theirs.

A tool is a Python function (plain, run in a thread, or async) of its already validated
arguments, returning text or JSON-able data, within a time limit. A tool that raises or
runs out of time answers the model with the error instead: the model may try again,
within the node's step cap.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import operator
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.errors import NodeNotRunning
from domain.llm import ToolCall, ToolDefinition
from domain.runs import TOOL_NODE, WorkflowRun
from domain.tools import CALCULATOR, CURRENT_TIME, TOOLS, ToolCatalogue
from handlers.reactions.events import waiting_nodes
from handlers.unit_of_work import UnitOfWork

ToolFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]


class ToolError(Exception):
    """A tool could not do what it was asked; the message goes back to the model."""


class ToolRegistry:
    """Tool functions by name; registering one also declares it for definitions."""

    def __init__(self, catalogue: ToolCatalogue = TOOLS, timeout_seconds: float = 30.0) -> None:
        self.catalogue = catalogue
        self.timeout_seconds = timeout_seconds
        self._functions: dict[str, ToolFunction] = {}

    def register(self, definition: ToolDefinition, function: ToolFunction) -> None:
        self.catalogue.declare(definition)
        self._functions[definition.name] = function

    def names(self) -> list[str]:
        return sorted(self._functions)

    async def run(self, call: ToolCall, key: str | None = None) -> tuple[bool, str]:
        """(ok, content for the model). Arguments were validated by the run already; a
        registered tool runs in this process, so it takes no idempotency `key`."""
        function = self._functions.get(call.name)
        if function is None:
            return False, f"error: tool {call.name!r} is not available in this worker"
        try:
            if inspect.iscoroutinefunction(function):
                running = function(**call.arguments)
            else:  # off the event loop, which the worker's other calls share
                running = asyncio.to_thread(function, **call.arguments)
            value = await asyncio.wait_for(running, self.timeout_seconds)
        except TimeoutError:
            return False, f"error: {call.name} took longer than {self.timeout_seconds:g} s"
        except ToolError as error:
            return False, f"error: {error}"
        except Exception as error:
            return False, f"error: {call.name} failed: {type(error).__name__}: {error}"
        return True, value if isinstance(value, str) else json.dumps(value)


_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def calculate(expression: str) -> str:
    """Arithmetic on numbers only, by walking the syntax tree: nothing is evaluated."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    value = _arithmetic(tree.body)
    return str(int(value) if isinstance(value, float) and value.is_integer() else value)


def _arithmetic(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise ToolError("only numbers are allowed, not booleans")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ToolError("exponent too large (at most 100)")
        try:
            return _OPERATORS[type(node.op)](left, right)  # type: ignore[no-any-return]
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_arithmetic(node.operand))  # type: ignore[no-any-return]
    raise ToolError(f"only numbers and + - * / // % ** ( ) are allowed, not {ast.unparse(node)!r}")


def current_time() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def builtin_tools() -> ToolRegistry:
    """A registry with the tools Heddle ships."""
    registry = ToolRegistry()
    registry.register(CALCULATOR, calculate)
    registry.register(CURRENT_TIME, current_time)
    return registry


@dataclass(frozen=True, slots=True)
class ToolNodeCall:
    """The tool a started `tool` node waits for."""

    run_id: UUID
    node_id: str
    attempt: int
    call: ToolCall


def tool_nodes_due(events: list[dict[str, Any]], uow: UnitOfWork) -> list[ToolNodeCall]:
    """The tools that started `tool` nodes wait for, once each."""
    return [
        ToolNodeCall(
            run.id,
            data["node_id"],
            data["attempt"],
            ToolCall(
                id=f"{data['node_id']}:{data['attempt']}",
                name=data["input"]["tool"],
                arguments=data["input"]["arguments"],
            ),
        )
        for run, data, _ in waiting_nodes(events, uow, {TOOL_NODE})
    ]


def record_tool_nodes(
    results: list[tuple[ToolNodeCall, tuple[bool, str]]], uow: UnitOfWork
) -> None:
    """Record what each tool returned in its run."""
    for due, (ok, content) in results:
        run = uow.get(due.run_id, WorkflowRun)
        if run is not None:
            with suppress(NodeNotRunning):
                run.complete_tool_node(due.node_id, due.attempt, ok, content, now=datetime.now(UTC))
