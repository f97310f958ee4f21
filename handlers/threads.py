"""Threads: the commands people send about chats, and the worker's part in them.

Commands (`OpenThread`, `PostMessage`, `CompleteThread`, `ConfigureTenant`) decide on
the `Thread` (and on the run it is bound to or driven by) in one unit of work. A branch's
saved action goes to the run through the same handlers as the run commands it stands for
(`PauseRun`, `SkipNode`, `ReassignTask`, `ResumeRun`).

The worker opens the thread of each started `chat` node (and closes it when the node ends
without it), makes the model replies that threads wait for (`Thread.ReplyRequested`,
once each: only while the thread still awaits it; a chat node's run pays for them), and
posts the answers of the runs that answer threads as the assistant's messages.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.commands import (
    CommandEnvelope,
    CompleteThread,
    ConfigureTenant,
    OpenThread,
    PauseRun,
    PostMessage,
    ReassignTask,
    ResumeRun,
    SkipNode,
    StartRun,
)
from domain.definitions import definition_id
from domain.errors import (
    NodeNotRunning,
    SignalIgnored,
    ThreadInvalid,
    ThreadNotFound,
    WorkflowNotFound,
)
from domain.llm import LlmRequest
from domain.runs import WorkflowRun
from domain.tenants import NO_AI, ORCHESTRATOR, TenantSettings, orchestrator, settings_id
from domain.threads import Replies, Thread, chat_thread_id, thread_id_for
from handlers.controls import pause_run, reassign_task, resume_run, skip_node
from handlers.run_worker import THREAD_EVENTS, LlmCall, LlmOutcome, waiting_nodes
from handlers.unit_of_work import UnitOfWork

REPLY_REQUESTED, NODE_COMPLETED = THREAD_EVENTS[:2]
CHAT_ENDINGS = {
    "WorkflowRun.Cancelled": "cancelled",
    "WorkflowRun.Failed": "failed",
    "WorkflowRun.NodeFailed": "failed",
    "WorkflowRun.NodeRetryScheduled": "failed",
    "WorkflowRun.StepSkipped": "skipped",
}
"""How a chat node's open thread ends when the node ends without it."""
ANSWERING_KINDS = ("llm", "agent")
"""The nodes whose answer a run that answers a thread posts as the assistant's message."""


def thread_of(uow: UnitOfWork, thread_id: UUID, tenant: str) -> Thread:
    """The thread `thread_id` of `tenant`; another tenant's is not found, as none is."""
    thread = uow.get(thread_id)
    if not isinstance(thread, Thread) or thread.tenant != tenant:
        raise ThreadNotFound(f"no thread {thread_id}")
    return thread


# Commands


def open_thread(command: OpenThread, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    """Open a free thread: answered by runs of `workflow`, or in the tenant's AI mode."""
    thread_id = command.thread_id or thread_id_for(envelope.tenant, envelope.command_id)
    if uow.get(thread_id) is not None:
        raise ThreadInvalid(f"thread {thread_id} exists already: choose another thread_id")
    reply = None
    replies: Replies
    if command.workflow:
        definition = uow.get(definition_id(envelope.tenant, command.workflow))
        if definition is None or not definition.versions:
            raise WorkflowNotFound(
                f"no workflow named {command.workflow!r} is published for tenant "
                f"{envelope.tenant!r}: publish it first (PUT /v1/workflows/{command.workflow})"
            )
        replies = "run"
    else:
        settings = uow.get(settings_id(envelope.tenant))
        ai = settings.ai if isinstance(settings, TenantSettings) else NO_AI
        if ai.get("model") is None:
            replies = "none"
        elif ai["ai_mode"] == "orchestrator":
            replies, reply = "run", dict(ai)
        else:
            replies = "llm"
            reply = {
                k: ai.get(k) for k in ("model", "system", "temperature", "max_tokens", "credential")
            }
            reply.update(options=ai.get("options", {}), stream=True)
    thread = Thread(
        thread_id=thread_id,
        tenant=envelope.tenant,
        actor=envelope.actor,
        title=command.title,
        replies=replies,
        reply=reply,
        workflow=command.workflow,
    )
    uow.add(thread)
    return {"thread_id": str(thread_id), "replies": replies}


def post_message(
    command: PostMessage, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    """Post a person's message; a branch's action is applied to the bound run, and a
    thread answered by runs hands the message to its run (or starts one)."""
    thread = thread_of(uow, command.thread_id, envelope.tenant)
    message = thread.post(command.content, envelope.actor, command.branch)
    result: dict[str, Any] = {"thread_id": str(thread.id), "message_id": message["message_id"]}
    if command.branch is not None:
        action = thread.branches[command.branch].get("action")
        if action is not None:
            result["action"] = take_action(thread, command.branch, envelope, uow)
    elif thread.replies == "run":
        result["run_id"] = str(advance_conversation(thread, message, envelope, uow))
    return result


def take_action(
    thread: Thread, branch: str, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    """Apply a branch's saved action to the run whose `chat` node the thread belongs to."""
    chosen = thread.branches[branch]
    if thread.binding is None:
        raise ThreadInvalid(
            f"branch {branch!r} acts on a run, and thread {thread.id} belongs to none"
        )
    run_id, node_id = UUID(thread.binding["run_id"]), thread.binding["node_id"]
    reason = chosen.get("reason") or f"branch {branch!r} of thread {thread.id}"
    action = chosen["action"]
    if action == "snooze":
        return pause_run(
            PauseRun(run_id=run_id, reason=reason, until=chosen["until"]), envelope, uow
        )
    if action == "schedule":
        return resume_run(ResumeRun(run_id=run_id, at=chosen["at"]), envelope, uow)
    if action == "escalate":
        changes = {k: chosen.get(k) for k in ("assignee", "role", "priority")}
        return reassign_task(
            ReassignTask(run_id=run_id, task=node_id, reason=reason, **changes), envelope, uow
        )
    done = skip_node(SkipNode(run_id=run_id, node=node_id, reason=reason), envelope, uow)
    thread.complete(envelope.actor, {}, outcome="skipped")
    return done


def advance_conversation(
    thread: Thread, message: dict[str, Any], envelope: CommandEnvelope, uow: UnitOfWork
) -> UUID:
    """The run that answers the thread takes the message: a run waiting in a `wait` node
    for the `message` event goes on with it; with no run, or the last one finished, a new
    run starts at the start node."""
    run = uow.get(thread.run_id) if thread.run_id else None
    data = {
        "thread_id": str(thread.id),
        "message_id": message["message_id"],
        "content": message["content"],
    }
    if isinstance(run, WorkflowRun) and not run.is_finished:
        try:
            run.signal("message", data, envelope.actor, now=datetime.now(UTC))
        except SignalIgnored:
            raise ThreadInvalid(
                f"the run {run.id} that answers thread {thread.id} is busy and waits for no "
                "message now: post again once it has answered"
            ) from None
        return run.id
    run_id = thread.next_run()
    messages = [{"role": m["role"], "content": m["content"]} for m in thread.messages]
    input = {"thread_id": str(thread.id), "message": message["content"], "messages": messages}
    if thread.workflow is not None:
        start = StartRun(workflow=thread.workflow, run_id=run_id, input=input)
        from handlers.intake import start_run  # intake imports this module

        start_run(start, envelope, uow)
        return run_id
    assert thread.reply is not None  # the tenant's orchestrator settings when it opened
    spec = orchestrator(thread.reply)
    run = WorkflowRun(
        run_id=run_id,
        tenant=thread.tenant,
        actor=envelope.actor,
        workflow=ORCHESTRATOR,
        version=0,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=input,
        command_id=envelope.command_id,
    )
    run.advance(now=datetime.now(UTC))
    uow.add(run)
    return run_id


def complete_thread(
    command: CompleteThread, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    """Close a thread; a `chat` node's thread completes the node, and the run moves on."""
    thread = thread_of(uow, command.thread_id, envelope.tenant)
    output = thread.complete(envelope.actor, command.data)
    result: dict[str, Any] = {"thread_id": str(thread.id), "status": thread.status}
    if thread.binding is not None:
        run = uow.get(UUID(thread.binding["run_id"]))
        with suppress(NodeNotRunning):  # the run ended or moved on: only the thread closes
            run.complete_chat(
                thread.binding["node_id"], thread.binding["attempt"], envelope.actor, output,
                now=datetime.now(UTC),
            )
            result.update(run_id=str(run.id), run_status=run.status)
    return result


def configure_tenant(
    command: ConfigureTenant, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    """Set the tenant's AI mode; threads opened from now on answer that way."""
    settings = uow.get(settings_id(envelope.tenant))
    if settings is None:
        settings = TenantSettings(tenant=envelope.tenant)
        uow.add(settings)
    settings.configure(command.model_dump(mode="json"), envelope.actor)
    return {"tenant": envelope.tenant, "ai_mode": command.ai_mode, "model": command.model}


# The worker


def open_chat_threads(events: list[dict[str, Any]], uow: UnitOfWork) -> list[Thread]:
    """Open the thread of each started `chat` node that is still running, once."""
    opened = []
    for run, data, _ in waiting_nodes(events, uow, {"chat"}):
        chat = data["input"]
        thread_id = UUID(chat["thread_id"])
        if uow.get(thread_id) is not None:
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
        run = uow.get(UUID(envelope["aggregate_id"]), envelope["aggregate_version"])
        if not isinstance(run, WorkflowRun):
            continue
        for node_id, node in run.spec.nodes.items():
            state = run.nodes.get(node_id, {})
            if node.kind != "chat" or state.get("status") in ("running", "pending"):
                continue
            for attempt in range(1, state.get("attempt", 0) + 1):
                thread = uow.get(chat_thread_id(run.id, node_id, attempt))
                if isinstance(thread, Thread) and thread.status == "open":
                    thread.complete("heddle", {}, outcome=outcome)


def replies_due(events: list[dict[str, Any]], uow: UnitOfWork) -> list[LlmCall]:
    """The model replies threads wait for, once each (a reply already made is not due)."""
    calls: dict[tuple[str, str], LlmCall] = {}
    for envelope in events:
        if envelope["type"] != REPLY_REQUESTED:
            continue
        thread = uow.get(UUID(envelope["aggregate_id"]), envelope["aggregate_version"])
        reply_id = envelope["data"]["reply_id"]
        if not isinstance(thread, Thread) or not thread.awaits(reply_id):
            continue
        stream = bool((thread.reply or {}).get("stream", True))
        request = LlmRequest.model_validate(envelope["data"]["request"])
        calls[(envelope["aggregate_id"], reply_id)] = LlmCall(
            thread.id, reply_id, 1, request, thread.tenant, "reply", stream
        )
    return list(calls.values())


def threads_answered(calls: list[LlmCall], uow: UnitOfWork) -> dict[UUID, UUID]:
    """The threads that these calls' runs answer (conversation and orchestrator runs), by
    run id: their token deltas are also published keyed by the thread."""
    threads = {}
    for call in calls:
        run = uow.get(call.run_id) if call.kind != "reply" else None
        if not isinstance(run, WorkflowRun) or not isinstance(run.input.get("thread_id"), str):
            continue
        thread = uow.get(UUID(run.input["thread_id"]))
        if isinstance(thread, Thread) and thread.run_id == run.id:
            threads[run.id] = thread.id
    return threads


def record_replies(outcomes: list[LlmOutcome], uow: UnitOfWork) -> None:
    """Record each reply (or why there is none) in its thread; a chat node's run pays
    for its thread's replies (`ChatReplyCompleted`: its usage and budget count them)."""
    for outcome in outcomes:
        thread = uow.get(outcome.call.run_id)
        reply_id = outcome.call.node_id
        if not isinstance(thread, Thread) or not thread.awaits(reply_id):
            continue
        if outcome.result is not None:
            thread.record_reply(reply_id, outcome.result)
            if thread.binding is not None:
                run = uow.get(UUID(thread.binding["run_id"]))
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
        if envelope["type"] != NODE_COMPLETED or not isinstance(data["output"], str):
            continue  # only text answers: most completed nodes never load their run here
        run = uow.get(UUID(envelope["aggregate_id"]), envelope["aggregate_version"])
        thread_id = run.input.get("thread_id") if isinstance(run, WorkflowRun) else None
        if not isinstance(thread_id, str):
            continue
        node = run.spec.nodes.get(data["node_id"])
        if node is None or node.kind not in ANSWERING_KINDS:
            continue
        thread = uow.get(UUID(thread_id))
        if not isinstance(thread, Thread) or thread.run_id != run.id or thread.status != "open":
            continue
        provider, _, model = node.model.partition(":")
        source = {"run_id": str(run.id), "node_id": data["node_id"]}
        thread.say(f"{run.id}:{data['node_id']}", data["output"], source, provider, model)


__all__ = [
    "close_chat_threads",
    "complete_thread",
    "configure_tenant",
    "open_chat_threads",
    "open_thread",
    "post_message",
    "post_run_answers",
    "record_replies",
    "replies_due",
    "threads_answered",
]
