"""ForkRun and EditGraph through the intake, against the in-memory store.

The model calls are made here by hand (a stand-in for the worker that counts them), so
each test can say exactly which nodes of a fork called a model and which reused a result.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.application import project_aggregate

from domain.commands import run_id_for
from domain.llm import LlmResult, Usage
from domain.runs import WorkflowRun
from handlers.commands.intake import handle_command
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork

CHAIN = {
    "name": "chain",
    "inputs": {"type": "object", "properties": {"topic": {"type": "string"}}},
    "start": "n1",
    "nodes": {
        f"n{i}": {
            "kind": "llm",
            "model": "scripted:echo",
            "prompt": "Begin with {{ input.topic }}"
            if i == 1
            else f"Go on from {{{{ vars.o{i - 1} }}}}",
            "output": f"o{i}",
            **({"next": f"n{i + 1}"} if i < 10 else {}),
        }
        for i in range(1, 11)
    },
}
offsets = iter(range(10**6))


def command(uow: UnitOfWork, type_: str, payload: dict[str, Any], tenant: str = "default") -> Any:
    command_id = f"c{next(offsets)}"
    body = {
        "command_id": command_id,
        "type": type_,
        "tenant": tenant,
        "actor": "ada",
        "payload": payload,
    }
    receipt = handle_command(Record("heddle.commands", 0, 0, None, json.dumps(body).encode()), uow)
    uow.save()
    return receipt


def accepted(uow: UnitOfWork, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    receipt = command(uow, type_, payload)
    assert receipt.outcome == "accepted", receipt.reason
    return receipt.result


def call_models(uow: UnitOfWork, run_id: uuid.UUID, stop_before: str | None = None) -> list[str]:
    """Answer every model call the run waits for, as the worker would: each answer is
    the prompt in upper case. Returns the nodes whose model was called, in order."""
    called = []
    while True:
        run = uow.get(run_id)
        waiting = [n for n, s in run.nodes.items() if s["status"] == "running" and n != stop_before]
        if not waiting:
            return called
        for node_id in waiting:
            prompt = run.llm_request(node_id).messages[-1].content
            run.complete_llm_call(
                node_id,
                run.nodes[node_id]["attempt"],
                LlmResult(
                    text=prompt.upper(),
                    finish_reason="stop",
                    usage=Usage(input_tokens=5, output_tokens=5),
                    model="echo",
                    provider="scripted",
                    latency_ms=1.0,
                    cost_usd=0.01,
                ),
                now=datetime.now(UTC),
            )
            called.append(node_id)
        uow.save()


@pytest.fixture
def source(uow: UnitOfWork) -> uuid.UUID:
    """A completed 10-node chain."""
    accepted(uow, "PublishWorkflow", {"definition": CHAIN})
    run_id = uuid.UUID(
        accepted(uow, "StartRun", {"workflow": "chain", "input": {"topic": "tea"}})["run_id"]
    )
    assert len(call_models(uow, run_id)) == 10
    assert uow.get(run_id).status == "completed"
    return run_id


def fork(uow: UnitOfWork, source: uuid.UUID, **payload: Any) -> uuid.UUID:
    result = accepted(uow, "ForkRun", {"source_run_id": str(source), "from_node": "n6", **payload})
    return uuid.UUID(result["run_id"])


def test_a_fork_with_a_new_prompt_reuses_five_nodes_and_calls_the_model_for_five(
    uow, source
) -> None:
    forked = fork(uow, source, prompts={"n6": "Say it again: {{ vars.o5 }}"})
    assert call_models(uow, forked) == ["n6", "n7", "n8", "n9", "n10"]
    run, original = uow.get(forked), uow.get(source)
    assert run.status == "completed"
    assert all(run.nodes[f"n{i}"].get("reused") for i in range(1, 6))
    assert {f"o{i}": run.variables[f"o{i}"] for i in range(1, 6)} == {
        f"o{i}": original.variables[f"o{i}"] for i in range(1, 6)
    }
    assert run.variables["o6"].startswith("SAY IT AGAIN: GO ON FROM")
    assert run.forked_from["run_id"] == str(source)
    assert run.forked_from["node"] == "n6"
    assert run.usage["llm_calls"] == 5


def test_a_recorded_fork_with_nothing_changed_calls_no_model(uow, source) -> None:
    forked = fork(uow, source, mode="recorded")
    assert call_models(uow, forked) == []
    run, original = uow.get(forked), uow.get(source)
    assert run.status == "completed"
    assert run.variables == original.variables
    assert run.usage["llm_calls"] == 0


def test_a_recorded_fork_calls_a_model_only_where_the_request_changed(uow, source) -> None:
    forked = fork(uow, source, mode="recorded", prompts={"n8": "Shorter: {{ vars.o7 }}"})
    assert call_models(uow, forked) == ["n8", "n9", "n10"]


def test_a_live_fork_calls_the_model_from_the_fork_node_on(uow, source) -> None:
    assert call_models(uow, fork(uow, source)) == ["n6", "n7", "n8", "n9", "n10"]


def test_variables_set_on_a_fork_are_what_the_fork_node_sees(uow, source) -> None:
    forked = fork(uow, source, variables={"o5": "coffee"})
    assert uow.get(forked).llm_request("n6").messages[-1].content == "Go on from coffee"


def test_a_different_model_for_the_fork_node_goes_into_its_request(uow, source) -> None:
    forked = fork(uow, source, models={"n6": "openai:gpt-4o-mini"})
    assert uow.get(forked).llm_request("n6").model == "openai:gpt-4o-mini"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"from_node": "nope"}, "node 'nope' never started in run"),
        ({"prompts": {"n2": "x"}}, "prompts.n2: 'n2' finished before 'n6' started"),
        ({"models": {"n99": "openai:x"}}, "models.n99: no node 'n99'"),
        ({"prompts": {"n7": "{{ oops"}}, "nodes.n7.prompt"),
        ({"source_run_id": str(uuid.uuid4())}, "no run"),
    ],
)
def test_a_fork_that_cannot_start_is_rejected_with_why(uow, source, payload, reason) -> None:
    receipt = command(uow, "ForkRun", {"source_run_id": str(source), "from_node": "n6", **payload})
    assert receipt.outcome == "rejected", receipt.reason
    assert reason in receipt.reason, receipt.reason


def test_another_tenants_run_cannot_be_forked(uow, source) -> None:
    receipt = command(uow, "ForkRun", {"source_run_id": str(source), "from_node": "n6"}, "globex")
    assert receipt.outcome == "rejected"
    assert receipt.reason == f"no run {source}"


def test_a_fork_of_a_fork_still_reuses_what_the_first_fork_reused(uow, source) -> None:
    first = fork(uow, source, prompts={"n6": "Again: {{ vars.o5 }}"})
    call_models(uow, first)
    second = uuid.UUID(
        accepted(
            uow,
            "ForkRun",
            {
                "source_run_id": str(first),
                "from_node": "n8",
                "mode": "recorded",
            },
        )["run_id"]
    )
    assert call_models(uow, second) == []
    assert uow.get(second).variables == uow.get(first).variables


def test_a_fork_replays_from_its_events_to_the_same_state(uow, source) -> None:
    forked = fork(uow, source, mode="recorded", prompts={"n9": "Last: {{ vars.o8 }}"})
    call_models(uow, forked)
    run = uow.get(forked)
    rebuilt = project_aggregate(None, uow.app.repository.event_store.get(forked))
    assert rebuilt.__dict__ == run.__dict__


# Edits to a running graph


def running_chain(uow: UnitOfWork) -> uuid.UUID:
    """A chain with n1 answered and n2 waiting for its model."""
    accepted(uow, "PublishWorkflow", {"definition": CHAIN})
    run_id = uuid.UUID(
        accepted(uow, "StartRun", {"workflow": "chain", "input": {"topic": "tea"}})["run_id"]
    )
    call_models(uow, run_id, stop_before="n2")
    assert uow.get(run_id).nodes["n2"]["status"] == "running"
    return run_id


REVIEW = {
    "kind": "llm",
    "model": "scripted:echo",
    "prompt": "Review {{ vars.o2 }}",
    "output": "review",
}


def edit(uow: UnitOfWork, run_id: uuid.UUID, *edits: dict[str, Any]) -> Any:
    return command(
        uow, "EditGraph", {"run_id": str(run_id), "edits": list(edits), "reason": "needs review"}
    )


def test_a_node_inserted_before_a_pending_one_runs_in_its_place(uow) -> None:
    run_id = running_chain(uow)
    receipt = edit(
        uow, run_id, {"op": "insert_before", "node": "n3", "new": "review", "definition": REVIEW}
    )
    assert receipt.outcome == "accepted", receipt.reason
    called = call_models(uow, run_id)
    assert called[:3] == ["n2", "review", "n3"]
    run = uow.get(run_id)
    assert run.status == "completed"
    assert run.variables["review"].startswith("REVIEW GO ON FROM")
    assert list(run.graph["nodes"]).index("review") == 10
    assert run.graph["nodes"]["n2"]["next"] == "review"


def test_an_edit_touching_a_completed_node_is_rejected_and_changes_nothing(uow) -> None:
    run_id = running_chain(uow)
    before = uow.get(run_id).version
    receipt = edit(
        uow,
        run_id,
        {"op": "add_node", "node": "extra", "definition": {"kind": "set", "vars": {"x": 1}}},
        {"op": "update_node", "node": "n1", "set": {"prompt": "Other"}},
    )
    assert receipt.outcome == "rejected"
    assert "nodes.n1: is completed: its prompt cannot change" in receipt.reason
    assert "nodes.extra: unreachable" in receipt.reason
    run = uow.get(run_id)
    assert run.version == before
    assert "extra" not in run.graph["nodes"]


def test_a_running_node_keeps_its_request_but_may_get_new_edges(uow) -> None:
    run_id = running_chain(uow)
    receipt = edit(uow, run_id, {"op": "update_node", "node": "n2", "set": {"prompt": "x"}})
    assert (
        "nodes.n2: is running: its prompt cannot change (only its outgoing edges can"
        in receipt.reason
    )
    receipt = edit(
        uow,
        run_id,
        {"op": "remove_edge", "from": "n2", "to": "n3"},
        {"op": "add_edge", "from": "n2", "to": "n4"},
        {"op": "remove_node", "node": "n3"},
        {"op": "update_node", "node": "n4", "set": {"prompt": "Then {{ vars.o2 }}"}},
    )
    assert receipt.outcome == "accepted", receipt.reason
    assert call_models(uow, run_id) == ["n2", "n4", "n5", "n6", "n7", "n8", "n9", "n10"]
    run = uow.get(run_id)
    assert run.status == "completed"
    assert run.variables["o4"].startswith("THEN GO ON FROM")


def test_edits_that_do_not_apply_are_reported_each_at_its_index(uow) -> None:
    run_id = running_chain(uow)
    receipt = edit(
        uow,
        run_id,
        {"op": "remove_node", "node": "ghost"},
        {"op": "add_edge", "from": "n3", "to": "n5"},
        {"op": "update_node", "node": "n4", "set": {"kind": "set"}},
    )
    assert receipt.reason == (
        "edits[0]: no node 'ghost' (nodes: " + ", ".join(CHAIN["nodes"]) + "); "
        "edits[1]: 'n3' hands over to 'n4' already and a node has one next: remove that edge "
        "first, or use insert_before; "
        "edits[2]: a node's kind cannot change: remove it and add a new one"
    )


def test_removing_a_pending_node_that_others_lead_to_is_refused(uow) -> None:
    run_id = running_chain(uow)
    receipt = edit(uow, run_id, {"op": "remove_node", "node": "n5"})
    assert "nodes.n4.next: unknown node 'n5'" in receipt.reason


def test_a_finished_run_cannot_be_edited(uow, source) -> None:
    receipt = edit(uow, source, {"op": "remove_node", "node": "n10"})
    assert receipt.reason == (
        f"run {source} is completed: only a running or waiting run's graph can change"
    )


def test_an_edit_is_recorded_with_its_actor_and_reason_and_replays(uow) -> None:
    run_id = running_chain(uow)
    edit(uow, run_id, {"op": "insert_before", "node": "n3", "new": "review", "definition": REVIEW})
    events = list(uow.app.repository.event_store.get(run_id))
    edited = next(e for e in events if type(e).__name__ == "GraphEdited")
    assert (edited.actor, edited.reason) == ("ada", "needs review")
    assert edited.edits[0]["op"] == "insert_before"
    rebuilt: WorkflowRun = project_aggregate(None, events)
    assert rebuilt.graph == uow.get(run_id).graph
    assert rebuilt.nodes == uow.get(run_id).nodes


def test_run_ids_of_forks_follow_the_command_id_when_not_given(uow, source) -> None:
    receipt = command(uow, "ForkRun", {"source_run_id": str(source), "from_node": "n6"})
    assert receipt.result["run_id"] == str(run_id_for("default", receipt.command_id))
