"""The run worker: reacts to `NodeStarted` of nodes that need I/O and records outcomes.

Nodes that need no I/O (`switch`, `set`) are decided inside the aggregate as soon as
they are ready. A model call is made because a `NodeStarted` event says so, and only
while the run still shows that node attempt running, so a redelivered event repeats
nothing. The answer is recorded in the run with everything a replay needs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from domain.errors import NodeNotRunning
from domain.llm import LlmError, LlmRequest, LlmResult
from domain.runs import IO_NODE_KINDS
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork

NODE_STARTED = "WorkflowRun.NodeStarted"

OnTryFailed = Callable[[int, LlmError, float | None], Awaitable[None]]
CompleteLlm = Callable[[LlmRequest, OnTryFailed], Awaitable[LlmResult]]


@dataclass(frozen=True, slots=True)
class LlmCall:
    """A model call a run is waiting for."""

    run_id: UUID
    node_id: str
    attempt: int
    request: LlmRequest


@dataclass(slots=True)
class LlmOutcome:
    """What came of a call: a result or a final error, and every failed try before."""

    call: LlmCall
    result: LlmResult | None = None
    error: LlmError | None = None
    failed_tries: list[tuple[int, LlmError, float | None]] = field(default_factory=list)


def decode_events(records: list[Record]) -> list[dict[str, Any]]:
    """The envelopes of events the worker may act on (the relay names each event's type
    in a header, so the others are never decoded)."""
    return [
        json.loads(record.value)
        for record in records
        if record.headers.get("type", NODE_STARTED) == NODE_STARTED
    ]


def llm_calls_due(events: list[dict[str, Any]], uow: UnitOfWork) -> list[LlmCall]:
    """The model calls that started nodes are waiting for, once each."""
    due: dict[tuple[UUID, str, int], LlmCall] = {}
    for envelope in events:
        if envelope["type"] != NODE_STARTED or envelope["data"]["kind"] not in IO_NODE_KINDS:
            continue
        run_id = UUID(envelope["aggregate_id"])
        node_id, attempt = envelope["data"]["node_id"], envelope["data"]["attempt"]
        run = uow.get(run_id, at_least_version=envelope["aggregate_version"])
        if run is None or run.is_finished:
            continue
        state = run.nodes.get(node_id, {})
        if state.get("status") == "running" and state.get("attempt") == attempt:
            request = LlmRequest.model_validate(envelope["data"]["input"])
            due[(run_id, node_id, attempt)] = LlmCall(run_id, node_id, attempt, request)
    return list(due.values())


async def call_llm(call: LlmCall, complete: CompleteLlm) -> LlmOutcome:
    """Make one model call through the retrying provider; never raises for model errors."""
    outcome = LlmOutcome(call)

    async def on_try_failed(try_number: int, error: LlmError, retry_in: float | None) -> None:
        outcome.failed_tries.append((try_number, error, retry_in))

    try:
        outcome.result = await complete(call.request, on_try_failed)
    except LlmError as error:
        outcome.error = error
    return outcome


def record_llm_outcomes(outcomes: list[LlmOutcome], uow: UnitOfWork) -> None:
    """Record each outcome in its run, which then schedules what comes next."""
    for outcome in outcomes:
        call = outcome.call
        run = uow.get(call.run_id)
        if run is None:
            continue
        try:
            for try_number, error, retry_in in outcome.failed_tries:
                run.record_llm_failure(
                    call.node_id, call.attempt, try_number, error.to_dict(), retry_in
                )
            if outcome.result is not None:
                run.complete_llm_call(call.node_id, call.attempt, outcome.result)
            elif outcome.error is not None:
                run.fail_node(call.node_id, call.attempt, outcome.error.to_dict())
        except NodeNotRunning:
            continue
