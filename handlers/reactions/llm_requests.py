"""Run-level model calls: the worker answers the `LlmRequested` events of runs.

A run asks for a model call outside any node (an edge's `llm` validator; any purpose in
`domain.runs.LLM_REQUEST_PURPOSES`) by recording `LlmRequested` with the whole request.
The worker makes the call through the one retry layer and records the answer (or the
final error) in the run, which acts on it. The call is made only while the run still
waits for it, so a redelivered event repeats nothing, and a replay reads the recorded
answer instead of calling a provider.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.errors import LlmRequestNotPending
from domain.llm import LlmError, LlmRequest, LlmResult
from domain.messages import RunEvent
from domain.runs import WorkflowRun
from handlers.reactions.model_calls import CompleteLlm
from handlers.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class LlmRequestDue:
    """A run-level model call a run waits for."""

    run_id: UUID
    request_id: str
    request: LlmRequest
    tenant: str


@dataclass(frozen=True, slots=True)
class LlmRequestAnswer:
    due: LlmRequestDue
    result: LlmResult | None
    error: LlmError | None


def llm_requests_due(events: list[dict[str, Any]], uow: UnitOfWork) -> list[LlmRequestDue]:
    """The run-level model calls that runs wait for, once each."""
    due: dict[tuple[str, str], LlmRequestDue] = {}
    for envelope in events:
        if envelope["type"] != RunEvent.LLM_REQUESTED:
            continue
        data = envelope["data"]
        run = uow.get(UUID(envelope["aggregate_id"]), WorkflowRun, envelope["aggregate_version"])
        if run is None:
            continue
        try:
            pending = run.check_llm_request_pending(data["request_id"])
        except LlmRequestNotPending:
            continue
        request = LlmRequest.model_validate(pending["request"])  # the stored one, not the wire's
        key = (envelope["aggregate_id"], data["request_id"])
        due[key] = LlmRequestDue(run.id, data["request_id"], request, run.tenant)
    return list(due.values())


async def answer_llm_request(due: LlmRequestDue, complete: CompleteLlm) -> LlmRequestAnswer:
    """Make the call; a model error is an answer too (the run decides what it means)."""

    async def tried(try_number: int, error: LlmError, retry_in: float | None) -> None:
        """Failed tries of a run-level call are not recorded; the final outcome is."""

    try:
        return LlmRequestAnswer(due, await complete(due.request, due.tenant, tried), None)
    except LlmError as error:
        return LlmRequestAnswer(due, None, error)


def record_llm_answers(answers: list[LlmRequestAnswer], uow: UnitOfWork) -> None:
    """Record each answer in its run, which then moves on."""
    for answer in answers:
        run = uow.get(answer.due.run_id, WorkflowRun)
        if run is None:
            continue
        with suppress(LlmRequestNotPending):
            if answer.result is not None:
                run.complete_llm_request(
                    answer.due.request_id, answer.result, now=datetime.now(UTC)
                )
            elif answer.error is not None:
                run.fail_llm_request(
                    answer.due.request_id, answer.error.to_dict(), now=datetime.now(UTC)
                )
