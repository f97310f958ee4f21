"""Forms made from JSON Schemas (a workflow's `inputs`, a task's `form`): one field per
property, the values read back into the types the schema asks for, and each problem the
schema finds shown next to its field."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

REQUIRED = re.compile(r"^'([^']+)' is a required property$")
UNREADABLE = {"json": "not JSON", "integer": "not a whole number", "number": "not a number"}


@dataclass(frozen=True)
class Field:
    """One input of a form: its name, widget (`text`, `number`, `checkbox`, `select`,
    `json`), whether it is required, its choices and its help."""

    name: str
    widget: str
    required: bool
    label: str
    help: str = ""
    choices: list[str] = field(default_factory=list)
    step: str = "any"


def fields_of(schema: dict[str, Any]) -> list[Field]:
    """The fields of an object schema's properties, the required ones first (the
    read model's JSON keeps no order of properties)."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    found = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, dict) else {}
        kind = prop.get("type")
        if "enum" in prop:
            widget = "select"
        elif kind == "boolean":
            widget = "checkbox"
        elif kind in ("number", "integer"):
            widget = "number"
        elif kind == "string" or kind is None:
            widget = "text"
        else:
            widget = "json"
        found.append(
            Field(
                name=name,
                widget=widget,
                required=name in required,
                label=str(prop.get("title") or name),
                help=str(prop.get("description") or ("JSON" if widget == "json" else "")),
                choices=[str(choice) for choice in prop.get("enum", [])],
                step="1" if kind == "integer" else "any",
            )
        )
    return sorted(found, key=lambda item: not item.required)


def values_of(fields: list[Field], schema: dict[str, Any], form: dict[str, str]) -> tuple[
    dict[str, Any], dict[str, str]
]:  # fmt: skip
    """The value of each filled-in field, typed as its property asks, and a problem for
    each field that cannot be read (JSON that does not parse, a number that is none)."""
    properties = schema.get("properties") or {}
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for item in fields:
        raw = form.get(item.name, "")
        if item.widget == "checkbox":
            values[item.name] = raw == "on"
            continue
        if raw == "":
            continue
        kind = (properties.get(item.name) or {}).get("type")
        try:
            if item.widget == "json":
                values[item.name] = json.loads(raw)
            elif kind == "integer":
                values[item.name] = int(raw)
            elif kind == "number":
                number = float(raw)
                values[item.name] = int(number) if number.is_integer() else number
            elif item.widget == "select":
                values[item.name] = _choice(properties[item.name]["enum"], raw)
            else:
                values[item.name] = raw
        except ValueError:
            reading = "json" if item.widget == "json" else str(kind)
            problems[item.name] = UNREADABLE.get(reading, "not a valid value")
    return values, problems


def _choice(choices: list[Any], raw: str) -> Any:
    return next((choice for choice in choices if str(choice) == raw), raw)


def by_field(problems: list[str], root: str = "input") -> tuple[dict[str, str], list[str]]:
    """Schema problems (`input.amount: ...`, as `domain.schemas.schema_problems` words
    them) by the field they are about, and those about the whole form."""
    fields: dict[str, str] = {}
    general = []
    for problem in problems:
        where, _, message = problem.partition(": ")
        path = where.removeprefix(root).lstrip(".")
        name = re.split(r"[.\[]", path)[0] if path else ""
        missing = REQUIRED.match(message)
        if not name and missing:
            name, message = missing[1], "required"
        if name:
            fields.setdefault(name, message)
        else:
            general.append(message)
    return fields, general
