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
        problems.append(f"{root}{where}: {error.message}")
    return problems
