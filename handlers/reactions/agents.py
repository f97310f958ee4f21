"""Agent nodes: the worker's loop of model turns and tool calls, and the agents whose
tool calls child runs have answered (their next turn is due)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from itertools import count
from typing import Any, Protocol, TypeVar
from uuid import UUID

from domain.definitions import AgentNode
from domain.errors import NodeNotRunning
from domain.llm import LlmRequest, ToolCall
from domain.messages import RunEvent
from domain.runs import WorkflowRun
from handlers.reactions.model_calls import (
    CompleteLlm,
    Decide,
    LlmCall,
    PublishToken,
    Recorder,
    call_llm,
    record_llm_outcomes,
)
from handlers.unit_of_work import UnitOfWork, decide_and_save

T = TypeVar("T")


class RunTool(Protocol):
    """Runs one tool call an agent asked for: (ok, content for the model). `key` is the
    same for every try of the call (an HTTP tool sends it as `Idempotency-Key`)."""

    def __call__(self, call: ToolCall, key: str | None = None) -> Awaitable[tuple[bool, str]]: ...


async def drive_agent(
    call: LlmCall,
    uow: UnitOfWork,
    complete: CompleteLlm,
    run_tool: RunTool,
    decide: Decide[Any],
    publish: PublishToken | None = None,
    fresh: Callable[[], UnitOfWork] | None = None,
) -> None:
    """Run an agent node until the run says it is done: model turn, then the tools it
    asked for, then the next turn with their results. `decide` runs a decision on the
    thread that owns the run's aggregate. With `fresh` (a new unit of work), each turn and
    each tool result is saved as soon as it is in, so a crash resumes at the next turn."""

    def saved(apply: Callable[[UnitOfWork], T]) -> T:
        if fresh is None:
            return apply(uow)
        made: list[T] = []

        def again(current: UnitOfWork) -> None:
            made[:] = [apply(current)]

        decide_and_save(again, uow, fresh)
        return made[0]

    def next_work() -> tuple[LlmRequest | None, list[ToolCall], int]:
        run = uow.get(call.run_id, WorkflowRun)
        if run is None:
            return None, [], 0
        try:
            run.check_node_is_running(call.node_id, call.attempt)
        except NodeNotRunning:  # it ended, or its answer is in and its exit actions run
            return None, [], 0
        state = run.nodes[call.node_id]
        pending = run.pending_tool_calls(call.node_id)
        step = state.get("steps", 0) + 1
        # Tool calls that child runs answer end this loop: their results come as commands,
        # and the worker picks the agent up again then (`agents_to_resume`).
        waiting = pending or run.waits_for_children(call.node_id)
        return (None if waiting else run.agent_request(call.node_id)), pending, step

    sequence = count()
    while True:
        request, pending, step = await decide(next_work)
        if request is None and not pending:
            return
        if request is not None:
            turn = LlmCall(
                call.run_id,
                call.node_id,
                call.attempt,
                request,
                call.tenant,
                call.kind,
                call.stream,
            )
            recorder = Recorder(uow, decide, saves=fresh is not None)
            outcome = await call_llm(turn, complete, publish, step, recorder, sequence)
            pending = await decide(partial(saved, partial(record_llm_outcomes, [outcome])))
        results = [
            (
                tool_call,
                await run_tool(
                    tool_call,
                    idempotency_key(call.run_id, call.node_id, call.attempt, tool_call.id),
                ),
            )
            for tool_call in pending
        ]
        if results:
            await decide(partial(saved, partial(_record_tool_results, call, results)))


def idempotency_key(run_id: UUID, node_id: str, attempt: int, call_id: str) -> str:
    """`run:node:attempt:call`: the same for a tool call however often it is made."""
    return f"{run_id}:{node_id}:{attempt}:{call_id}"


def _record_tool_results(
    call: LlmCall, results: list[tuple[ToolCall, tuple[bool, str]]], uow: UnitOfWork
) -> None:
    run = uow.get(call.run_id, WorkflowRun)
    if run is None:
        return
    for tool_call, (ok, content) in results:
        try:
            run.complete_tool_call(call.node_id, call.attempt, tool_call.id, ok, content)
        except NodeNotRunning:
            return


def agents_to_resume(events: list[dict[str, Any]], uow: UnitOfWork) -> list[LlmCall]:
    """Agent nodes whose last tool call a child run has just answered (in these decoded
    events): their next model turn is due (the agent loop ended while the children ran)."""
    calls = []
    for envelope in events:
        if envelope["type"] != RunEvent.TOOL_CALL_COMPLETED:
            continue
        data = envelope["data"]
        run = uow.get(UUID(envelope["aggregate_id"]), WorkflowRun, envelope["aggregate_version"])
        answered = (data["node_id"], data["attempt"], data["call_id"])
        if run is None or not any(
            (child["node_id"], child["attempt"], child.get("call_id")) == answered
            for child in run.children.values()
        ):
            continue
        node_id, attempt = data["node_id"], data["attempt"]
        try:
            run.check_node_is_running(node_id, attempt)
        except NodeNotRunning:
            continue
        state = run.nodes[node_id]
        last = (state.get("messages") or [{}])[-1]
        if (
            last.get("tool_call_id") != data["call_id"]
            or run.pending_tool_calls(node_id)
            or run.waits_for_children(node_id)
        ):
            continue
        node = run.spec.nodes[node_id]
        assert isinstance(node, AgentNode)
        request = run.agent_request(node_id)
        calls.append(LlmCall(run.id, node_id, attempt, request, run.tenant, "agent", node.stream))
    return calls
