"""The WorkflowRun aggregate: given a definition and events, when it decides, then it records."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from domain.definitions import parse_definition
from domain.errors import NodeNotRunning
from domain.llm import LlmResult, Usage
from domain.runs import WorkflowRun

HELLO = yaml.safe_load((Path(__file__).parents[2] / "examples" / "hello.yaml").read_text())


def start(document: dict = HELLO, input: dict | None = None) -> WorkflowRun:
    spec = parse_definition(document)
    run = WorkflowRun(
        run_id=uuid.uuid4(),
        tenant="default",
        actor="test",
        workflow=spec.name,
        version=1,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=input if input is not None else {"name": "Ada"},
        command_id="c1",
    )
    run.advance(now=datetime.now(UTC))
    return run


def answer(text: str) -> LlmResult:
    return LlmResult(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=3, output_tokens=2),
        model="echo",
        provider="scripted",
        latency_ms=1.0,
        cost_usd=0.001,
    )


def event_names(run: WorkflowRun) -> list[str]:
    return [type(e).__name__ for e in run.collect_events()]


def test_a_new_run_starts_its_start_node_and_waits_for_the_model() -> None:
    run = start()
    assert event_names(run) == ["Started", "NodeStarted"]
    assert run.status == "running"
    request = run.llm_request("greet")
    assert request.model == "scripted:echo"
    assert request.messages[-1].content == "Say hello to Ada"


def test_the_answer_routes_the_switch_and_skips_the_branch_not_taken() -> None:
    run = start()
    run.collect_events()
    run.complete_llm_call("greet", 1, answer("Hello Ada"), now=datetime.now(UTC))
    assert event_names(run) == [
        "LlmCallCompleted",
        "NodeCompleted",
        "NodeStarted",
        "NodeCompleted",
        "NodesSkipped",
        "NodeStarted",
        "NodeCompleted",
        "Completed",
    ]
    assert run.status == "completed"
    assert run.variables == {"greeting": "Hello Ada", "tier": "vip"}
    assert run.nodes["regular"]["status"] == "skipped"
    assert run.usage == {
        "input_tokens": 3,
        "output_tokens": 2,
        "cached_tokens": 0,
        "cost_usd": 0.001,
        "llm_calls": 1,
        "cost_complete": True,
    }


def test_the_default_branch_is_taken_when_no_case_holds() -> None:
    run = start()
    run.complete_llm_call("greet", 1, answer("Hello Grace"), now=datetime.now(UTC))
    assert run.variables["tier"] == "regular"
    assert run.nodes["vip"]["status"] == "skipped"


def test_a_late_or_repeated_answer_changes_nothing() -> None:
    run = start()
    run.complete_llm_call("greet", 1, answer("Hello Ada"), now=datetime.now(UTC))
    run.collect_events()
    with pytest.raises(NodeNotRunning):
        run.complete_llm_call("greet", 1, answer("again"), now=datetime.now(UTC))
    assert run.collect_events() == []
    assert run.variables["greeting"] == "Hello Ada"


def test_a_prompt_with_an_undefined_variable_fails_the_run_with_the_reason() -> None:
    document = copy.deepcopy(HELLO)
    document["nodes"]["greet"]["prompt"] = "Say hello to {{ input.nickname }}"
    run = start(document)
    assert run.status == "failed"
    assert run.error["node"] == "greet"
    assert "nickname" in run.error["message"]


def test_replaying_the_events_rebuilds_the_same_state() -> None:
    run = start()
    run.complete_llm_call("greet", 1, answer("Hello Ada"), now=datetime.now(UTC))
    events = run.collect_events()
    copy_of_run = None
    for event in events:
        copy_of_run = event.mutate(copy_of_run)
    assert copy_of_run is not None
    assert copy_of_run.nodes == run.nodes
    assert copy_of_run.variables == run.variables
    assert copy_of_run.status == run.status


def test_an_unfinished_answer_fails_agent_and_map_nodes_and_can_be_retried_by_class() -> None:
    cut = answer("Once upon").model_copy(update={"finish_reason": "max_tokens"})
    agent = {
        "name": "a",
        "start": "ask",
        "nodes": {
            "ask": {
                "kind": "agent",
                "model": "scripted:x",
                "prompt": "Tell a story",
                "retry": {"attempts": 2, "errors": ["incomplete"]},
            }
        },
    }
    run = start(agent)
    run.complete_llm_call("ask", 1, cut, now=datetime.now(UTC))
    assert run.nodes["ask"]["status"] == "retrying"
    assert run.nodes["ask"]["error"]["class"] == "incomplete"
    mapped = {
        "name": "m",
        "start": "each",
        "nodes": {
            "each": {
                "kind": "map",
                "items": "[1]",
                "do": {"model": "scripted:x", "prompt": "Item {{ item }}"},
                "output": "items",
            }
        },
    }
    run = start(mapped)
    run.complete_llm_call("each", 1, cut, 0, now=datetime.now(UTC))
    assert run.status == "failed"
    assert run.error["message"].startswith(
        "item 0: scripted did not finish the answer (max_tokens: it reached max_tokens)"
    )
    allowed = copy.deepcopy(mapped)
    allowed["nodes"]["each"]["do"]["allow_incomplete"] = True
    run = start(allowed)
    run.complete_llm_call("each", 1, cut, 0, now=datetime.now(UTC))
    assert (run.status, run.variables["items"]) == ("completed", ["Once upon"])
