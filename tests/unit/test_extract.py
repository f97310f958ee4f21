"""The `extract` node: the model is asked for JSON matching the schema; fields that fail
it are reported with the reason, the others kept; the source is recorded, not the text."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid
from domain.extraction import extraction_request, parse_fields
from domain.llm import LlmResult, Usage
from domain.runs import WorkflowRun

ROOT = Path(__file__).parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "extract.yaml").read_text())
SCHEMA = EXAMPLE["nodes"]["terms"]["schema"]


def answer(text: str) -> LlmResult:
    return LlmResult(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=10, output_tokens=5),
        model="m",
        provider="scripted",
        latency_ms=1.0,
    )


def start(contract: str) -> WorkflowRun:
    spec = parse_definition(EXAMPLE)
    run = WorkflowRun(
        run_id=uuid.uuid4(),
        tenant="default",
        actor="t",
        workflow=spec.name,
        version=1,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input={"contract": contract},
        command_id="c",
    )
    run.advance(now=datetime.now(UTC))
    return run


def test_a_field_that_fails_the_schema_is_reported_with_its_value_and_reason() -> None:
    fields, invalid = parse_fields(SCHEMA, '{"customer": "Acme", "annual_value": -5, "x": 1}')
    assert fields == {"customer": "Acme", "x": 1}
    assert invalid == [
        {"field": "annual_value", "value": -5, "reason": "-5 is less than the minimum of 0"},
        {"field": "renewal_date", "value": None, "reason": "missing (required)"},
    ]


def test_a_fenced_json_answer_is_read_and_a_non_json_answer_is_an_error() -> None:
    fields, invalid = parse_fields(
        SCHEMA,
        '```json\n{"customer": "Acme", "annual_value": 1, "renewal_date": "2027-03-01"}\n```',
    )
    assert fields["renewal_date"] == "2027-03-01"
    assert invalid == []
    with pytest.raises(ValueError, match="not JSON"):
        parse_fields(SCHEMA, "The customer is Acme.")


def test_the_run_completes_with_fields_invalid_ones_and_the_source() -> None:
    run = start("Acme Corp pays 48,000 EUR a year.")
    assert run.nodes["terms"]["input"]["document"] == "Acme Corp pays 48,000 EUR a year."
    source = {"document_id": "doc_" + "0" * 32, "pages": 2, "characters": 33}
    run.complete_extraction(
        "terms",
        1,
        source,
        answer('{"customer": "Acme Corp", "annual_value": 48000, "renewal_date": "next spring"}'),
        now=datetime.now(UTC),
    )
    terms = run.variables["terms"]
    assert terms["fields"] == {"customer": "Acme Corp", "annual_value": 48000}
    assert terms["invalid"] == [
        {"field": "renewal_date", "value": "next spring", "reason": "'next spring' is not a 'date'"}
    ]
    assert terms["source"] == source
    assert run.variables["status"] == "check renewal_date by hand"
    assert run.usage["input_tokens"] == 10


def test_an_answer_that_is_not_json_fails_the_node_with_class_task() -> None:
    run = start("text")
    run.complete_extraction(
        "terms", 1, {"document_id": None, "characters": 4}, answer("no idea"), now=datetime.now(UTC)
    )
    assert run.status == "failed"
    assert run.error["class"] == "task"
    assert run.error["message"].startswith("the model's answer is not JSON")


def test_the_request_carries_the_schema_and_the_text_cut_at_max_chars() -> None:
    node = parse_definition(
        {
            **EXAMPLE,
            "nodes": {**EXAMPLE["nodes"], "terms": {**EXAMPLE["nodes"]["terms"], "max_chars": 100}},
        }
    ).nodes["terms"]
    request = extraction_request(node, "Find the terms.", "x" * 500)
    assert '"renewal_date": {"format": "date", "type": "string"}' in request.messages[0].content
    assert request.messages[1].content == "Find the terms.\n\nDocument:\n" + "x" * 100


def test_a_schema_that_is_not_an_object_schema_is_refused_with_its_path() -> None:
    terms = {**EXAMPLE["nodes"]["terms"], "schema": {"type": "array", "items": {"type": 5}}}
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition({**EXAMPLE, "nodes": {**EXAMPLE["nodes"], "terms": terms}})
    assert [p.path for p in caught.value.problems] == [
        "nodes.terms.schema.items.type",
        "nodes.terms.schema.type",
    ]
