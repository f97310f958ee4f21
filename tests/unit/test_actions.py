"""Entry and exit actions: variables, conditionals, documents and model calls, run in order
when a node starts and when its work is done, recorded so that a replay calls no model.
The run worker's functions make the model calls, against the scripted provider."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid, LlmRequestNotPending
from domain.llm import LlmRequest, RetryPolicy
from domain.runs import WorkflowRun
from handlers.reactions.llm_requests import LlmRequestDue, answer_llm_request, record_llm_answers
from handlers.reactions.model_calls import (
    LlmCall,
    OnDelta,
    OnTryFailed,
    call_llm,
    record_llm_outcomes,
)
from handlers.unit_of_work import UnitOfWork
from infra.llm.retrying import complete_with_retries
from infra.llm.scripted import ScriptedProvider
from tests.unit.test_scheduling import start as started

ROOT = Path(__file__).parents[2]
EXAMPLE_TEXT = (ROOT / "examples" / "actions.yaml").read_text()
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT)
ACME = {"customer": "Acme", "arr": 120000, "days_to_renewal": 20}


def start(document: dict[str, Any], input: dict[str, Any] | None = None) -> WorkflowRun:
    """test_scheduling's `start`, with ACME's renewal as the default input."""
    return started(document, ACME if input is None else input)


async def complete(
    request: LlmRequest, tenant: str, on_try_failed: OnTryFailed, on_delta: OnDelta | None = None
) -> Any:
    async def no_wait(seconds: float) -> None:
        return None

    return await complete_with_retries(
        ScriptedProvider(), request, RetryPolicy(), on_try_failed, sleep=no_wait
    )


async def work(run: WorkflowRun, uow: UnitOfWork) -> WorkflowRun:
    """Play the run worker until nothing waits for a model: an action's call (a run-level
    request) or a node's."""
    uow.add(run)
    while running := [n for n, s in run.nodes.items() if s["status"] == "running"]:
        if run.is_finished:
            break
        for node_id in running:
            waiting = run.action_waiting(node_id)
            if waiting is not None:
                request = LlmRequest.model_validate(waiting["request"])
                due = LlmRequestDue(run.id, waiting["request_id"], request, run.tenant)
                record_llm_answers([await answer_llm_request(due, complete)], uow)
            else:
                call = LlmCall(
                    run.id, node_id, run.nodes[node_id]["attempt"], run.llm_request(node_id)
                )
                record_llm_outcomes([await call_llm(call, complete)], uow)
    return run


def names(run: WorkflowRun) -> list[str]:
    return [type(e).__name__ for e in run.pending_events]


def workflow(**nodes: Any) -> dict[str, Any]:
    return {"name": "acts", "start": next(iter(nodes)), "nodes": nodes}


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionInvalid) as invalid:
        parse_definition(document)
    return [str(problem) for problem in invalid.value.problems]


async def test_the_example_sets_variables_asks_a_model_and_saves_the_brief_as_a_document(
    uow: UnitOfWork,
) -> None:
    run = await work(start(EXAMPLE), uow)
    assert run.status == "completed"
    assert run.variables == {
        "urgent": True,
        "account": "Acme (120000 USD ARR)",
        "tone": "urgent",
        "risk": "low: Acme (120000 USD ARR) renews every year",
        "brief": "Brief on Acme (120000 USD ARR), tone urgent. "
        "Risk: low: Acme (120000 USD ARR) renews every year",
        "headline": "URGENT: Acme",
    }
    [document] = [e for e in run.pending_events if type(e).__name__ == "ArtifactSaved"]
    assert (document.name, document.content_type, document.action) == (
        "brief-acme.md",
        "text/markdown",
        "nodes.draft.on_exit[0]",
    )
    assert document.content == f"# Renewal brief: Acme\n\n{run.variables['brief']}"
    assert document.size == len(document.content.encode())
    assert run.usage["llm_calls"] == 2  # the action's call and the node's


async def test_entry_actions_run_before_the_work_and_exit_actions_before_the_next_node(
    uow: UnitOfWork,
) -> None:
    run = await work(
        start(
            workflow(
                ask={
                    "kind": "llm",
                    "model": "scripted:echo",
                    "prompt": "Hi {{ vars.who }}",
                    "output": "reply",
                    "next": "after",
                    "on_enter": [{"variable": {"set": {"who": "{{ input.customer }}"}}}],
                    "on_exit": [
                        {"variable": {"set": {"reply": "{{ output | upper }}", "seen": "yes"}}}
                    ],
                },
                after={"kind": "set", "vars": {"copy": "{{ vars.reply }} ({{ vars.seen }})"}},
            )
        ),
        uow,
    )
    assert names(run) == [
        "Started",
        "ActionVariablesSet",
        "NodeStarted",
        "LlmCallCompleted",
        "ActionVariablesSet",
        "NodeCompleted",
        "NodeStarted",
        "NodeCompleted",
        "Completed",
    ]
    # The exit action's value wins over the node's own output variable.
    assert run.variables["reply"] == "HI ACME"
    assert run.variables["copy"] == "HI ACME (yes)"
    assert run.nodes["ask"]["output"] == "Hi Acme"


async def test_a_conditional_runs_else_when_its_condition_is_false() -> None:
    run = start(EXAMPLE, {**ACME, "days_to_renewal": 200})
    assert run.variables["urgent"] is False
    assert run.variables["tone"] == "relaxed"


async def test_the_answer_of_an_entry_llm_action_is_recorded_before_the_node_starts(
    uow: UnitOfWork,
) -> None:
    run = start(EXAMPLE)
    waiting = run.action_waiting("draft")
    assert waiting is not None
    assert waiting["action"] == "nodes.draft.on_enter[2]"
    assert names(run)[-2:] == ["NodeEntering", "LlmRequested"]
    assert "brief" not in run.variables
    assert run.nodes["draft"]["status"] == "running"
    await work(run, uow)
    order = names(run)
    assert order.index("LlmRequestCompleted") < order.index("NodeStarted")


def test_a_failing_action_fails_the_node_with_class_definition_and_the_actions_path() -> None:
    run = start(
        workflow(
            draft={
                "kind": "set",
                "vars": {"x": 1},
                "on_enter": [
                    {"variable": {"set": {"a": "1"}}},
                    {
                        "conditional": {
                            "if": "true",
                            "then": [
                                {"document": {"name": "n.md", "template": "{{ vars.missing }}"}}
                            ],
                        }
                    },
                ],
            },
        )
    )
    assert run.status == "failed"
    assert run.error == {
        "node": "draft",
        "class": "definition",
        "message": "nodes.draft.on_enter[1].conditional.then[0]: undefined variable: "
        "'dict object' has no attribute 'missing'",
    }
    assert run.variables == {"a": "1"}  # what ran before the failure is recorded


def test_a_failing_exit_action_fails_the_node_and_its_next_never_runs() -> None:
    run = start(
        workflow(
            first={
                "kind": "set",
                "vars": {"x": 1},
                "next": "second",
                "on_exit": [{"variable": {"compute": {"y": "vars.x / 0"}}}],
            },
            second={"kind": "set", "vars": {"z": 1}},
        )
    )
    assert run.status == "failed"
    assert run.error["message"].startswith("nodes.first.on_exit[0]: 'vars.x / 0' failed: ")
    assert run.nodes["second"]["status"] == "pending"


def test_a_document_over_the_size_limit_fails_the_node_saying_how_large() -> None:
    run = start(
        workflow(
            big={
                "kind": "set",
                "vars": {"x": 1},
                "on_exit": [
                    {
                        "document": {
                            "name": "big.txt",
                            "content_type": "text/plain",
                            "template": "{% for i in range(3000) %}{{ 'x' * 100 }}{% endfor %}",
                        }
                    }
                ],
            },
        )
    )
    assert run.status == "failed"
    assert run.error["message"] == (
        "nodes.big.on_exit[0]: document 'big.txt' is 300,000 bytes, more than the 262,144 an "
        "artifact may hold: shorten the template or split the document"
    )


def test_bad_actions_are_reported_with_their_paths_when_the_workflow_is_published() -> None:
    bad_on_enter = [
        {"variable": {"compute": {"total": "input.a +"}}},
        {"variable": {"set": {"my var": "x"}}},
        {"document": {"name": "n", "template": "{{ oops"}},
    ]
    bad_conditional = {
        "conditional": {
            "if": "true",
            "then": [{"llm": {"model": "scripted:echo", "prompt": "{% if %}", "output": "a"}}],
        }
    }
    assert problems(
        workflow(
            draft={
                "kind": "set",
                "vars": {"x": 1},
                "on_enter": bad_on_enter,
                "on_exit": [
                    bad_conditional,
                    {"variable": {"set": {"a": "1"}}, "document": {"name": "n", "template": "t"}},
                    {"llm": {"model": "scripted:echo", "prompt": "hi"}},
                    {"webhook": {"url": "http://example.com"}},
                ],
            },
        )
    ) == [
        "nodes.draft.on_exit[1]: Value error, an action is exactly one of variable, "
        "conditional, document, llm (this one has variable, document)",
        "nodes.draft.on_exit[2].llm.output: Field required",
        "nodes.draft.on_exit[3].webhook: Extra inputs are not permitted",
    ]
    assert problems(
        workflow(
            draft={
                "kind": "set",
                "vars": {"x": 1},
                "on_enter": [*bad_on_enter, {"variable": {}}],
                "on_exit": [bad_conditional],
            },
        )
    ) == [
        "nodes.draft.on_enter[0].variable.compute.total: invalid CEL: input.a +",
        "nodes.draft.on_enter[1].variable.set: variable name 'my var' must match "
        "^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        "nodes.draft.on_enter[2].document.template: line 1: unexpected end of template, "
        "expected 'end of print statement'.",
        "nodes.draft.on_enter[3].variable: give the variables to set in set or compute",
        "nodes.draft.on_exit[0].conditional.then[0].llm.prompt: line 1: Expected an "
        "expression, got 'end of statement block'",
    ]


async def test_a_model_answer_that_looks_like_a_template_stays_literal_in_later_templates(
    uow: UnitOfWork,
) -> None:
    run = await work(
        start(
            workflow(
                ask={
                    "kind": "set",
                    "vars": {"x": 1},
                    "on_enter": [
                        {
                            "llm": {
                                "model": "scripted:sly",
                                "prompt": "p",
                                "output": "answer",
                                "options": {"reply": "{{ '{{ 7*7 }}' }} {{ '{{ input }}' }}"},
                            }
                        },
                    ],
                    "on_exit": [
                        {"variable": {"set": {"echo": "said: {{ vars.answer }}"}}},
                        {
                            "document": {
                                "name": "{{ vars.answer }}",
                                "template": "{{ vars.answer }}",
                            }
                        },
                    ],
                },
            )
        ),
        uow,
    )
    assert run.variables["answer"] == "{{ 7*7 }} {{ input }}"
    assert run.variables["echo"] == "said: {{ 7*7 }} {{ input }}"
    [document] = [e for e in run.pending_events if type(e).__name__ == "ArtifactSaved"]
    assert document.content == document.name == "{{ 7*7 }} {{ input }}"


async def test_replaying_a_runs_events_rebuilds_it_without_calling_a_model(uow: UnitOfWork) -> None:
    run = await work(start(EXAMPLE), uow)
    replayed = None
    for event in run.pending_events:
        replayed = event.mutate(replayed)
    assert replayed is not None
    assert (replayed.variables, replayed.nodes, replayed.usage, replayed.status) == (
        run.variables,
        run.nodes,
        run.usage,
        run.status,
    )


def test_an_answer_for_a_node_that_moved_on_changes_nothing() -> None:
    from tests.unit.test_runs import answer

    document = workflow(
        first={**EXAMPLE["nodes"]["draft"], "next": "second"},
        second={"kind": "human", "title": "Read the brief"},
    )
    run = start(document)
    waiting = run.action_waiting("first")
    assert waiting is not None
    run.skip_node("first", "ada", "not needed", now=datetime.now(UTC))
    run.collect_events()
    run.complete_llm_request(waiting["request_id"], answer("late"), now=datetime.now(UTC))
    assert names(run) == ["LlmRequestCompleted"]  # paid for, so counted; nothing else
    assert "risk" not in run.variables
    assert run.nodes["first"]["status"] == "completed"
    with pytest.raises(LlmRequestNotPending):
        run.complete_llm_request(waiting["request_id"], answer("again"), now=datetime.now(UTC))


async def test_an_action_model_call_that_fails_for_good_fails_the_node(uow: UnitOfWork) -> None:
    run = await work(
        start(
            workflow(
                ask={
                    "kind": "set",
                    "vars": {"x": 1},
                    "on_enter": [
                        {
                            "llm": {
                                "model": "scripted:broken",
                                "prompt": "{{ run.id }}",
                                "output": "a",
                                "options": {"fail": [{"status": 401, "message": "bad key"}]},
                            }
                        },
                    ],
                },
            )
        ),
        uow,
    )
    assert run.status == "failed"
    assert run.error["node"] == "ask"
    assert run.error["class"] == "fatal"
    assert run.error["message"].startswith("nodes.ask.on_enter[0]: ")
    assert "bad key" in run.error["message"]


def test_the_example_in_the_docs_is_the_one_in_examples() -> None:
    assert f"```yaml\n{EXAMPLE_TEXT}```" in (ROOT / "docs" / "workflows.md").read_text()


async def test_a_fork_from_a_node_with_entry_actions_runs_them_again_from_the_start(
    uow: UnitOfWork,
) -> None:
    from tests.unit.test_forks import accepted

    draft = EXAMPLE["nodes"]["draft"]
    counted = {"variable": {"compute": {"visits": "has(vars.visits) ? vars.visits + 1 : 1"}}}
    document = {
        **EXAMPLE,
        "name": "brief-twice",
        "start": "prep",
        "nodes": {
            "prep": {"kind": "set", "vars": {"prepared": True}, "next": "draft"},
            "draft": {**draft, "on_enter": [counted, *draft["on_enter"]]},
        },
    }
    accepted(uow, "PublishWorkflow", {"definition": document})
    started = accepted(uow, "StartRun", {"workflow": "brief-twice", "input": ACME})
    source = uuid.UUID(started["run_id"])
    await work(uow.get(source), uow)
    uow.save()
    assert uow.get(source).status == "completed"
    forked = uuid.UUID(
        accepted(
            uow,
            "ForkRun",
            {
                "source_run_id": str(source),
                "from_node": "draft",
                "variables": {"account": "ignored: the entry action sets it again"},
            },
        )["run_id"]
    )
    run = await work(uow.get(forked), uow)
    assert run.status == "completed"
    assert run.nodes["prep"].get("reused")
    assert run.variables["brief"] == uow.get(source).variables["brief"]
    assert run.usage["llm_calls"] == 2
    # The fork starts before the node's entry actions, so they count one visit, as before.
    assert run.variables["visits"] == uow.get(source).variables["visits"] == 1


async def test_a_recorded_fork_reserves_the_answers_of_llm_actions_and_calls_no_model(
    uow: UnitOfWork,
) -> None:
    from tests.unit.test_forks import accepted

    accepted(uow, "PublishWorkflow", {"definition": EXAMPLE})
    started = accepted(uow, "StartRun", {"workflow": EXAMPLE["name"], "input": ACME})
    source = uuid.UUID(started["run_id"])
    await work(uow.get(source), uow)
    uow.save()
    forked = uuid.UUID(
        accepted(
            uow,
            "ForkRun",
            {
                "source_run_id": str(source),
                "from_node": "draft",
                "mode": "recorded",
            },
        )["run_id"]
    )
    run = await work(uow.get(forked), uow)
    assert run.status == "completed"
    assert run.variables == uow.get(source).variables
    assert run.usage["llm_calls"] == 0
    events = uow.app.repository.event_store.get(forked)
    assert "LlmRequestReplayed" in [type(e).__name__ for e in events]


def test_a_human_nodes_exit_actions_see_the_decision_a_person_made() -> None:
    run = start(
        workflow(
            review={
                "kind": "human",
                "title": "Approve the brief for {{ input.customer }}?",
                "on_exit": [
                    {
                        "conditional": {
                            "if": 'output.decision == "approve"',
                            "then": [
                                {
                                    "document": {
                                        "name": "approval.txt",
                                        "content_type": "text/plain",
                                        "template": "approved by {{ output.by }}",
                                    }
                                }
                            ],
                            "else": [{"variable": {"set": {"escalate": "yes"}}}],
                        }
                    }
                ],
            },
        )
    )
    run.collect_events()
    run.complete_task("review", "ada", "approve", None, "fine", now=datetime.now(UTC))
    [saved] = [e for e in run.collect_events() if type(e).__name__ == "ArtifactSaved"]
    assert (saved.name, saved.content, saved.action) == (
        "approval.txt",
        "approved by ada",
        "nodes.review.on_exit[0].conditional.then[0]",
    )
    assert run.status == "completed"
    assert "escalate" not in run.variables


def test_a_wait_node_still_entering_does_not_take_a_signal_meant_for_its_wait() -> None:
    from domain.errors import SignalIgnored

    run = start(
        workflow(
            hold={
                "kind": "wait",
                "event": 'event.name == "paid"',
                "output": "payment",
                "on_enter": [{"llm": {"model": "scripted:echo", "prompt": "hi", "output": "note"}}],
            },
        )
    )
    assert run.action_waiting("hold") is not None
    with pytest.raises(SignalIgnored):
        run.signal("paid", {}, "ada", now=datetime.now(UTC))
    assert run.nodes["hold"]["status"] == "running"


async def test_an_agent_whose_exit_action_waits_asks_its_model_no_more(uow: UnitOfWork) -> None:
    from handlers.reactions.agents import drive_agent
    from handlers.reactions.tools import builtin_tools

    run = start(
        workflow(
            solve={
                "kind": "agent",
                "model": "scripted:agent",
                "prompt": "6 times 7?",
                "tools": ["calculator"],
                "output": "answer",
                "options": {
                    "replies": [
                        {
                            "tool_calls": [
                                {"name": "calculator", "arguments": {"expression": "6*7"}}
                            ]
                        },
                        "It is {{ messages[-1].content }}.",
                    ]
                },
                "on_exit": [
                    {
                        "llm": {
                            "model": "scripted:echo",
                            "prompt": "Check: {{ output }}",
                            "output": "checked",
                        }
                    }
                ],
            },
        )
    )
    uow.add(run)

    async def decide(decision: Any) -> Any:
        return decision()

    call = LlmCall(run.id, "solve", 1, run.llm_request("solve"), kind="agent")
    await drive_agent(call, uow, complete, builtin_tools().run, decide)
    assert run.usage["llm_calls"] == 2  # two turns, then the exit action waits
    assert run.action_waiting("solve") is not None
    await work(run, uow)
    assert run.variables["checked"] == "Check: It is 42."
    assert run.status == "completed"


def test_a_repeated_result_of_a_node_whose_exit_actions_wait_changes_nothing() -> None:
    from domain.errors import NodeNotRunning

    run = start(
        workflow(
            ask={
                "kind": "remote",
                "capability": "crm",
                "output": "account",
                "on_exit": [
                    {
                        "llm": {
                            "model": "scripted:echo",
                            "prompt": "Sum up {{ output }}",
                            "output": "summary",
                        }
                    }
                ],
            },
        )
    )
    run.complete_remote(
        "ask", 1, "ok", {"name": "Acme"}, None, [], "crm-worker",
        now=datetime.now(UTC), allowed_hosts=frozenset(),
    )  # fmt: skip
    run.collect_events()
    with pytest.raises(NodeNotRunning):
        run.complete_remote(
            "ask", 1, "ok", {"name": "Acme"}, None, [], "crm-worker",
            now=datetime.now(UTC), allowed_hosts=frozenset(),
        )  # fmt: skip
    assert run.collect_events() == []


def test_an_action_answer_the_model_did_not_finish_fails_the_node() -> None:
    from tests.unit.test_runs import answer

    run = start(workflow(first={**EXAMPLE["nodes"]["draft"]}))
    waiting = run.action_waiting("first")
    assert waiting is not None
    cut = answer("low: Ac").model_copy(update={"finish_reason": "length"})
    run.complete_llm_request(waiting["request_id"], cut, now=datetime.now(UTC))
    assert run.status == "failed"
    assert run.error["class"] == "incomplete"
    assert run.error["message"].endswith(
        "scripted did not finish the answer (length: it reached max_tokens): raise its max_tokens"
    )
    assert "risk" not in run.variables
