"""Commands that change a `Thread`: open it, post to it, complete it.

Each decides on the `Thread` (and on the run it is bound to or driven by) in one unit of
work. A branch's saved action goes to the run through the same handlers as the run
commands it stands for (`PauseRun`, `SkipNode`, `ReassignTask`, `ResumeRun`).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any
from uuid import UUID

from domain.commands import (
    CompleteThread,
    OpenThread,
    PauseRun,
    PostMessage,
    ReassignTask,
    ResumeRun,
    SkipNode,
    StartRun,
)
from domain.errors import NodeNotRunning, SignalIgnored, ThreadInvalid, ThreadNotFound
from domain.messages import CommandEnvelope
from domain.runs import WorkflowRun
from domain.tenants import NO_AI, ORCHESTRATOR, TenantSettings, orchestrator, settings_id
from domain.threads import Replies, Thread, thread_id_for
from handlers.commands.context import Context
from handlers.commands.definitions import published_definition
from handlers.commands.runs import (
    new_run,
    pause_run,
    reassign_task,
    resume_run,
    skip_node,
    start_run,
)
from handlers.unit_of_work import UnitOfWork


def thread_of(uow: UnitOfWork, thread_id: UUID, tenant: str) -> Thread:
    """The thread `thread_id` of `tenant`; another tenant's is not found, as none is."""
    thread = uow.get(thread_id, Thread)
    if thread is None or thread.tenant != tenant:
        raise ThreadNotFound(f"no thread {thread_id}")
    return thread


def open_thread(
    command: OpenThread, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Open a free thread: answered by runs of `workflow`, or in the tenant's AI mode."""
    thread_id = command.thread_id or thread_id_for(envelope.tenant, envelope.command_id)
    if uow.exists(thread_id):
        raise ThreadInvalid(f"thread {thread_id} exists already: choose another thread_id")
    reply = None
    replies: Replies
    if command.workflow:
        published_definition(uow, envelope.tenant, command.workflow)
        replies = "run"
    else:
        settings = uow.get(settings_id(envelope.tenant), TenantSettings)
        ai = settings.ai if settings is not None else NO_AI
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
    command: PostMessage, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Post a person's message; a branch's action is applied to the bound run, and a
    thread answered by runs hands the message to its run (or starts one)."""
    thread = thread_of(uow, command.thread_id, envelope.tenant)
    message = thread.post(command.content, envelope.actor, command.branch)
    result: dict[str, Any] = {"thread_id": str(thread.id), "message_id": message["message_id"]}
    if command.branch is not None:
        action = thread.branches[command.branch].get("action")
        if action is not None:
            result["action"] = take_action(thread, command.branch, envelope, uow, ctx)
    elif thread.replies == "run":
        result["run_id"] = str(advance_conversation(thread, message, envelope, uow, ctx))
    return result


def take_action(
    thread: Thread, branch: str, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
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
            PauseRun(run_id=run_id, reason=reason, until=chosen["until"]), envelope, uow, ctx
        )
    if action == "schedule":
        return resume_run(ResumeRun(run_id=run_id, at=chosen["at"]), envelope, uow, ctx)
    if action == "escalate":
        changes = {k: chosen.get(k) for k in ("assignee", "role", "priority")}
        return reassign_task(
            ReassignTask(run_id=run_id, task=node_id, reason=reason, **changes), envelope, uow, ctx
        )
    done = skip_node(SkipNode(run_id=run_id, node=node_id, reason=reason), envelope, uow, ctx)
    thread.complete(envelope.actor, {}, outcome="skipped")
    return done


def advance_conversation(
    thread: Thread,
    message: dict[str, Any],
    envelope: CommandEnvelope,
    uow: UnitOfWork,
    ctx: Context,
) -> UUID:
    """The run that answers the thread takes the message: a run waiting in a `wait` node
    for the `message` event goes on with it; with no run, or the last one finished, a new
    run starts at the start node."""
    run = uow.get(thread.run_id, WorkflowRun) if thread.run_id else None
    data = {
        "thread_id": str(thread.id),
        "message_id": message["message_id"],
        "content": message["content"],
    }
    if run is not None and not run.is_finished:
        try:
            run.signal("message", data, envelope.actor, now=ctx.now)
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
        start_run(
            StartRun(workflow=thread.workflow, run_id=run_id, input=input), envelope, uow, ctx
        )
        return run_id
    assert thread.reply is not None  # the tenant's orchestrator settings when it opened
    spec = orchestrator(thread.reply)
    new_run(
        uow, run_id, envelope, ctx,  # thread_of: the thread is the envelope's tenant's
        workflow=ORCHESTRATOR,
        version=0,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=input,
    )  # fmt: skip
    return run_id


def complete_thread(
    command: CompleteThread, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Close a thread; a `chat` node's thread completes the node, and the run moves on."""
    thread = thread_of(uow, command.thread_id, envelope.tenant)
    output = thread.complete(envelope.actor, command.data)
    result: dict[str, Any] = {"thread_id": str(thread.id), "status": thread.status}
    if thread.binding is not None:
        run = uow.get(UUID(thread.binding["run_id"]), WorkflowRun)
        assert run is not None  # a thread is bound to a run that exists
        with suppress(NodeNotRunning):  # the run ended or moved on: only the thread closes
            run.complete_chat(
                thread.binding["node_id"], thread.binding["attempt"], envelope.actor, output,
                now=ctx.now,
            )  # fmt: skip
            result.update(run_id=str(run.id), run_status=run.status)
    return result
