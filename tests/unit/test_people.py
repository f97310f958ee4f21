"""People in a run, through the intake against the in-memory store: human tasks, pause,
resume, cancel, and budgets that stop a run until someone approves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.errors import NodeNotRunning
from domain.llm import LlmResult, Usage
from handlers.unit_of_work import UnitOfWork
from tests.unit.test_forks import accepted, command

REFUND = {
    "name": "refund",
    "inputs": {"type": "object", "properties": {"customer": {"type": "string"}}},
    "start": "review",
    "nodes": {
        "review": {
            "kind": "human",
            "task": "approval",
            "title": "Refund for {{ input.customer }}?",
            "role": "support",
            "priority": 70,
            "due_in": "4h",
            "output": "verdict",
            "next": "route",
        },
        "route": {
            "kind": "switch",
            "cases": [{"when": 'vars.verdict.decision == "approve"', "next": "pay"}],
            "default": "refuse",
        },
        "pay": {"kind": "set", "vars": {"paid": True}},
        "refuse": {"kind": "set", "vars": {"paid": False}},
    },
}
FORM = {
    "name": "address",
    "start": "ask",
    "nodes": {
        "ask": {
            "kind": "human",
            "task": "input",
            "title": "Where to ship?",
            "form": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "floor": {"type": "integer"}},
                "required": ["city"],
            },
            "output": "address",
        },
    },
}


def start(
    uow: UnitOfWork, definition: dict[str, Any], input: dict[str, Any] | None = None
) -> uuid.UUID:
    accepted(uow, "PublishWorkflow", {"definition": definition})
    started = accepted(uow, "StartRun", {"workflow": definition["name"], "input": input or {}})
    return uuid.UUID(started["run_id"])


def rejected(uow: UnitOfWork, type_: str, payload: dict[str, Any]) -> str:
    receipt = command(uow, type_, payload)
    assert receipt.outcome == "rejected", receipt.result
    return receipt.reason


def test_an_approval_task_waits_for_a_person_and_its_decision_routes_the_run(uow) -> None:
    run_id = start(uow, REFUND, {"customer": "Ada"})
    task = uow.get(run_id).tasks["review"]
    assert (task["status"], task["title"], task["role"], task["priority"]) == (
        "open",
        "Refund for Ada?",
        "support",
        70,
    )
    assert task["due_at"] is not None
    accepted(
        uow,
        "CompleteTask",
        {
            "run_id": str(run_id),
            "task": "review",
            "decision": "approve",
            "comment": "loyal customer",
        },
    )
    run = uow.get(run_id)
    assert run.status == "completed"
    assert run.variables["verdict"] == {
        "decision": "approve",
        "comment": "loyal customer",
        "by": "ada",
    }
    assert run.variables["paid"] is True
    assert run.tasks["review"]["status"] == "completed"


def test_a_task_is_completed_once_and_an_approval_needs_a_decision(uow) -> None:
    run_id = start(uow, REFUND, {"customer": "Ada"})
    assert rejected(uow, "CompleteTask", {"run_id": str(run_id), "task": "review"}) == (
        "task 'review' is an approval: decide approve or reject"
    )
    assert rejected(
        uow, "CompleteTask", {"run_id": str(run_id), "task": "pay", "decision": "approve"}
    ) == (f"run {run_id} has no open task 'pay' (open: review)")
    accepted(uow, "CompleteTask", {"run_id": str(run_id), "task": "review", "decision": "reject"})
    assert uow.get(run_id).variables["paid"] is False
    assert "has no open task 'review' (open: none)" in rejected(
        uow, "CompleteTask", {"run_id": str(run_id), "task": "review", "decision": "approve"}
    )


def test_input_that_does_not_match_the_form_is_rejected_with_each_problem(uow) -> None:
    run_id = start(uow, FORM)
    reason = rejected(
        uow, "CompleteTask", {"run_id": str(run_id), "task": "ask", "input": {"floor": "third"}}
    )
    assert reason == (
        "task 'ask': the input does not match its form: input: 'city' is a required property; "
        "input.floor: 'third' is not of type 'integer'"
    )
    accepted(uow, "CompleteTask", {"run_id": str(run_id), "task": "ask", "input": {"city": "Oslo"}})
    assert uow.get(run_id).output == {"address": {"city": "Oslo"}}


def test_an_escalated_task_gets_its_new_role_and_priority(uow) -> None:
    run_id = start(uow, REFUND, {"customer": "Ada"})
    accepted(
        uow,
        "ReassignTask",
        {
            "run_id": str(run_id),
            "task": "review",
            "role": "supervisors",
            "priority": 95,
            "reason": "waiting too long",
        },
    )
    task = uow.get(run_id).tasks["review"]
    assert (task["role"], task["priority"], task["status"]) == ("supervisors", 95, "open")
    assert rejected(uow, "ReassignTask", {"run_id": str(run_id), "task": "review"}) == (
        "give an assignee, a role or a priority"
    )


SLOW_PAIR = {
    "name": "pair",
    "start": "one",
    "nodes": {
        "one": {
            "kind": "llm",
            "model": "scripted:echo",
            "prompt": "one",
            "output": "a",
            "next": "two",
        },
        "two": {"kind": "llm", "model": "scripted:echo", "prompt": "two", "output": "b"},
    },
}


def answer(uow: UnitOfWork, run_id: uuid.UUID, node_id: str, tokens: int = 5) -> None:
    run = uow.get(run_id)
    run.complete_llm_call(
        node_id,
        1,
        LlmResult(
            text=node_id.upper(),
            finish_reason="stop",
            usage=Usage(input_tokens=tokens, output_tokens=tokens),
            model="echo",
            provider="scripted",
            latency_ms=1.0,
            cost_usd=0.5,
        ),
        now=datetime.now(UTC),
    )
    uow.save()


def test_a_paused_run_records_work_in_flight_but_starts_nothing_until_resumed(uow) -> None:
    run_id = start(uow, SLOW_PAIR)
    accepted(uow, "PauseRun", {"run_id": str(run_id), "reason": "provider outage"})
    answer(uow, run_id, "one")
    run = uow.get(run_id)
    assert run.status == "paused"
    assert run.nodes["one"]["status"] == "completed"
    assert run.nodes["two"]["status"] == "pending"
    assert rejected(uow, "PauseRun", {"run_id": str(run_id)}) == (
        f"run {run_id} is paused: only a running or waiting run can pause"
    )
    accepted(uow, "ResumeRun", {"run_id": str(run_id)})
    assert uow.get(run_id).nodes["two"]["status"] == "running"


def test_a_cancelled_run_ends_its_nodes_and_tasks_and_ignores_late_answers(uow) -> None:
    run_id = start(uow, SLOW_PAIR)
    accepted(uow, "CancelRun", {"run_id": str(run_id), "reason": "customer withdrew"})
    run = uow.get(run_id)
    assert run.status == "cancelled"
    assert run.nodes["one"]["status"] == "cancelled"
    assert run.error == {"class": "cancelled", "message": "customer withdrew", "by": "ada"}
    with pytest.raises(NodeNotRunning):  # the worker drops a late answer
        answer(uow, run_id, "one")
    assert (
        rejected(uow, "CancelRun", {"run_id": str(run_id)}) == f"run {run_id} is cancelled already"
    )
    refund = start(uow, REFUND, {"customer": "Bo"})
    accepted(uow, "CancelRun", {"run_id": str(refund)})
    assert uow.get(refund).tasks["review"]["status"] == "cancelled"


BUDGETED = {
    **SLOW_PAIR,
    "name": "budgeted",
    "budget": {"max_tokens": 10, "approver_role": "finance"},
}


def test_a_run_over_its_budget_pauses_with_an_approval_task_and_goes_on_when_approved(uow) -> None:
    run_id = start(uow, BUDGETED)
    answer(uow, run_id, "one", tokens=6)  # 12 tokens: over 10
    run = uow.get(run_id)
    assert run.status == "paused"
    assert run.nodes["two"]["status"] == "pending"
    task = run.tasks["budget"]
    assert task["role"] == "finance"
    assert task["status"] == "open"
    assert "reached its budget: max_tokens 10 (used 12)" in task["title"]
    assert "waits for its budget approval" in rejected(uow, "ResumeRun", {"run_id": str(run_id)})
    accepted(uow, "CompleteTask", {"run_id": str(run_id), "task": "budget", "decision": "approve"})
    assert uow.get(run_id).nodes["two"]["status"] == "running"
    answer(uow, run_id, "two", tokens=6)
    assert uow.get(run_id).status == "completed"


def test_a_rejected_budget_approval_cancels_the_run(uow) -> None:
    run_id = start(uow, {**BUDGETED, "budget": {"max_steps": 1}})
    answer(uow, run_id, "one")
    accepted(
        uow,
        "CompleteTask",
        {"run_id": str(run_id), "task": "budget", "decision": "reject", "comment": "too dear"},
    )
    run = uow.get(run_id)
    assert run.status == "cancelled"
    assert run.error["message"] == "budget not approved: too dear"
