"""Structured outputs: an `llm` node with an `output_schema` is asked for JSON that matches
it (in its system message, and natively where the provider has a mode for it), its answer
is always checked, and an answer that does not match is shown its problems and asked again,
up to the node's `max_repairs`; the node's output is the parsed value."""

from __future__ import annotations

import json
import re
from typing import Any

from domain.schemas import schema_problems

FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
"""A model's answer wrapped in a Markdown code block."""


def output_instructions(schema: dict[str, Any]) -> str:
    """What the system message asks for."""
    return (
        "Answer with one JSON value only, no prose and no code block, that matches this "
        f"JSON Schema:\n{json.dumps(schema, sort_keys=True)}"
    )


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI-style native mode (OpenAI, and the servers that speak its API)."""
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def parsed_answer(schema: dict[str, Any], answer: str) -> tuple[Any, list[str]]:
    """The answer's JSON value and every way it fails `schema` (none: it is the output)."""
    text = answer.strip()
    if fenced := FENCE.match(text):
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, [f"$: not JSON ({error.msg} at line {error.lineno} column {error.colno})"]
    return value, schema_problems(schema, value, "$")


def repair_prompt(problems: list[str]) -> str:
    """What the model is told when its answer did not match."""
    listed = "\n".join(f"- {problem}" for problem in problems)
    return (
        f"Your answer does not match the required JSON Schema:\n{listed}\n"
        "Answer again with the corrected JSON only."
    )
