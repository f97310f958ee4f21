"""The tools an `agent` node may offer its model: names, descriptions, JSON-schema parameters.

Only the declarations live here (pure data, checked when a definition is published and
copied into the request a node records); what a tool does runs in the worker
(`handlers/reactions/tools.py`). Arguments are checked against a tool's schema before it runs.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from domain.llm import ToolDefinition
from domain.schemas import schema_problems


class ToolCatalogue:
    """The declared tools by name."""

    def __init__(self, definitions: list[ToolDefinition]) -> None:
        self._definitions = {d.name: d for d in definitions}

    def declare(self, definition: ToolDefinition) -> None:
        jsonschema.Draft202012Validator.check_schema(definition.parameters)
        self._definitions[definition.name] = definition

    def get(self, name: str) -> ToolDefinition | None:
        return self._definitions.get(name)

    def names(self) -> list[str]:
        return sorted(self._definitions)


CALCULATOR = ToolDefinition(
    name="calculator",
    description="Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 200}},
        "required": ["expression"],
        "additionalProperties": False,
    },
)
CURRENT_TIME = ToolDefinition(
    name="current_time",
    description="The current date and time in UTC, ISO 8601.",
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
)
TOOLS = ToolCatalogue([CALCULATOR, CURRENT_TIME])


def argument_problems(definition: ToolDefinition, arguments: dict[str, Any]) -> list[str]:
    """Every way `arguments` fail the tool's parameter schema, each with its path."""
    return schema_problems(definition.parameters, arguments, "arguments")
