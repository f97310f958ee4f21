"""JSON Schema checks shared by run inputs and tool arguments."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema


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


QUOTED = 200
"""How many characters of a value a problem quotes."""


def _shortened(message: str, instance: Any) -> str:
    """The message with a long value it quotes cut short (a 1 MB string stays readable)."""
    quoted = repr(instance)
    if len(quoted) <= QUOTED or quoted not in message:
        return message
    return message.replace(quoted, f"{quoted[:QUOTED]}… ({len(quoted)} characters)")
