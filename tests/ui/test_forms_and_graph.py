"""The pieces of the UI that need no browser: forms made from JSON Schemas and the
layout of a run's graph."""

from __future__ import annotations

from api.http.ui.forms import by_field, fields_of, values_of
from api.http.ui.graph import layout
from domain.definitions.parsing import parse_definition
from domain.definitions.problems import input_problems

SCHEMA = {
    "type": "object",
    "properties": {
        "notes": {"type": "object"},
        "count": {"type": "integer", "minimum": 1},
        "style": {"enum": ["short", "long"]},
        "urgent": {"type": "boolean"},
        "topic": {"type": "string", "description": "what to write about"},
    },
    "required": ["topic"],
}


def test_a_schema_becomes_one_field_per_property_the_required_ones_first() -> None:
    fields = fields_of(SCHEMA)
    assert [(f.name, f.widget, f.required) for f in fields] == [
        ("topic", "text", True),
        ("notes", "json", False),
        ("count", "number", False),
        ("style", "select", False),
        ("urgent", "checkbox", False),
    ]
    assert fields[0].help == "what to write about"
    assert fields[3].choices == ["short", "long"]


def test_form_values_are_typed_as_the_schema_asks_and_unreadable_ones_are_named() -> None:
    form = {"topic": "tea", "count": "3", "style": "long", "urgent": "on", "notes": '{"a": 1}'}
    values, problems = values_of(fields_of(SCHEMA), SCHEMA, form)
    assert values == {"topic": "tea", "count": 3, "style": "long", "urgent": True,
                      "notes": {"a": 1}}  # fmt: skip
    assert problems == {}
    _, problems = values_of(fields_of(SCHEMA), SCHEMA, {"count": "2.5", "notes": "{"})
    assert problems == {"count": "not a whole number", "notes": "not JSON"}


def test_each_schema_problem_is_shown_at_its_field() -> None:
    problems = input_problems(SCHEMA, {"count": 0, "style": "medium"})
    fields, general = by_field(problems)
    assert fields["topic"] == "required"
    assert "minimum of 1" in fields["count"]
    assert "'medium' is not one of" in fields["style"]
    assert general == []


def test_a_graph_is_laid_out_in_layers_with_each_state_and_loops_drawn_back() -> None:
    spec = parse_definition(
        {
            "name": "loop",
            "start": "draft",
            "nodes": {
                "draft": {"kind": "set", "vars": {"n": 1}, "next": "check"},
                "check": {
                    "kind": "switch",
                    "cases": [{"when": "vars.n > 2", "next": "done"}],
                    "default": "again",
                },
                "again": {"kind": "set", "vars": {"n": 2},
                          "next": [{"to": "draft", "loop": {"max_iterations": 3}}]},
                "done": {"kind": "set", "vars": {"ok": True}},
            },
        }
    )  # fmt: skip
    nodes = {"draft": {"status": "completed"}, "check": {"status": "running"}}
    drawn = layout(spec, nodes, {"draft->check": "taken"})
    rows = {box.node_id: box.y for box in drawn.boxes}
    assert rows["draft"] < rows["check"] < rows["again"] == rows["done"]
    assert {box.node_id: box.status for box in drawn.boxes} == {
        "draft": "completed", "check": "running", "again": "pending", "done": "pending",
    }  # fmt: skip
    assert sorted(line.state for line in drawn.lines) == ["loop", "open", "open", "taken"]
    assert all(box.x + 150 <= drawn.width for box in drawn.boxes)
