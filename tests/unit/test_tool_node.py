"""The `tool` node: arguments rendered and checked against the tool's schema before the
worker runs it; the result (JSON when it is JSON) goes to the output; errors fail the node."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid
from domain.runs import WorkflowRun

INVOICE = yaml.safe_load((Path(__file__).parents[2] / "examples" / "tool.yaml").read_text())


def start(input: dict, document: dict = INVOICE) -> WorkflowRun:
    spec = parse_definition(document)
    run = WorkflowRun(
        run_id=uuid.uuid4(),
        tenant="default",
        actor="t",
        workflow=spec.name,
        version=1,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=input,
        command_id="c",
    )
    run.advance(now=datetime.now(UTC))
    return run


def test_the_tool_gets_rendered_arguments_and_its_json_result_becomes_the_output() -> None:
    run = start({"quantity": 3, "price": 2.5})
    assert run.nodes["total"]["input"] == {
        "tool": "calculator",
        "arguments": {"expression": "3 * 2.5"},
    }
    run.complete_tool_node("total", 1, True, "7.5", now=datetime.now(UTC))
    assert run.variables["total"] == 7.5
    assert run.llm_request("write").messages[-1].content == "The total is 7.5 EUR"


def test_a_tool_error_fails_the_node_with_class_task() -> None:
    run = start({"quantity": 3, "price": 2.5})
    run.complete_tool_node("total", 1, False, "error: division by zero", now=datetime.now(UTC))
    assert run.status == "failed"
    assert run.error == {"node": "total", "class": "task", "message": "error: division by zero"}


def test_arguments_that_fail_the_tools_schema_fail_the_node_before_it_runs() -> None:
    document = {
        **INVOICE,
        "nodes": {
            **INVOICE["nodes"],
            "total": {**INVOICE["nodes"]["total"], "arguments": {"expression": "", "extra": 1}},
        },
    }
    run = start({"quantity": 3, "price": 2.5}, document)
    assert run.status == "failed"
    assert run.error["class"] == "definition"
    assert run.error["message"].startswith("tool 'calculator': ")


def test_an_unknown_tool_is_refused_when_the_workflow_is_published() -> None:
    document = {
        **INVOICE,
        "nodes": {**INVOICE["nodes"], "total": {**INVOICE["nodes"]["total"], "tool": "teleport"}},
    }
    with pytest.raises(DefinitionInvalid) as refused:
        parse_definition(document)
    assert str(refused.value).startswith("nodes.total.tool: unknown tool 'teleport' (known: ")
