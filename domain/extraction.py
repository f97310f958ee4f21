"""The `extract` node's rules: the model request for a document's text, and the fields of
the model's answer checked against the node's schema (pure: the worker fetches the text).

A field that fails the schema is reported with its value and the reason, never dropped
silently; the fields that pass are kept.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from domain.definitions import ExtractNode
from domain.llm import LlmRequest, Message
from domain.structured import FENCE

DOCUMENT_ID = re.compile(r"^doc_[0-9a-f]{32}$")
SYSTEM = (
    "You extract structured data from documents. Answer with one JSON object and nothing "
    "else, matching this JSON schema:\n{schema}\nLeave out a field the document does not "
    "give; never invent values."
)


def is_document_id(value: str) -> bool:
    """Whether a rendered `document` names an uploaded document rather than giving text."""
    return bool(DOCUMENT_ID.match(value.strip()))


def extraction_request(node: ExtractNode, instructions: str, text: str) -> LlmRequest:
    """What the model is asked: the schema, the instructions, the text (cut at `max_chars`)."""
    schema = json.dumps(node.fields_schema, sort_keys=True)
    prompt = (instructions.strip() + "\n\n" if instructions.strip() else "") + "Document:\n"
    return LlmRequest(
        model=node.model,
        messages=[
            Message(role="system", content=SYSTEM.format(schema=schema)),
            Message(role="user", content=prompt + text[: node.max_chars]),
        ],
        temperature=node.temperature,
        max_tokens=node.max_tokens,
        options=node.options,
        credential=node.credential,
    )


def parse_fields(
    schema: dict[str, Any], answer: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The model's answer as (fields that match `schema`, fields that do not: each with its
    `field`, `value` and `reason`). Raises ValueError when the answer is not a JSON object."""
    text = answer.strip()
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"the model's answer is not JSON ({error}): {answer[:200]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the model's answer is JSON but not an object: {answer[:200]!r}")
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    invalid: dict[str, dict[str, Any]] = {}
    for problem in validator.iter_errors(value):
        if problem.path:
            field = str(problem.path[0])
            invalid.setdefault(field, {"field": field, "value": value.get(field), "reason": ""})
            reason = problem.message
            if len(problem.path) > 1:
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem.path)
                reason = f"{where.lstrip('.')}: {reason}"
            invalid[field]["reason"] = "; ".join(filter(None, [invalid[field]["reason"], reason]))
        elif problem.validator == "required":
            for field in problem.validator_value:
                if field not in value:
                    invalid[field] = {"field": field, "value": None, "reason": "missing (required)"}
        elif problem.validator == "additionalProperties":
            allowed = set(schema.get("properties", {}))
            for field in value:
                if field not in allowed:
                    invalid[field] = {
                        "field": field,
                        "value": value[field],
                        "reason": "not a field of the schema",
                    }
        else:
            invalid["(document)"] = {"field": None, "value": None, "reason": problem.message}
    fields = {name: field for name, field in value.items() if name not in invalid}
    return fields, sorted(invalid.values(), key=lambda f: str(f["field"]))
