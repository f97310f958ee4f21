"""Chat threads and the `chat` node: the thread decides (replies, branches, completion),
the handlers route commands and make the worker's replies with the scripted model. No
network: the in-memory store."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid
from domain.threads import Thread, chat_thread_id
from handlers.commands.intake import handle_command
from handlers.reactions.model_calls import LlmOutcome, call_llm
from handlers.reactions.threads import (
    close_chat_threads,
    open_chat_threads,
    post_run_answers,
    record_replies,
    replies_due,
)
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork
from tests.unit.test_agent import complete

SUPPORT = {
    "name": "support",
    "start": "chat",
    "nodes": {
        "chat": {
            "kind": "chat",
            "model": "scripted:support",
            "system": "You help {{ input.customer }} with order {{ input.order }}.",
            "greeting": "Hello {{ input.customer }}, how can I help?",
            "options": {"reply": "[{{ messages[0].content }}] you said: {{ prompt }}"},
            "branches": {
                "thanks": {"label": "Thank you", "reply": "Glad to help, {{ input.customer }}!"},
                "summary": {"prompt": "Summarize the chat in one line."},
                "later": {"action": "snooze", "until": "2h"},
                "skip": {"action": "skip"},
                "escalate": {"action": "escalate", "role": "lead", "priority": 95},
                "monday": {"action": "schedule", "at": "2030-01-07T09:00:00Z"},
            },
            "role": "csm",
            "output": "chat",
            "next": "after",
        },
        "after": {"kind": "set", "vars": {"done": "{{ vars.chat.data.resolution }}"}},
    },
}
INPUT = {"customer": "Ada", "order": "A-17"}
counter = iter(range(1_000_000))


def send(uow: UnitOfWork, type_: str, tenant: str = "default", **payload: Any) -> dict[str, Any]:
    """Decide one command as the intake does; its receipt's result (or reason)."""
    command = {
        "command_id": f"c{next(counter)}",
        "type": type_,
        "tenant": tenant,
        "actor": "ada",
        "payload": json.loads(json.dumps(payload, default=str)),
    }
    record = Record("heddle.commands", 0, next(counter), b"", json.dumps(command).encode(), {})
    receipt = handle_command(record, uow)
    assert receipt is not None
    uow.save()
    return receipt.as_result()


def worker_sees(uow: UnitOfWork, aggregate_id: uuid.UUID) -> list[dict[str, Any]]:
    """The aggregate's events as envelopes, as the worker reads them from Kafka."""
    return [
        {
            "type": f"{type(e).__qualname__}",
            "aggregate_id": str(aggregate_id),
            "aggregate_version": e.originator_version,
            "data": {k: v for k, v in e.__dict__.items() if not k.startswith("originator")},
        }
        for e in uow.app.repository.event_store.get(aggregate_id)
    ]


async def work(uow: UnitOfWork, *aggregate_ids: uuid.UUID) -> None:
    """One pass of the worker over these aggregates' events: open threads, post run
    answers, make due replies."""
    events = [e for a in aggregate_ids for e in worker_sees(uow, a)]
    open_chat_threads(events, uow)
    post_run_answers(events, uow)
    close_chat_threads(events, uow)
    uow.save()
    calls = replies_due(events, uow)
    outcomes: list[LlmOutcome] = [await call_llm(c, complete) for c in calls]
    record_replies(outcomes, uow)
    uow.save()


async def start_support(uow: UnitOfWork) -> tuple[uuid.UUID, uuid.UUID]:
    assert send(uow, "PublishWorkflow", definition=SUPPORT)["status"] == "accepted"
    run_id = uuid.UUID(send(uow, "StartRun", workflow="support", input=INPUT)["result"]["run_id"])
    await work(uow, run_id)
    return run_id, chat_thread_id(run_id, "chat", 1)


def texts(uow: UnitOfWork, thread_id: uuid.UUID) -> list[tuple[str, str]]:
    thread = uow.get(thread_id)
    return [(m["role"], m["content"]) for m in thread.messages]


async def test_a_chat_node_opens_a_thread_that_answers_with_the_runs_context(
    uow: UnitOfWork,
) -> None:
    run_id, thread_id = await start_support(uow)
    thread = uow.get(thread_id)
    assert thread.binding == {
        "run_id": str(run_id),
        "node_id": "chat",
        "attempt": 1,
        "workflow": "support",
    }
    assert uow.get(run_id).tasks["chat"]["role"] == "csm"

    send(uow, "PostMessage", thread_id=thread_id, content="Where is my parcel?")
    await work(uow, thread_id)
    send(uow, "PostMessage", thread_id=thread_id, content="Thanks")
    await work(uow, thread_id)

    assert texts(uow, thread_id) == [
        ("assistant", "Hello Ada, how can I help?"),
        ("user", "Where is my parcel?"),
        ("assistant", "[You help Ada with order A-17.] you said: Where is my parcel?"),
        ("user", "Thanks"),
        ("assistant", "[You help Ada with order A-17.] you said: Thanks"),
    ]
    reply = uow.get(thread_id).messages[2]
    assert (reply["provider"], reply["model"], reply["author"]) == ("scripted", "support", "heddle")
    assert uow.get(run_id).usage["llm_calls"] == 2, "the run pays for its chat's replies"


async def test_a_redelivered_reply_request_calls_no_model_again(uow: UnitOfWork) -> None:
    _, thread_id = await start_support(uow)
    send(uow, "PostMessage", thread_id=thread_id, content="Hi")
    await work(uow, thread_id)
    assert replies_due(worker_sees(uow, thread_id), uow) == []


async def test_a_reply_request_names_its_message_and_the_reply_sees_the_chat_up_to_it(
    uow: UnitOfWork,
) -> None:
    _, thread_id = await start_support(uow)
    send(uow, "PostMessage", thread_id=thread_id, content="First")
    send(uow, "PostMessage", thread_id=thread_id, content="Second")

    events = worker_sees(uow, thread_id)
    requested = [e["data"] for e in events if e["type"] == "Thread.ReplyRequested"]
    calls = replies_due(events, uow)

    assert [(r["message_id"], r["request"]) for r in requested] == [("m2", None), ("m3", None)]
    greeting = ["You help Ada with order A-17.", "Hello Ada, how can I help?"]
    assert [[m.content for m in c.request.messages] for c in calls] == [
        [*greeting, "First"],
        [*greeting, "First", "Second"],
    ]


async def test_completing_the_thread_completes_the_chat_node_and_the_run_moves_on(
    uow: UnitOfWork,
) -> None:
    run_id, thread_id = await start_support(uow)
    send(uow, "PostMessage", thread_id=thread_id, content="Refund please")
    await work(uow, thread_id)
    result = send(uow, "CompleteThread", thread_id=thread_id, data={"resolution": "refunded"})

    assert result["status"] == "accepted", result
    run = uow.get(run_id)
    assert run.status == "completed"
    assert run.variables["done"] == "refunded"
    assert [m["content"] for m in run.variables["chat"]["messages"]][1] == "Refund please"
    assert run.tasks["chat"]["status"] == "completed"
    late = send(uow, "PostMessage", thread_id=thread_id, content="one more thing")
    assert late["status"] == "rejected"
    assert late["reason"] == f"thread {thread_id} is completed: it takes no more messages"


async def test_a_fixed_branch_replies_at_once_and_an_llm_branch_with_its_own_prompt(
    uow: UnitOfWork,
) -> None:
    _, thread_id = await start_support(uow)
    send(uow, "PostMessage", thread_id=thread_id, content="", branch="thanks")
    send(uow, "PostMessage", thread_id=thread_id, content="", branch="summary")
    await work(uow, thread_id)

    assert texts(uow, thread_id)[1:] == [
        ("user", ""),
        ("assistant", "Glad to help, Ada!"),
        ("user", ""),
        ("assistant", "[You help Ada with order A-17.] you said: Summarize the chat in one line."),
    ]
    assert [m["branch"] for m in uow.get(thread_id).messages[1:]] == [
        "thanks",
        "thanks",
        "summary",
        "summary",
    ]


async def test_saved_actions_snooze_escalate_and_skip_act_on_the_run(uow: UnitOfWork) -> None:
    run_id, thread_id = await start_support(uow)
    assert send(uow, "PostMessage", thread_id=thread_id, branch="escalate")["status"] == "accepted"
    assert uow.get(run_id).tasks["chat"]["priority"] == 95
    assert send(uow, "PostMessage", thread_id=thread_id, branch="later")["status"] == "accepted"
    run = uow.get(run_id)
    assert run.status == "paused"
    assert [t["purpose"] for t in run.timers.values()] == ["resume"]
    assert send(uow, "PostMessage", thread_id=thread_id, branch="monday")["status"] == "accepted"
    assert [t["fire_at"] for t in uow.get(run_id).timers.values()][
        -1
    ] == "2030-01-07T09:00:00+00:00"
    send(uow, "ResumeRun", run_id=run_id)
    refused = send(uow, "PostMessage", thread_id=thread_id, branch="monday")
    assert refused["reason"] == f"run {run_id} is running, not paused"

    assert send(uow, "PostMessage", thread_id=thread_id, branch="skip")["status"] == "accepted"
    chat = uow.get(run_id).nodes["chat"]
    assert (chat["status"], chat["output"]) == ("completed", None)
    assert uow.get(thread_id).status == "completed"


async def test_an_unknown_branch_is_rejected_naming_the_branches(uow: UnitOfWork) -> None:
    _, thread_id = await start_support(uow)
    result = send(uow, "PostMessage", thread_id=thread_id, branch="nope")
    assert result["reason"] == (
        f"thread {thread_id} has no branch 'nope' (its branches: thanks, summary, later, skip, "
        "escalate, monday)"
    )
    assert len(uow.get(thread_id).messages) == 1, "a rejected message is not posted"


async def test_another_tenants_thread_is_not_found(uow: UnitOfWork) -> None:
    _, thread_id = await start_support(uow)
    for command, payload in (("PostMessage", {"content": "hi"}), ("CompleteThread", {})):
        result = send(uow, command, tenant="intruder", thread_id=thread_id, **payload)
        assert (result["status"], result["reason"]) == ("rejected", f"no thread {thread_id}")


def test_a_chat_node_with_a_bad_branch_is_invalid_with_the_path_of_each_problem() -> None:
    document = {
        **SUPPORT,
        "nodes": {
            **SUPPORT["nodes"],
            "chat": {
                **SUPPORT["nodes"]["chat"],
                "model": None,
                "branches": {
                    "both": {"reply": "a", "action": "skip"},
                    "summary": {"prompt": "Summarize"},
                    "later": {"action": "snooze"},
                },
            },
        },
    }
    with pytest.raises(DefinitionInvalid) as invalid:
        parse_definition(document)
    assert [str(p) for p in invalid.value.problems] == [
        "nodes.chat.branches.both: a branch needs exactly one of reply, prompt and action",
        "nodes.chat.branches.summary.model: an LLM branch needs a model here or on the node",
        "nodes.chat.branches.later.until: a snooze branch needs until",
    ]


async def test_a_free_thread_answers_in_the_tenants_ai_mode(uow: UnitOfWork) -> None:
    opened = send(uow, "OpenThread", title="help")
    thread_id = uuid.UUID(opened["result"]["thread_id"])
    assert opened["result"]["replies"] == "none"
    send(uow, "PostMessage", thread_id=thread_id, content="anyone?")
    await work(uow, thread_id)
    assert texts(uow, thread_id) == [("user", "anyone?")]

    refused = send(uow, "ConfigureTenant", ai_mode="simple")
    assert refused["reason"] == "model: the simple mode needs a model"
    send(uow, "ConfigureTenant", ai_mode="simple", model="scripted:echo", system="Be brief.")
    thread_id = uuid.UUID(send(uow, "OpenThread")["result"]["thread_id"])
    send(uow, "PostMessage", thread_id=thread_id, content="ping")
    await work(uow, thread_id)
    assert texts(uow, thread_id) == [("user", "ping"), ("assistant", "ping")]
    assert isinstance(uow.get(thread_id), Thread)


async def test_an_orchestrator_thread_answers_through_an_agent_with_the_tenants_tools(
    uow: UnitOfWork,
) -> None:
    from handlers.reactions.agents import drive_agent
    from handlers.reactions.model_calls import llm_calls_due
    from handlers.reactions.tools import builtin_tools

    replies = [
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
        "It is {{ messages[-1].content }}.",
    ]
    send(
        uow,
        "ConfigureTenant",
        ai_mode="orchestrator",
        model="scripted:agent",
        tools=["calculator"],
        options={"replies": replies},
    )
    thread_id = uuid.UUID(send(uow, "OpenThread")["result"]["thread_id"])
    run_id = uuid.UUID(
        send(uow, "PostMessage", thread_id=thread_id, content="what is 6*7?")["result"]["run_id"]
    )
    tools = builtin_tools()

    async def decide(fn: Any) -> Any:
        return fn()

    for call in llm_calls_due(worker_sees(uow, run_id), uow):
        await drive_agent(call, uow, complete, tools.run, decide)
    uow.save()
    await work(uow, run_id)

    assert uow.get(run_id).status == "completed"
    assert texts(uow, thread_id) == [("user", "what is 6*7?"), ("assistant", "It is 42.")]


def test_the_reading_docs_name_every_field_of_a_thread_a_message_and_the_streams_end() -> None:
    from pathlib import Path

    from api.http.threads import thread_end
    from projections.threads import MESSAGE_FIELDS, THREAD_FIELDS

    reading = (Path(__file__).parents[2] / "docs" / "reading.md").read_text()
    section = reading.split("## Chat threads", 1)[1].split("\n## ", 1)[0]
    completed = {
        "type": "Thread.Completed",
        "data": {"outcome": "completed"},
        "aggregate_version": 9,
        "position": 70,
    }
    end = thread_end(uuid.uuid4(), completed)
    assert end is not None
    for field in [*THREAD_FIELDS, *MESSAGE_FIELDS, *end]:
        assert f"`{field}`" in section, field


async def test_a_cancelled_run_closes_its_chat_thread_as_cancelled(uow: UnitOfWork) -> None:
    run_id, thread_id = await start_support(uow)
    send(uow, "CancelRun", run_id=run_id, reason="customer left")
    await work(uow, run_id)

    thread = uow.get(thread_id)
    assert (thread.status, thread.output["data"]) == ("completed", {})
    closed = worker_sees(uow, thread_id)[-1]
    assert (closed["type"], closed["data"]["outcome"]) == ("Thread.Completed", "cancelled")
    late = send(uow, "CompleteThread", thread_id=thread_id)
    assert late["reason"] == f"thread {thread_id} is completed already (cancelled)"


async def test_a_reply_that_fails_for_good_is_recorded_and_never_retried(uow: UnitOfWork) -> None:
    failing = {**SUPPORT, "name": "failing", "nodes": {**SUPPORT["nodes"], "chat": {
        **SUPPORT["nodes"]["chat"], "options": {"fail": [{"status": 401}]}}}}  # fmt: skip
    send(uow, "PublishWorkflow", definition=failing)
    run_id = uuid.UUID(send(uow, "StartRun", workflow="failing", input=INPUT)["result"]["run_id"])
    await work(uow, run_id)
    thread_id = chat_thread_id(run_id, "chat", 1)
    send(uow, "PostMessage", thread_id=thread_id, content="hello?")
    await work(uow, thread_id)

    failed = worker_sees(uow, thread_id)[-1]
    assert (failed["type"], failed["data"]["error"]["status"]) == ("Thread.ReplyFailed", 401)
    assert texts(uow, thread_id)[-1] == ("user", "hello?")
    assert replies_due(worker_sees(uow, thread_id), uow) == []
