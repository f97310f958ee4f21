"""Definitions: what is accepted, and the path and reason of everything that is not."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from domain.definitions import WorkflowDefinition, input_problems, parse_definition
from domain.errors import DefinitionInvalid

HELLO = yaml.safe_load((Path(__file__).parents[2] / "examples" / "hello.yaml").read_text())


def problems_of(document: dict) -> dict[str, str]:
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition(document)
    return {p.path: p.message for p in caught.value.problems}


def test_the_hello_example_is_valid() -> None:
    spec = parse_definition(HELLO)
    assert spec.start == "greet"
    assert spec.parents["route"] == ["greet"]


def test_an_unknown_target_is_reported_at_its_path() -> None:
    document = copy.deepcopy(HELLO)
    document["nodes"]["route"]["cases"][0]["next"] = "vipp"
    problems = problems_of(document)
    assert problems["nodes.route.cases[0].next"].startswith("unknown node 'vipp'")


def test_every_expression_and_template_problem_is_reported_together() -> None:
    document = copy.deepcopy(HELLO)
    document["nodes"]["greet"]["prompt"] = "Hello {{ input.name"
    document["nodes"]["route"]["cases"][0]["when"] = "vars.greeting.contains("
    problems = problems_of(document)
    assert set(problems) == {"nodes.greet.prompt", "nodes.route.cases[0].when"}


def test_an_unknown_node_kind_points_at_kind() -> None:
    document = copy.deepcopy(HELLO)
    document["nodes"]["greet"]["kind"] = "llmx"
    assert "nodes.greet.kind" in problems_of(document)


def test_unreachable_nodes_and_cycles_are_rejected() -> None:
    document = copy.deepcopy(HELLO)
    document["nodes"]["orphan"] = {"kind": "set", "vars": {"x": 1}}
    assert "unreachable" in problems_of(document)["nodes.orphan"]
    looping = copy.deepcopy(HELLO)
    looping["nodes"]["vip"]["next"] = "route"
    assert any("cycle" in message for message in problems_of(looping).values())


def test_a_model_must_name_its_provider() -> None:
    document = copy.deepcopy(HELLO)
    document["nodes"]["greet"]["model"] = "gpt-4o"
    assert "nodes.greet.model" in problems_of(document)


def test_allow_incomplete_is_an_option_of_the_nodes_that_call_a_model_only() -> None:
    document = copy.deepcopy(HELLO)
    document["nodes"]["greet"]["allow_incomplete"] = True
    assert parse_definition(document).nodes["greet"].allow_incomplete
    document["nodes"]["greet"]["allow_incomplete"] = "sometimes"
    document["nodes"]["vip"]["allow_incomplete"] = True
    problems = problems_of(document)
    assert problems["nodes.greet.allow_incomplete"].startswith("Input should be a valid boolean")
    assert problems["nodes.vip.allow_incomplete"] == "Extra inputs are not permitted"


def test_a_definition_nested_too_deeply_is_refused_before_it_is_read() -> None:
    document = copy.deepcopy(HELLO)
    deep: object = {}
    for _ in range(5000):
        deep = {"properties": deep}
    document["inputs"] = deep
    assert problems_of(document) == {
        "": "nested deeper than 64 levels of objects and lists: flatten it"
    }


def test_input_problems_name_the_field() -> None:
    assert input_problems(HELLO["inputs"], {}) == ["input: 'name' is a required property"]
    assert input_problems(HELLO["inputs"], {"name": 3}) == ["input.name: 3 is not of type 'string'"]
    assert input_problems(HELLO["inputs"], {"name": "Ada"}) == []


def test_publishing_an_unchanged_definition_makes_no_new_version() -> None:
    spec = parse_definition(HELLO)
    definition = WorkflowDefinition(tenant="acme", name="hello")
    assert definition.publish(spec, "ada") == 1
    assert definition.publish(spec, "ada") == 1
    changed = parse_definition({**HELLO, "description": "new"})
    assert definition.publish(changed, "ada") == 2
    assert definition.get_version(1)["content_hash"] == spec.content_hash()
    assert definition.get_version(3) is None
