"""Model calls of `llm` and `agent` nodes (and `map` items): found, made, recorded.

Nodes that need no I/O (`switch`, `set`) are decided inside the aggregate as soon as
they are ready. A model call is made because a `NodeStarted` event says so, and only
while the run still shows that node attempt running, so a redelivered event repeats
nothing. The answer is recorded in the run with everything a replay needs.

A streamed call sends its text to `heddle.tokens` as it comes (`TokenDelta`), the
deltas of each try gathered into pieces of at most `TOKEN_PIECE_SECONDS`; only the final
answer is recorded. An `agent` node loops in handlers/reactions/agents.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import count
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.definitions import AgentNode, LlmNode, MapNode
from domain.errors import NodeNotRunning
from domain.llm import LlmDelta, LlmError, LlmRequest, LlmResult, ToolCall
from domain.messages import TokenDelta
from domain.runs import IO_NODE_KINDS, WorkflowRun
from handlers.reactions.events import waiting_nodes
from handlers.unit_of_work import UnitOfWork

log = logging.getLogger("heddle")

# Token deltas are gathered for this long (or up to this much text) before they are
# published: a stream costs a few messages instead of one per delta, unnoticeably later.
TOKEN_PIECE_SECONDS = 0.025
TOKEN_PIECE_CHARS = 4096
T = TypeVar("T")

OnTryFailed = Callable[[int, LlmError, float | None], Awaitable[None]]
OnDelta = Callable[[int, LlmDelta], Awaitable[None]]


class CompleteLlm(Protocol):
    """The one retry layer: a model's answer for `tenant`, streamed when `on_delta` is given."""

    def __call__(
        self,
        request: LlmRequest,
        tenant: str,
        on_try_failed: OnTryFailed,
        on_delta: OnDelta | None = None,
    ) -> Awaitable[LlmResult]: ...


PublishToken = Callable[["TokenDelta"], None]
"""Hands a piece of text to the transport, in order, without waiting for it to be sent."""
Decide = Callable[[Callable[[], T]], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class LlmCall:
    """A model call a run is waiting for."""

    run_id: UUID
    node_id: str
    attempt: int
    request: LlmRequest
    tenant: str = "default"
    kind: str = "llm"
    stream: bool = False
    item: int | None = None
    """The item of a `map` node this call is for."""

    @property
    def label(self) -> str:
        """The node, or the map item (`titles[3]`), as token deltas name it."""
        return self.node_id if self.item is None else f"{self.node_id}[{self.item}]"


class TokenPieces:
    """Gathers the text deltas of a streamed call into `TokenDelta` pieces: a piece is
    published when it is `TOKEN_PIECE_SECONDS` old, holds `TOKEN_PIECE_CHARS`, a new try
    begins, or the call ends (`flush`)."""

    def __init__(
        self, call: LlmCall, step: int, publish: PublishToken, sequence: Iterator[int]
    ) -> None:
        self.call, self.step, self.publish, self.sequence = call, step, publish, sequence
        self._texts: list[str] = []
        self._size = 0
        self._try_number = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, try_number: int, text: str) -> None:
        if try_number != self._try_number:
            self.flush()
            self._try_number = try_number
        self._texts.append(text)
        self._size += len(text)
        if self._size >= TOKEN_PIECE_CHARS:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TOKEN_PIECE_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._texts:
            call, text = self.call, "".join(self._texts)
            self._texts.clear()
            self._size = 0
            self.publish(
                TokenDelta(
                    call.run_id,
                    call.label,
                    call.attempt,
                    self.step,
                    self._try_number,
                    next(self.sequence),
                    text,
                    call.kind == "reply",
                )
            )


@dataclass(slots=True)
class LlmOutcome:
    """What came of a call: a result or a final error, and every failed try before."""

    call: LlmCall
    result: LlmResult | None = None
    error: LlmError | None = None
    failed_tries: list[tuple[int, LlmError, float | None]] = field(default_factory=list)


def llm_calls_due(events: list[dict[str, Any]], uow: UnitOfWork) -> list[LlmCall]:
    """The model calls that started nodes (and map items) are waiting for, once each."""
    calls = []
    for run, data, item in waiting_nodes(events, uow, {*IO_NODE_KINDS, "map"}):
        node = run.spec.nodes[data["node_id"]]
        if isinstance(node, MapNode):
            kind, stream = "llm", node.do.stream
        else:
            assert isinstance(node, LlmNode | AgentNode)  # waiting_nodes: of IO_NODE_KINDS
            kind, stream = node.kind, node.stream
        request = LlmRequest.model_validate(data["input"])
        calls.append(
            LlmCall(
                run.id, data["node_id"], data["attempt"], request, run.tenant, kind, stream, item
            )
        )
    return calls


@dataclass(frozen=True, slots=True)
class Recorder:
    """Where a call records its failed tries as they happen: the batch's runs, and the
    thread that owns them. Recorded at once, a try's event carries the time it failed."""

    uow: UnitOfWork
    decide: Decide[Any]
    saves: bool = False
    """Save each failed try at once (the pipeline), not with the batch's outcomes."""

    async def failed(
        self, call: LlmCall, try_number: int, error: LlmError, retry_in: float | None
    ) -> None:
        failure = partial(_record_failure, call, try_number, error, retry_in, self.uow)
        await self.decide(partial(_saved, failure, self.uow) if self.saves else failure)


async def call_llm(
    call: LlmCall,
    complete: CompleteLlm,
    publish: PublishToken | None = None,
    step: int = 1,
    recorder: Recorder | None = None,
    sequence: Iterator[int] | None = None,
) -> LlmOutcome:
    """Make one model call through the retrying provider; never raises for model errors.
    A streamed call publishes its text in pieces numbered by `sequence` (from 0 unless
    given: an agent's turns continue the numbers of the node attempt) and hands over the
    last piece before it returns."""
    outcome = LlmOutcome(call)

    async def on_try_failed(try_number: int, error: LlmError, retry_in: float | None) -> None:
        if recorder is None:
            outcome.failed_tries.append((try_number, error, retry_in))
        else:
            await recorder.failed(call, try_number, error, retry_in)

    pieces = None
    if call.stream and publish is not None:
        pieces = TokenPieces(call, step, publish, count() if sequence is None else sequence)

    async def on_delta(try_number: int, delta: LlmDelta) -> None:
        assert pieces is not None
        pieces.add(try_number, delta.text)

    try:
        outcome.result = await complete(
            call.request, call.tenant, on_try_failed, on_delta if pieces else None
        )
    except LlmError as error:
        outcome.error = error
    finally:
        if pieces is not None:
            pieces.flush()
    return outcome


def _saved(decision: Callable[[], None], uow: UnitOfWork) -> None:
    """Make a decision and save it; a try recorded while another writer changed the run
    is left out (it is a note on the call, and the call's outcome follows)."""
    decision()
    try:
        uow.save()
    except IntegrityError:
        log.info("a failed try was not recorded: its run changed meanwhile")


def _record_failure(
    call: LlmCall, try_number: int, error: LlmError, retry_in: float | None, uow: UnitOfWork
) -> None:
    run = uow.get(call.run_id, WorkflowRun)
    if run is None:
        return
    with suppress(NodeNotRunning):
        run.record_llm_failure(
            call.node_id, call.attempt, try_number, error.to_dict(), retry_in, call.item
        )


def record_llm_outcomes(outcomes: list[LlmOutcome], uow: UnitOfWork) -> list[ToolCall]:
    """Record each outcome in its run, which then schedules what comes next. Returns the
    tool calls an agent's answer asked for (valid ones only), to run next."""
    tool_calls: list[ToolCall] = []
    for outcome in outcomes:
        call = outcome.call
        run = uow.get(call.run_id, WorkflowRun)
        if run is None:
            continue
        try:
            for try_number, error, retry_in in outcome.failed_tries:
                run.record_llm_failure(
                    call.node_id, call.attempt, try_number, error.to_dict(), retry_in, call.item
                )
            if outcome.result is not None and call.kind == "agent":
                tool_calls += run.complete_agent_step(
                    call.node_id, call.attempt, outcome.result, now=datetime.now(UTC)
                )
            elif outcome.result is not None:
                run.complete_llm_call(
                    call.node_id, call.attempt, outcome.result, call.item, now=datetime.now(UTC)
                )
            elif outcome.error is not None:
                run.fail_node(
                    call.node_id, call.attempt, outcome.error.to_dict(), call.item,
                    now=datetime.now(UTC),
                )  # fmt: skip
        except NodeNotRunning:
            continue
    return tool_calls
