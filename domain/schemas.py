"""JSON Schema checks shared by run inputs and tool arguments, and the bound on how
deeply JSON values nest."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema

MAX_NESTING = 64
"""How many levels of objects and lists a command payload or a definition may nest:
more would only exhaust Python's recursion (in parsing, copying, rendering) later on."""


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_json))


def schema_problems(schema: dict[str, Any], value: Any, root: str) -> list[str]:
    """Every way `value` fails `schema` (draft 2020-12), each as `root<path>: message`."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path))):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        problems.append(f"{root}{where}: {_shortened(error.message, error.instance)}")
    return problems


def nesting_problem(value: Any, limit: int = MAX_NESTING) -> str | None:
    """What is wrong when `value` nests objects and lists deeper than `limit`, else None.
    Looks without recursing, so a value of any depth is safe to check."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return f"nested deeper than {limit} levels of objects and lists: flatten it"
        stack.extend((child, depth + 1) for child in children)
    return None


QUOTED = 200
"""How many characters of a value a problem quotes."""


def _shortened(message: str, instance: Any) -> str:
    """The message with a long value it quotes cut short (a 1 MB string stays readable)."""
    quoted = repr(instance)
    if len(quoted) <= QUOTED or quoted not in message:
        return message
    return message.replace(quoted, f"{quoted[:QUOTED]}… ({len(quoted)} characters)")
