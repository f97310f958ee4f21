"""Edges with a `when`, a trigger, validators or a loop bound: given a definition, when
nodes complete (and variables change, timers fire, judges answer), then the run moves,
waits, blocks or loops as docs/workflows.md says."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from eventsourcing.application import project_aggregate
from pydantic import TypeAdapter

from domain.definitions import parse_definition
from domain.edits import Edit, apply_edits
from domain.errors import DefinitionInvalid, LlmRequestNotPending, RunNotActive
from domain.llm import LlmRequest
from domain.runs import WorkflowRun
from handlers.reactions.llm_requests import answer_llm_request, llm_requests_due, record_llm_answers
from handlers.replay import node_facts
from handlers.unit_of_work import UnitOfWork
from infra.llm.scripted import ScriptedProvider
from projections.run_timeline import summarize
from tests.unit.test_agent import complete
from tests.unit.test_docs import documented
from tests.unit.test_forks import accepted
from tests.unit.test_replay import envelopes, history
from tests.unit.test_scheduling import answer, start

EXAMPLES = Path(__file__).parents[2] / "examples"


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def flow(next: Any, **more: Any) -> dict[str, Any]:
    """`write` sets a draft and hands over through `next` to `publish`."""
    return {
        "name": "flow",
        "start": "write",
        "nodes": {
            "write": {"kind": "set", "vars": {"draft": "{{ input.draft }}"}, "next": next, **more},
            "publish": {"kind": "set", "vars": {"published": True}},
        },
    }


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionInvalid) as invalid:
        parse_definition(document)
    return [str(p) for p in invalid.value.problems]


# The definition


def test_a_plain_next_keeps_its_form_and_content_hash_and_means_the_same_as_one_edge() -> None:
    hello = yaml.safe_load((EXAMPLES / "hello.yaml").read_text())
    golden = Path(__file__).parents[1] / "golden" / "hello-ada.state.json"
    assert (
        parse_definition(hello).content_hash() == yaml.safe_load(golden.read_text())["content_hash"]
    )
    assert parse_definition(hello).canonical()["nodes"]["greet"]["next"] == "route"
    plain, listed = (
        start(flow("publish"), {"draft": "x"}),
        start(flow([{"to": "publish"}]), {"draft": "x"}),
    )
    assert plain.status == listed.status == "completed"
    assert plain.edges == listed.edges == {"write->publish": "taken"}


def test_every_problem_of_an_edge_list_is_reported_with_its_path() -> None:
    document = flow(
        [
            {"to": "publsh", "when": "vars.x >"},
            {
                "to": "publish",
                "trigger": {"condition": "((", "schedule": None},
                "validators": [
                    {"expression": "size(", "message": "short"},
                    {"llm": {"model": "scripted:judge", "prompt": "{{ vars.draft"}},
                ],
            },
            {"to": "publish"},
        ]
    )
    assert problems(document) == [
        "nodes.write.next[0].to: unknown node 'publsh' (known: write, publish)",
        "nodes.write.next[0].when: invalid CEL: vars.x >",
        "nodes.write.next[1].trigger.condition: invalid CEL: ((",
        "nodes.write.next[1].validators[0].expression: invalid CEL: size(",
        "nodes.write.next[1].validators[1].llm.prompt: line 1: unexpected end of template, "
        "expected 'end of print statement'.",
        "nodes.write.next[2].to: 'write' has an edge to 'publish' already",
    ]


def test_bad_schedules_durations_and_bounds_are_rejected_with_their_paths() -> None:
    document = flow(
        [
            {"to": "publish", "trigger": {"schedule": {"cron": "0 25 * * *"}}},
            {"to": "write", "loop": {"max_iterations": 1}},
        ]
    )
    document["nodes"]["other"] = {
        "kind": "set",
        "vars": {"a": 1},
        "next": [{"to": "publish", "trigger": {"schedule": {"delay": "ten minutes"}}}],
    }
    document["nodes"]["more"] = {"kind": "set", "vars": {"a": 1}, "next": 7}
    assert problems(document) == [
        "nodes.write.next[0].trigger.schedule.cron: Value error, '0 25 * * *' is not a cron "
        "expression: give five fields, minute hour day-of-month month day-of-week, "
        "e.g. '0 9 * * 1-5'",
        "nodes.write.next[1].loop.max_iterations: Input should be greater than or equal to 2",
        "nodes.other.next[0].trigger.schedule.delay: "
        "String should match pattern '^\\d+(\\.\\d+)?\\s*(s|m|h|d)$'",
        "nodes.more.next: give a node id or a list of edges",
    ]


def test_a_cycle_without_a_loop_edge_and_a_loop_edge_that_closes_no_cycle_are_rejected() -> None:
    document = {
        "name": "c",
        "start": "a",
        "nodes": {
            "a": {
                "kind": "set",
                "vars": {"x": 1},
                "next": [{"to": "b"}, {"to": "c", "loop": {"max_iterations": 3}}],
            },
            "b": {"kind": "set", "vars": {"x": 1}, "next": "c"},
            "c": {"kind": "set", "vars": {"x": 1}, "next": "b"},
        },
    }
    assert problems(document) == [
        "nodes.a.next[1].loop: a loop edge must lead back to a node before 'a', but 'c' does "
        "not lead to 'a': drop loop, or point it at an earlier node",
        "nodes.b: cycle: b -> c -> b; "
        "only a loop edge (loop: {max_iterations: N}) may close a cycle",
    ]


def test_a_loop_edge_takes_no_trigger_or_validators() -> None:
    document = flow("publish")
    document["nodes"]["publish"]["next"] = [
        {"to": "write", "loop": {"max_iterations": 2}, "trigger": {"schedule": {"delay": "1m"}}}
    ]
    assert problems(document) == [
        "nodes.publish.next[0]: a loop edge is decided at once when its source completes: "
        "give it a when, not a trigger or validators",
    ]


# When


def test_edges_whose_when_is_false_are_skipped_and_the_others_taken() -> None:
    document = flow([{"to": "publish", "when": "size(vars.draft) > 3"}, {"to": "archive"}])
    document["nodes"]["archive"] = {"kind": "set", "vars": {"archived": True}}
    run = start(document, {"draft": "hi"})
    assert run.status == "completed"
    assert run.edges == {"write->publish": "skipped", "write->archive": "taken"}
    assert run.variables == {"draft": "hi", "archived": True}


def test_a_when_that_cannot_be_evaluated_fails_its_source_node_saying_which_edge() -> None:
    run = start(flow([{"to": "publish", "when": "vars.missing > 1"}]), {"draft": "hi"})
    assert run.status == "failed"
    assert run.error["node"] == "write"
    assert run.error["class"] == "definition"
    assert run.error["message"].startswith("the edge to 'publish': when: 'vars.missing > 1' failed")


# Condition triggers


APPROVAL = flow([{"to": "publish", "trigger": {"condition": "vars.approved == true"}}])


def test_a_condition_edge_waits_and_the_run_waits_until_a_variable_change_makes_it_true() -> None:
    run = start(APPROVAL, {"draft": "hi"})
    assert run.status == "waiting"
    assert run.edges == {"write->publish": "waiting"}
    assert names(run.collect_events())[-2:] == ["EdgeDecided", "RunWaiting"]
    run.set_variables({"approved": False}, "ada", "not yet", now=datetime.now(UTC))
    assert run.status == "waiting"
    run.set_variables({"approved": True}, "ada", "looks good", now=datetime.now(UTC))
    assert run.status == "completed"
    assert run.variables == {"draft": "hi", "approved": True, "published": True}
    assert names(run.collect_events()) == [
        "VariablesSet",
        "VariablesSet",
        "EdgeDecided",
        "NodeStarted",
        "NodeCompleted",
        "Completed",
    ]


def test_a_condition_edge_is_checked_again_when_another_node_sets_the_variable() -> None:
    document = flow(
        [{"to": "publish", "trigger": {"condition": "vars.approved"}}, {"to": "approve"}]
    )
    document["nodes"]["approve"] = {"kind": "set", "vars": {"approved": True}}
    run = start(document, {"draft": "hi"})
    assert run.status == "completed"
    assert run.edges == {"write->publish": "taken", "write->approve": "taken"}


def test_a_finished_run_takes_no_variables() -> None:
    run = start(flow("publish"), {"draft": "x"})
    with pytest.raises(RunNotActive, match="is completed: its variables cannot change"):
        run.set_variables({"a": 1}, "ada", now=datetime.now(UTC))


# Schedules


def test_a_delayed_edge_sets_a_durable_timer_and_is_taken_when_it_fires() -> None:
    before = datetime.now(UTC)
    run = start(
        flow([{"to": "publish", "trigger": {"schedule": {"delay": "10m"}}}]), {"draft": "x"}
    )
    assert run.status == "waiting"
    timer = run.timers["edge:write->publish:1"]
    assert timer["purpose"] == "edge"
    assert 599 <= (datetime.fromisoformat(timer["fire_at"]) - before).total_seconds() <= 601
    assert run.fire_timer("edge:write->publish:1", now=datetime.now(UTC)) is True
    assert run.status == "completed"
    assert run.fire_timer("edge:write->publish:1", now=datetime.now(UTC)) is False


def test_a_cron_edge_fires_at_the_next_time_the_expression_names() -> None:
    run = start(
        flow([{"to": "publish", "trigger": {"schedule": {"cron": "0 9 * * 1-5"}}}]), {"draft": "x"}
    )
    at = datetime.fromisoformat(run.timers["edge:write->publish:1"]["fire_at"])
    assert (at.hour, at.minute, at.second) == (9, 0, 0)
    assert at.weekday() < 5
    assert 0 < (at - datetime.now(UTC)).total_seconds() <= 3 * 86400 + 60


# Validators


SHORT = flow(
    [
        {
            "to": "publish",
            "validators": [
                {"expression": "size(vars.draft) > 5", "message": "the draft is too short"}
            ],
        }
    ]
)


def test_a_failing_validator_blocks_the_transition_and_fails_its_source_with_class_validation() -> (
    None
):
    run = start(SHORT, {"draft": "hi"})
    events = run.collect_events()
    blocked = next(e for e in events if type(e).__name__ == "TransitionBlocked")
    assert (blocked.source, blocked.target, blocked.validator, blocked.kind, blocked.reason) == (
        "write",
        "publish",
        0,
        "expression",
        "the draft is too short",
    )
    assert run.status == "failed"
    assert run.error == {
        "node": "write",
        "class": "validation",
        "message": "no transition out of 'write' passed its validators: "
        "to 'publish': the draft is too short",
    }
    assert run.nodes["publish"]["status"] == "skipped"


def test_a_passing_validator_lets_the_transition_through() -> None:
    run = start(SHORT, {"draft": "long enough"})
    assert run.status == "completed"
    assert run.edges == {"write->publish": "taken"}


def test_a_blocked_transition_is_retried_when_the_source_retries_validation_errors() -> None:
    document = {
        "name": "redo",
        "start": "draft",
        "nodes": {
            "draft": {
                "kind": "llm",
                "model": "scripted:w",
                "prompt": "write",
                "output": "draft",
                "retry": {"attempts": 3, "backoff": "1s", "errors": ["validation"]},
                "next": [{"to": "publish", "validators": [{"expression": "size(vars.draft) > 5"}]}],
            },
            "publish": {"kind": "set", "vars": {"published": True}},
        },
    }
    run = start(document)
    run.complete_llm_call("draft", 1, answer("hi"), now=datetime.now(UTC))
    assert run.nodes["draft"]["status"] == "retrying"
    assert "draft->publish" not in run.edges
    run.fire_timer("retry:draft:1", now=datetime.now(UTC))
    run.complete_llm_call("draft", 2, answer("a longer draft"), now=datetime.now(UTC))
    assert run.status == "completed"
    assert run.variables["published"] is True


def test_a_blocked_transition_hands_over_to_the_on_error_node() -> None:
    document = flow(
        [{"to": "publish", "validators": [{"expression": "false", "message": "never"}]}],
        on_error="fix",
    )
    document["nodes"]["fix"] = {"kind": "set", "vars": {"fixed": True}}
    run = start(document, {"draft": "x"})
    assert run.status == "completed"
    assert run.nodes["write"]["error"]["class"] == "validation"
    assert run.nodes["publish"]["status"] == "skipped"
    assert run.variables["fixed"] is True


def test_a_blocked_edge_with_another_way_on_counts_as_skipped() -> None:
    document = flow([{"to": "publish", "validators": [{"expression": "false"}]}, {"to": "archive"}])
    document["nodes"]["archive"] = {"kind": "set", "vars": {"archived": True}}
    run = start(document, {"draft": "x"})
    assert run.status == "completed"
    assert run.nodes["publish"]["status"] == "skipped"
    assert run.edges["write->publish"] == "blocked"


JUDGED = flow(
    [
        {
            "to": "publish",
            "validators": [
                {"expression": "size(vars.draft) > 0"},
                {
                    "llm": {
                        "model": "scripted:judge",
                        "prompt": "Is this polite? {{ vars.draft }}",
                    },
                    "message": "the reply is not polite",
                },
            ],
        }
    ]
)


def test_an_llm_validator_asks_a_model_once_and_its_no_blocks_the_transition_with_the_reason() -> (
    None
):
    run = start(JUDGED, {"draft": "Go away"})
    assert run.status == "running"
    assert run.edges == {"write->publish": "validating"}
    [(request_id, pending)] = run.llm_requests.items()
    assert request_id == "validator:write->publish:1:1"
    assert pending["purpose"] == "validator"
    assert pending["request"]["messages"][-1]["content"] == "Is this polite? Go away"
    run.complete_llm_request(
        request_id, answer('{"pass": false, "reason": "it is rude"}'), now=datetime.now(UTC)
    )
    assert run.status == "failed"
    assert run.blocked == {"write->publish": "the reply is not polite: it is rude"}
    assert run.usage["llm_calls"] == 1
    with pytest.raises(LlmRequestNotPending):
        run.complete_llm_request(request_id, answer("yes"), now=datetime.now(UTC))


def test_an_llm_validator_that_says_yes_takes_the_edge_and_replays_without_a_model() -> None:
    run = start(JUDGED, {"draft": "Dear Ada, thank you"})
    run.complete_llm_request(
        "validator:write->publish:1:1", answer("Yes, it is polite."), now=datetime.now(UTC)
    )
    assert run.status == "completed"
    rebuilt = project_aggregate(None, run.collect_events())
    assert rebuilt.__dict__ == run.__dict__


def test_a_judge_that_cannot_be_asked_blocks_the_transition_saying_so() -> None:
    run = start(JUDGED, {"draft": "hi"})
    run.fail_llm_request(
        "validator:write->publish:1:1",
        {"class": "fatal", "message": "401 bad key"},
        now=datetime.now(UTC),
    )
    assert run.status == "failed"
    assert (
        run.blocked["write->publish"]
        == "the reply is not polite: the judge could not be asked: 401 bad key"
    )


async def test_the_worker_answers_a_run_level_request_with_the_scripted_model(
    uow: UnitOfWork,
) -> None:
    document = flow(
        [
            {
                "to": "publish",
                "validators": [
                    {
                        "llm": {
                            "model": "scripted:judge",
                            "prompt": "Polite? {{ vars.draft }}",
                            "options": {"reply": "no: it shouts"},
                        }
                    }
                ],
            }
        ]
    )
    run = start(document, {"draft": "STOP"})
    uow.add(run)
    uow.save()
    envelopes = [
        {
            "type": "WorkflowRun." + type(e).__name__.split(".")[-1],
            "aggregate_id": str(run.id),
            "aggregate_version": e.originator_version,
            "data": e.__dict__,
        }
        for e in uow.app.repository.event_store.get(run.id)
    ]
    due = llm_requests_due(envelopes, uow)
    assert [d.request_id for d in due] == ["validator:write->publish:1:0"]
    answers = [await answer_llm_request(d, complete) for d in due]
    record_llm_answers(answers, uow)
    uow.save()
    stored = uow.get(run.id)
    assert stored.status == "failed"
    assert stored.blocked == {"write->publish": "it shouts"}
    assert llm_requests_due(envelopes, uow) == []  # answered: a redelivery asks nothing


# Loops


def review(max_iterations: int = 3) -> dict[str, Any]:
    return {
        "name": "review",
        "start": "plan",
        "nodes": {
            "plan": {"kind": "set", "vars": {"topic": "tea"}, "next": "draft"},
            "draft": {
                "kind": "llm",
                "model": "scripted:w",
                "prompt": "write about {{ vars.topic }}",
                "output": "draft",
                "next": "check",
            },
            "check": {
                "kind": "llm",
                "model": "scripted:c",
                "prompt": "good? {{ vars.draft }}",
                "output": "verdict",
                "next": [
                    {
                        "to": "draft",
                        "loop": {"max_iterations": max_iterations},
                        "when": 'vars.verdict != "good"',
                    },
                    {"to": "publish"},
                ],
            },
            "publish": {"kind": "set", "vars": {"published": "{{ vars.draft }}"}},
        },
    }


def test_a_loop_runs_its_body_again_until_when_is_false() -> None:
    run = start(review())
    run.complete_llm_call("draft", 1, answer("v1"), now=datetime.now(UTC))
    run.complete_llm_call("check", 1, answer("bad"), now=datetime.now(UTC))
    assert run.nodes["draft"] == {
        "status": "running",
        "attempt": 2,
        "kind": "llm",
        "input": run.nodes["draft"]["input"],
    }
    assert run.nodes["check"]["status"] == "pending"
    assert "check->publish" not in run.edges  # left for the next pass
    run.complete_llm_call("draft", 2, answer("v2"), now=datetime.now(UTC))
    run.complete_llm_call("check", 2, answer("good"), now=datetime.now(UTC))
    assert run.status == "completed"
    assert run.variables["published"] == "v2"
    assert run.loops == {"check->draft": 2}
    assert run.nodes["plan"]["attempt"] == 1


def test_a_loop_stops_at_its_bound_and_the_run_leaves_it() -> None:
    run = start(review(max_iterations=3))
    for attempt in (1, 2, 3):
        run.complete_llm_call("draft", attempt, answer(f"v{attempt}"), now=datetime.now(UTC))
        run.complete_llm_call("check", attempt, answer("bad"), now=datetime.now(UTC))
    assert run.status == "completed"
    assert run.variables["published"] == "v3"
    events = run.collect_events()
    loops = [(e.iteration, e.nodes) for e in events if type(e).__name__ == "LoopIterated"]
    assert loops == [(2, ["draft", "check"]), (3, ["draft", "check"])]
    last = [e for e in events if type(e).__name__ == "EdgeDecided" and e.target == "draft"][-1]
    assert last.state == "skipped"
    assert last.reason == "loop bound reached: 3 of 3 iterations ran"
    started = [(e.node_id, e.attempt) for e in events if type(e).__name__ == "NodeStarted"]
    assert started.count(("draft", 3)) == 1
    assert ("draft", 4) not in started
    assert project_aggregate(None, events).__dict__ == run.__dict__


def test_retries_inside_a_loop_count_per_pass() -> None:
    document = review()
    document["nodes"]["draft"]["retry"] = {"attempts": 2, "backoff": "1s"}
    run = start(document)
    run.complete_llm_call("draft", 1, answer("v1"), now=datetime.now(UTC))
    run.complete_llm_call("check", 1, answer("bad"), now=datetime.now(UTC))
    run.fail_node("draft", 2, {"class": "retryable", "message": "503"}, now=datetime.now(UTC))
    assert run.nodes["draft"]["status"] == "retrying"  # attempt 2 is this pass's first try
    run.fire_timer("retry:draft:2", now=datetime.now(UTC))
    assert run.nodes["draft"]["attempt"] == 3


def edits(*items: dict[str, Any]) -> list[Any]:
    return [TypeAdapter(Edit).validate_python(item) for item in items]


def test_graph_edits_add_remove_and_retarget_edges_of_a_next_list() -> None:
    graph = parse_definition(review()).canonical()
    edited = apply_edits(
        graph,
        edits(
            {
                "op": "insert_before",
                "node": "publish",
                "new": "polish",
                "definition": {"kind": "set", "vars": {"polished": True}},
            },
            {"op": "add_node", "node": "archive", "definition": {"kind": "set", "vars": {"a": 1}}},
            {"op": "add_edge", "from": "check", "to": "archive"},
        ),
    )
    assert [e["to"] for e in edited["nodes"]["check"]["next"]] == ["draft", "polish", "archive"]
    assert edited["nodes"]["polish"]["next"] == "publish"
    parse_definition(edited)
    removed = apply_edits(edited, edits({"op": "remove_edge", "from": "check", "to": "draft"}))
    assert [e["to"] for e in removed["nodes"]["check"]["next"]] == ["polish", "archive"]


def test_a_fork_decides_again_the_edges_its_source_left_waiting(uow: UnitOfWork) -> None:
    document = flow(
        [
            {"to": "publish"},
            {"to": "check", "trigger": {"condition": "vars.ok == true"}},
            {"to": "later", "trigger": {"schedule": {"delay": "1h"}}},
        ]
    )
    document["nodes"]["publish"]["next"] = "after"
    for node_id in ("after", "check", "later"):
        document["nodes"][node_id] = {"kind": "set", "vars": {node_id: True}}
    accepted(uow, "PublishWorkflow", {"definition": document})
    source = accepted(uow, "StartRun", {"workflow": "flow", "input": {"draft": "x"}})["run_id"]
    assert uow.get(uuid.UUID(source)).status == "waiting"
    fork = accepted(uow, "ForkRun", {"source_run_id": source, "from_node": "after"})
    forked = uow.get(uuid.UUID(fork["run_id"]))
    assert forked.status == "waiting"
    assert forked.edges["write->check"] == forked.edges["write->later"] == "waiting"
    assert forked.timers["edge:write->later:1"]["status"] == "pending"
    accepted(uow, "SetVariables", {"run_id": fork["run_id"], "variables": {"ok": True}})
    accepted(uow, "FireTimer", {"run_id": fork["run_id"], "timer": "edge:write->later:1"})
    forked = uow.get(uuid.UUID(fork["run_id"]))
    assert forked.status == "completed"
    assert forked.variables["check"] is forked.variables["later"] is True


def test_a_waiting_run_can_pause_and_waits_again_when_resumed() -> None:
    run = start(APPROVAL, {"draft": "hi"})
    run.pause("ada", "holiday", now=datetime.now(UTC))
    run.set_variables({"approved": True}, "bo", now=datetime.now(UTC))
    assert run.status == "paused"
    assert run.nodes["publish"]["status"] == "pending"
    run.resume("ada", now=datetime.now(UTC))
    assert run.status == "completed"


async def answer_everything(run: WorkflowRun) -> None:
    """Answer the model calls of nodes and of the run itself with the scripted provider,
    as the worker would, until nothing is asked any more."""
    provider = ScriptedProvider()
    while True:
        running = [n for n, s in run.nodes.items() if s["status"] == "running"]
        asked = [r for r, s in run.llm_requests.items() if s["status"] == "pending"]
        if not running and not asked:
            return
        for node_id in running:
            result = await provider.complete(run.llm_request(node_id))
            run.complete_llm_call(
                node_id, run.nodes[node_id]["attempt"], result, now=datetime.now(UTC)
            )
        for request_id in asked:
            request = LlmRequest.model_validate(run.llm_requests[request_id]["request"])
            run.complete_llm_request(
                request_id, await provider.complete(request), now=datetime.now(UTC)
            )


async def test_the_documented_reply_review_loops_to_its_bound_then_waits_for_approval() -> None:
    run = start(documented("reply-review"))
    await answer_everything(run)
    assert run.status == "waiting"
    assert run.nodes["draft"]["attempt"] == run.nodes["review"]["attempt"] == 3
    assert run.edges == {
        "draft->review": "taken",
        "review->draft": "skipped",
        "review->publish": "waiting",
    }
    run.set_variables({"approved": True}, "ada", now=datetime.now(UTC))
    await answer_everything(run)
    assert run.status == "completed"
    assert run.variables["published"] == run.variables["reply"]


def test_a_recorded_fork_re_serves_the_judges_answer_instead_of_asking_again(
    uow: UnitOfWork,
) -> None:
    accepted(uow, "PublishWorkflow", {"definition": JUDGED})
    source = accepted(uow, "StartRun", {"workflow": "flow", "input": {"draft": "Dear Ada"}})
    run = uow.get(uuid.UUID(source["run_id"]))
    run.complete_llm_request("validator:write->publish:1:1", answer("yes"), now=datetime.now(UTC))
    uow.save()
    fork = accepted(
        uow,
        "ForkRun",
        {"source_run_id": source["run_id"], "from_node": "write", "mode": "recorded"},
    )
    forked = uow.get(uuid.UUID(fork["run_id"]))
    assert forked.status == "completed"
    assert [r["status"] for r in forked.llm_requests.values()] == ["completed"]
    assert forked.usage["llm_calls"] == 0
    kinds = names(uow.app.repository.event_store.get(forked.id))
    assert "LlmRequestReplayed" in kinds
    assert "LlmRequestCompleted" not in kinds


def test_an_immediate_trigger_is_the_same_edge_as_none() -> None:
    written = parse_definition(flow([{"to": "publish", "trigger": "immediate"}]))
    assert written.content_hash() == parse_definition(flow([{"to": "publish"}])).content_hash()
    assert problems(flow([{"to": "publish", "trigger": "later"}])) == [
        "nodes.write.next[0].trigger: Input should be a valid dictionary or instance of Trigger"
    ]


def test_following_a_run_prints_its_loops_and_waits_and_outlasts_keep_alive_pings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli import client as cli

    def message(kind: str, data: dict[str, Any], version: int) -> str:
        return f"id: {version}:0\nevent: {kind}\ndata: {json.dumps(data)}\n\n"

    def event(kind: str, version: int, **data: Any) -> str:
        return message("event", {"type": f"WorkflowRun.{kind}", "data": data}, version)

    body = (
        event("LoopIterated", 8, source="review", target="draft", iteration=2, nodes=["draft"])
        + event("RunWaiting", 12, edges=["review->publish"])
        + ": ping - 2026-11-23 19:20:00\n\n"  # sent every 15 s while the run waits
        + message("end", {"status": "completed", "position": 40}, 15)
    )

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    with httpx.Client(transport=httpx.MockTransport(serve), base_url="http://heddle") as client:
        end = cli.stream(client, "r1", cli.StreamPrinter(quiet=False))
    assert end == {"status": "completed", "position": 40}
    printed = capsys.readouterr().out
    assert "loop review -> draft: iteration 2" in printed
    assert "waiting for review->publish" in printed


def test_the_review_loop_history_reads_pass_by_pass_in_node_facts_and_the_timeline() -> None:
    events = envelopes(history("review-loop"))
    looped = next(i for i, e in enumerate(events) if e["type"] == "WorkflowRun.LoopIterated")
    facts = node_facts(events[: looped + 1])
    assert (facts["draft"]["status"], facts["draft"]["attempts"]) == ("pending", 1)
    facts = node_facts(events)
    assert (facts["draft"]["status"], facts["draft"]["attempts"]) == ("completed", 2)
    assert facts["draft"]["llm_calls"] == facts["review"]["llm_calls"] == 2
    assert facts["review"]["iterations"] == 2
    summaries = [summarize(e) for e in events]
    assert "loop review -> draft: iteration 2, running again draft, review" in summaries
    assert "review -> draft: skipped (when '!vars.verdict.startsWith(\"APPROVED\")' is false)" in (
        summaries
    )
    assert "review -> send: taken (validated)" in summaries
    assert "validator asks scripted:judge (validator:review->send:2:1)" in summaries


def test_a_switch_takes_no_next_list_because_it_goes_on_through_its_cases() -> None:
    document = flow("publish")
    document["nodes"]["route"] = {
        "kind": "switch",
        "cases": [{"when": "true", "next": "publish"}],
        "next": [{"to": "publish", "validators": [{"expression": "false"}]}],
    }
    document["nodes"]["write"]["next"] = "route"
    assert problems(document) == [
        "nodes.route.next: a switch goes on through its cases and default only"
    ]
