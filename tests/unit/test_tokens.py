"""Token deltas on their way to `heddle.tokens`: gathered into pieces per try, numbered
over the node attempt, and all handed over before the call's answer is recorded."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from domain.definitions import parse_definition
from domain.llm import LlmDelta, LlmRequest, LlmResult, RetryPolicy, Usage
from domain.messages import TokenDelta
from domain.runs import WorkflowRun
from handlers.reactions.agents import drive_agent
from handlers.reactions.model_calls import (
    TOKEN_PIECE_CHARS,
    TOKEN_PIECE_SECONDS,
    LlmCall,
    OnDelta,
    OnTryFailed,
    call_llm,
)
from handlers.reactions.tools import builtin_tools
from handlers.unit_of_work import UnitOfWork
from infra.llm.retrying import stream_with_retries
from infra.llm.scripted import ScriptedProvider

RUN_ID = uuid.uuid4()
REQUEST = LlmRequest(model="scripted:echo", messages=[])


def answer(text: str) -> LlmResult:
    return LlmResult(
        text=text,
        finish_reason="stop",
        usage=Usage(),
        model="echo",
        provider="scripted",
        latency_ms=1.0,
    )


class Streaming:
    """A model call that plays a script of (try, text) deltas and pauses (seconds), then
    answers; `seen` keeps what had been published at each pause."""

    def __init__(self, *script: tuple[int, str] | float) -> None:
        self.script = script
        self.published: list[TokenDelta] = []
        self.seen: list[list[str]] = []

    async def __call__(
        self,
        request: LlmRequest,
        tenant: str,
        on_try_failed: OnTryFailed,
        on_delta: OnDelta | None = None,
    ) -> LlmResult:
        assert on_delta is not None
        for index, item in enumerate(self.script):
            if isinstance(item, float):
                await asyncio.sleep(item)
                self.seen.append([d.text for d in self.published])
            else:
                await on_delta(item[0], LlmDelta(text=item[1], index=index))
        return answer("done")


async def test_deltas_that_come_together_are_published_as_one_piece() -> None:
    complete = Streaming((1, "Hel"), (1, "lo"), (1, ", world"))
    await call_llm(
        LlmCall(RUN_ID, "ask", 1, REQUEST, stream=True), complete, complete.published.append
    )
    assert [(d.try_number, d.sequence, d.text) for d in complete.published] == [
        (1, 0, "Hello, world")
    ]
    assert complete.published[0].as_message() == {
        "run_id": str(RUN_ID),
        "node_id": "ask",
        "attempt": 1,
        "step": 1,
        "try": 1,
        "sequence": 0,
        "text": "Hello, world",
    }


async def test_text_waiting_while_the_model_pauses_is_published_during_the_pause() -> None:
    complete = Streaming((1, "Hel"), (1, "lo"), 4 * TOKEN_PIECE_SECONDS, (1, " world"))
    await call_llm(
        LlmCall(RUN_ID, "ask", 1, REQUEST, stream=True), complete, complete.published.append
    )
    assert complete.seen == [["Hello"]]
    assert [(d.sequence, d.text) for d in complete.published] == [(0, "Hello"), (1, " world")]


async def test_each_try_has_its_own_pieces_and_the_numbers_go_on_across_tries() -> None:
    complete = Streaming((1, "The capital"), (1, " is Lyon"), (2, "The capital"), (2, " is Paris"))
    await call_llm(
        LlmCall(RUN_ID, "ask", 1, REQUEST, stream=True), complete, complete.published.append
    )
    assert [(d.try_number, d.sequence, d.text) for d in complete.published] == [
        (1, 0, "The capital is Lyon"),
        (2, 1, "The capital is Paris"),
    ]


async def test_a_long_text_is_published_in_pieces_of_bounded_size() -> None:
    chunk = "x" * (TOKEN_PIECE_CHARS // 2)
    complete = Streaming(*[(1, chunk)] * 5)
    await call_llm(
        LlmCall(RUN_ID, "ask", 1, REQUEST, stream=True), complete, complete.published.append
    )
    assert [len(d.text) for d in complete.published] == [TOKEN_PIECE_CHARS] * 2 + [len(chunk)]
    assert [d.sequence for d in complete.published] == [0, 1, 2]


async def test_a_call_that_is_not_streamed_publishes_nothing() -> None:
    published: list[TokenDelta] = []

    async def complete(
        request: LlmRequest,
        tenant: str,
        on_try_failed: OnTryFailed,
        on_delta: OnDelta | None = None,
    ) -> LlmResult:
        assert on_delta is None
        return answer("whole")

    outcome = await call_llm(
        LlmCall(RUN_ID, "ask", 1, REQUEST, stream=False), complete, published.append
    )
    assert outcome.result is not None
    assert published == []


async def test_an_agents_turns_number_their_pieces_over_the_node_attempt(uow: UnitOfWork) -> None:
    spec = parse_definition(
        {
            "name": "agent",
            "start": "solve",
            "nodes": {
                "solve": {
                    "kind": "agent",
                    "model": "scripted:agent",
                    "prompt": "Help me",
                    "tools": ["calculator"],
                    "output": "answer",
                    "options": {
                        "replies": [
                            {
                                "text": "Let me work it out.",
                                "tool_calls": [
                                    {"name": "calculator", "arguments": {"expression": "6*7"}}
                                ],
                            },
                            "It is {{ messages[-1].content }}.",
                        ]
                    },
                }
            },
        }
    )
    run = WorkflowRun(
        run_id=uuid.uuid4(),
        tenant="default",
        actor="test",
        workflow=spec.name,
        version=1,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input={},
        command_id="c1",
    )
    run.advance(now=datetime.now(UTC))
    uow.add(run)

    async def complete(
        request: LlmRequest,
        tenant: str,
        on_try_failed: OnTryFailed,
        on_delta: OnDelta | None = None,
    ) -> LlmResult:
        assert on_delta is not None
        return await stream_with_retries(
            ScriptedProvider(), request, RetryPolicy(), on_delta, on_try_failed
        )

    async def decide(decision: Any) -> Any:
        return decision()

    published: list[TokenDelta] = []
    call = LlmCall(run.id, "solve", 1, run.llm_request("solve"), kind="agent", stream=True)
    await drive_agent(call, uow, complete, builtin_tools().run, decide, published.append)
    assert run.variables == {"answer": "It is 42."}
    assert [(d.step, d.sequence, d.text) for d in published] == [
        (1, 0, "Let me work it out."),
        (2, 1, "It is 42."),
    ]


async def test_a_stream_that_outlives_the_calls_deadline_fails_for_good_keeping_its_text() -> None:
    class Endless:
        name = "scripted"

        async def stream(self, request: LlmRequest) -> Any:
            yield LlmDelta(text="Once", index=0)
            await asyncio.sleep(3600)

    published: list[TokenDelta] = []

    async def complete(
        request: LlmRequest,
        tenant: str,
        on_try_failed: OnTryFailed,
        on_delta: OnDelta | None = None,
    ) -> LlmResult:
        assert on_delta is not None
        policy = RetryPolicy(deadline_seconds=0.05)
        return await stream_with_retries(Endless(), request, policy, on_delta, on_try_failed)  # type: ignore[arg-type]

    outcome = await call_llm(
        LlmCall(RUN_ID, "ask", 1, REQUEST, stream=True), complete, published.append
    )
    assert outcome.error is not None
    assert (outcome.error.kind, str(outcome.error)) == (
        "fatal",
        "no answer within the 0 s deadline of the call",
    )
    assert [(d.sequence, d.text) for d in published] == [(0, "Once")]
