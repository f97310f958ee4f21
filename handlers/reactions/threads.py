"""Chat threads, the worker's part: it opens the thread of each started `chat` node (and
closes it when the node ends without it), makes the model replies that threads wait for
(`Thread.ReplyRequested`, once each: only while the thread still awaits it; a chat node's
run pays for them), and posts the answers of the runs that answer threads as the
assistant's messages. (The commands about threads: handlers/commands/threads.py.)
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any
from uuid import UUID

from domain.definitions import AgentNode, LlmNode
from domain.errors import NodeNotRunning
from domain.messages import RunEvent, ThreadEvent
from domain.runs import WorkflowRun
from domain.threads import Thread, chat_thread_id
from handlers.reactions.events import waiting_nodes
from handlers.reactions.model_calls import LlmCall, LlmOutcome
from handlers.unit_of_work import UnitOfWork

CHAT_ENDINGS = {
    RunEvent.CANCELLED: "cancelled",
    RunEvent.FAILED: "failed",
    RunEvent.NODE_FAILED: "failed",
    RunEvent.NODE_RETRY_SCHEDULED: "failed",
    RunEvent.STEP_SKIPPED: "skipped",
}
"""How a chat node's open thread ends when the node ends without it."""
ANSWERING_NODES = (LlmNode, AgentNode)
"""The nodes whose answer a run that answers a thread posts as the assistant's message."""


def open_chat_threads(events: list[dict[str, Any]], uow: UnitOfWork) -> list[Thread]:
    """Open the thread of each started `chat` node that is still running, once."""
    opened = []
    for run, data, _ in waiting_nodes(events, uow, {"chat"}):
        chat = data["input"]
        thread_id = UUID(chat["thread_id"])
        if uow.exists(thread_id):
            continue
        thread = Thread(
            thread_id=thread_id,
            tenant=run.tenant,
            actor="heddle",
            title=chat["title"],
            replies="llm" if chat["reply"] else "none",
            reply=chat["reply"],
            branches=chat["branches"],
            binding={
                "run_id": str(run.id),
                "node_id": data["node_id"],
                "attempt": data["attempt"],
                "workflow": run.workflow,
            },
        )
        if chat.get("greeting"):
            thread.say(
                "greeting", chat["greeting"], {"run_id": str(run.id), "node_id": data["node_id"]}
            )
        uow.add(thread)
        opened.append(thread)
    return opened


def close_chat_threads(events: list[dict[str, Any]], uow: UnitOfWork) -> None:
    """A `chat` node that ended without its thread (the run was cancelled or failed, the
    node was skipped, timed out or failed) closes its open thread, with that outcome."""
    for envelope in events:
        outcome = CHAT_ENDINGS.get(envelope["type"])
        if outcome is None:
            continue
        run = uow.get(UUID(envelope["aggregate_id"]), WorkflowRun, envelope["aggregate_version"])
        if run is None:
            continue
        for node_id, node in run.spec.nodes.items():
            state = run.nodes.get(node_id, {})
            if node.kind != "chat" or state.get("status") in ("running", "pending"):
                continue
            for attempt in range(1, state.get("attempt", 0) + 1):
                thread = uow.get(chat_thread_id(run.id, node_id, attempt), Thread)
                if thread is not None and thread.status == "open":
                    thread.complete("heddle", {}, outcome=outcome)


def replies_due(events: list[dict[str, Any]], uow: UnitOfWork) -> list[LlmCall]:
    """The model replies threads wait for, once each (a reply already made is not due)."""
    calls: dict[tuple[str, str], LlmCall] = {}
    for envelope in events:
        if envelope["type"] != ThreadEvent.REPLY_REQUESTED:
            continue
        thread = uow.get(UUID(envelope["aggregate_id"]), Thread, envelope["aggregate_version"])
        reply_id = envelope["data"]["reply_id"]
        if thread is None or not thread.awaits(reply_id):
            continue
        stream = bool((thread.reply or {}).get("stream", True))
        request = thread.reply_request(reply_id)
        calls[(envelope["aggregate_id"], reply_id)] = LlmCall(
            thread.id, reply_id, 1, request, thread.tenant, "reply", stream
        )
    return list(calls.values())


def threads_answered(calls: list[LlmCall], uow: UnitOfWork) -> dict[UUID, UUID]:
    """The threads that these calls' runs answer (conversation and orchestrator runs), by
    run id: their token deltas are also published keyed by the thread."""
    threads = {}
    for call in calls:
        run = uow.get(call.run_id, WorkflowRun) if call.kind != "reply" else None
        if run is None or not isinstance(run.input.get("thread_id"), str):
            continue
        thread = uow.get(UUID(run.input["thread_id"]), Thread)
        if thread is not None and thread.run_id == run.id:
            threads[run.id] = thread.id
    return threads


def record_replies(outcomes: list[LlmOutcome], uow: UnitOfWork) -> None:
    """Record each reply (or why there is none) in its thread; a chat node's run pays
    for its thread's replies (`ChatReplyCompleted`: its usage and budget count them)."""
    for outcome in outcomes:
        thread = uow.get(outcome.call.run_id, Thread)
        reply_id = outcome.call.node_id
        if thread is None or not thread.awaits(reply_id):
            continue
        if outcome.result is not None:
            thread.record_reply(reply_id, outcome.result)
            if thread.binding is not None:
                run = uow.get(UUID(thread.binding["run_id"]), WorkflowRun)
                assert run is not None  # a thread is bound to a run that exists
                with suppress(NodeNotRunning):  # the node ended meanwhile: the run is done
                    run.record_chat_reply(
                        thread.binding["node_id"], thread.binding["attempt"], reply_id,
                        outcome.result,
                    )  # fmt: skip
        elif outcome.error is not None:
            thread.fail_reply(reply_id, outcome.error.to_dict())


def post_run_answers(events: list[dict[str, Any]], uow: UnitOfWork) -> None:
    """The answer of each `llm` or `agent` node of a run that answers a thread becomes
    the assistant's message in that thread, once."""
    for envelope in events:
        data = envelope["data"]
        if envelope["type"] != RunEvent.NODE_COMPLETED or not isinstance(data["output"], str):
            continue  # only text answers: most completed nodes never load their run here
        run = uow.get(UUID(envelope["aggregate_id"]), WorkflowRun, envelope["aggregate_version"])
        thread_id = run.input.get("thread_id") if run is not None else None
        if run is None or not isinstance(thread_id, str):
            continue
        node = run.spec.nodes.get(data["node_id"])
        if not isinstance(node, ANSWERING_NODES):
            continue
        thread = uow.get(UUID(thread_id), Thread)
        if thread is None or thread.run_id != run.id or thread.status != "open":
            continue
        provider, _, model = node.model.partition(":")
        source = {"run_id": str(run.id), "node_id": data["node_id"]}
        thread.say(f"{run.id}:{data['node_id']}", data["output"], source, provider, model)
