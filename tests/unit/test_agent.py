"""The agent loop: the run decides (valid calls, repairs, steps), the worker calls the
scripted model and runs the tools. No network: the in-memory store and scripted replies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid
from domain.llm import LlmRequest, RetryPolicy, ToolDefinition
from domain.messages import TokenDelta
from domain.runs import WorkflowRun
from handlers.reactions.agents import drive_agent
from handlers.reactions.model_calls import LlmCall, OnDelta, OnTryFailed, call_llm
from handlers.reactions.tools import ToolError, ToolRegistry, builtin_tools, calculate
from handlers.unit_of_work import UnitOfWork
from infra.llm.retrying import complete_with_retries, stream_with_retries
from infra.llm.scripted import ScriptedProvider

WORD_COUNT = ToolDefinition(
    name="word_count",
    description="Count the words of a text.",
    parameters={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    },
)


class Counted:
    """A tool that remembers every time it ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, text: str) -> int:
        self.ran.append(text)
        return len(text.split())


@pytest.fixture
def word_count() -> Counted:
    return Counted()


@pytest.fixture
def tools(word_count: Counted) -> ToolRegistry:
    registry = builtin_tools()
    registry.register(WORD_COUNT, word_count)
    return registry


def agent(replies: list[Any], **node: Any) -> dict[str, Any]:
    return {
        "name": "agent",
        "start": "solve",
        "nodes": {
            "solve": {
                "kind": "agent",
                "model": "scripted:agent",
                "prompt": "Help me",
                "tools": ["calculator", "word_count"],
                "options": {"replies": replies},
                "output": "answer",
                **node,
            }
        },
    }


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": tool, "arguments": arguments}]}


def start(document: dict[str, Any]) -> WorkflowRun:
    spec = parse_definition(document)
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
    return run


async def complete(
    request: LlmRequest, tenant: str, on_try_failed: OnTryFailed, on_delta: OnDelta | None = None
) -> Any:
    provider = ScriptedProvider()
    if on_delta is not None:
        return await stream_with_retries(provider, request, RetryPolicy(), on_delta, on_try_failed)
    return await complete_with_retries(provider, request, RetryPolicy(), on_try_failed)


async def decide(decision: Callable[[], Any]) -> Any:
    return decision()


async def solve(document: dict[str, Any], tools: ToolRegistry, uow: UnitOfWork) -> WorkflowRun:
    run = start(document)
    uow.add(run)
    request = run.llm_request("solve")
    await drive_agent(
        LlmCall(run.id, "solve", 1, request, kind="agent"), uow, complete, tools.run, decide
    )
    return run


def tool_events(run: WorkflowRun) -> list[Any]:
    return [e for e in run.pending_events if type(e).__name__ == "ToolCallCompleted"]


async def test_an_agent_runs_the_tool_it_calls_and_answers_with_its_result(
    tools: ToolRegistry, uow: UnitOfWork
) -> None:
    run = await solve(
        agent([call("calculator", expression="6*7"), "It is {{ messages[-1].content }}."]),
        tools,
        uow,
    )
    assert run.status == "completed"
    assert run.variables == {"answer": "It is 42."}
    [tool] = tool_events(run)
    assert (tool.tool, tool.arguments, tool.outcome, tool.content) == (
        "calculator",
        {"expression": "6*7"},
        "ok",
        "42",
    )
    assert run.usage["llm_calls"] == 2


async def test_arguments_are_checked_against_the_schema_before_the_tool_runs(
    tools: ToolRegistry, uow: UnitOfWork, word_count: Counted
) -> None:
    run = await solve(
        agent(
            [
                call("word_count", txt="one two"),
                call("word_count", text="one two"),
                "{{ messages[-1].content }} words",
            ]
        ),
        tools,
        uow,
    )
    assert run.variables == {"answer": "2 words"}
    assert word_count.ran == ["one two"]  # only the valid call ran
    rejected, ran = tool_events(run)
    assert rejected.outcome == "rejected"
    assert rejected.content == (
        "error: invalid tool call: arguments: Additional properties are not allowed ('txt' was "
        "unexpected); arguments: 'text' is a required property"
    )
    assert ran.outcome == "ok"


async def test_an_unknown_tool_goes_back_to_the_model_as_an_error_it_can_repair(
    tools: ToolRegistry, uow: UnitOfWork
) -> None:
    run = await solve(
        agent(
            [
                call("web_search", query="6*7"),
                call("calculator", expression="6*7"),
                "{{ messages[-1].content }}",
            ]
        ),
        tools,
        uow,
    )
    assert run.status == "completed"
    assert run.variables == {"answer": "42"}
    unknown = tool_events(run)[0]
    assert unknown.content == (
        "error: invalid tool call: unknown tool 'web_search'; the tools are: calculator, word_count"
    )


async def test_more_invalid_calls_than_max_repairs_fail_the_node_with_the_last_problem(
    tools: ToolRegistry, uow: UnitOfWork, word_count: Counted
) -> None:
    run = await solve(agent([call("word_count", words=3)], max_repairs=1), tools, uow)
    assert run.status == "failed"
    assert run.error == {
        "node": "solve",
        "class": "agent",
        "message": (
            "agent node 'solve' made 2 invalid tool calls, more than its max_repairs of 1; the "
            "last: word_count: arguments: Additional properties are not allowed ('words' was "
            "unexpected); arguments: 'text' is a required property"
        ),
    }
    assert word_count.ran == []
    assert run.usage["llm_calls"] == 2


async def test_an_agent_that_keeps_calling_tools_fails_when_it_reaches_max_steps(
    tools: ToolRegistry, uow: UnitOfWork
) -> None:
    run = await solve(agent([call("calculator", expression="1+1")], max_steps=3), tools, uow)
    assert run.status == "failed"
    assert run.error is not None
    assert run.error["message"] == (
        "agent node 'solve' used all 3 of its max_steps and still calls tools instead of "
        "answering: raise max_steps or narrow the prompt"
    )
    assert run.usage["llm_calls"] == 3
    assert len(tool_events(run)) == 2  # the third turn's call never ran


async def test_a_tool_that_fails_tells_the_model_why(tools: ToolRegistry, uow: UnitOfWork) -> None:
    run = await solve(
        agent([call("calculator", expression="1/0"), "{{ messages[-1].content }}"]), tools, uow
    )
    assert run.variables == {"answer": "error: division by zero"}
    assert tool_events(run)[0].outcome == "error"


async def test_a_tool_that_runs_too_long_answers_the_model_with_an_error(uow: UnitOfWork) -> None:
    async def slow(text: str) -> str:
        await asyncio.sleep(5)
        return text

    registry = ToolRegistry(timeout_seconds=0.05)
    registry.register(WORD_COUNT, slow)
    run = await solve(
        agent([call("word_count", text="hi"), "{{ messages[-1].content }}"]), registry, uow
    )
    assert run.variables == {"answer": "error: word_count took longer than 0.05 s"}


async def test_replaying_an_agents_events_rebuilds_the_run_without_a_provider(
    tools: ToolRegistry, uow: UnitOfWork
) -> None:
    run = await solve(
        agent([call("calculator", expression="2**5"), "{{ messages[-1].content }}"]), tools, uow
    )
    replayed: Any = None
    for event in run.collect_events():
        replayed = event.mutate(replayed)
    assert replayed.variables == run.variables == {"answer": "32"}
    assert replayed.nodes == run.nodes
    assert replayed.usage == run.usage


def test_a_definition_naming_an_unknown_tool_is_rejected_at_the_tools_path() -> None:
    document = agent([], tools=["calculator", "web_search"])
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition(document)
    [problem] = caught.value.problems
    assert problem.path == "nodes.solve.tools[1]"
    assert problem.message.startswith("unknown tool 'web_search' (known: calculator, ")


def test_the_calculator_does_arithmetic_and_refuses_anything_else() -> None:
    assert calculate("(2 + 3) * 4 - 6 / 4") == "18.5"
    assert calculate("2 ** 10 // 3 % 7") == "5"
    for expression, reason in [
        ("__import__('os')", "only numbers"),
        ("2 ** 1000", "exponent"),
        ("1 / 0", "division by zero"),
        ("2 +", "not an arithmetic"),
    ]:
        with pytest.raises(ToolError, match=reason):
            calculate(expression)


async def test_a_streamed_scripted_call_publishes_its_text_in_order_tagged_with_its_node() -> None:
    published: list[TokenDelta] = []
    run_id = uuid.uuid4()
    request = LlmRequest(
        model="scripted:story",
        messages=[],
        options={"reply": "Once upon a time there was a run", "stream_chunk": 10},
    )
    outcome = await call_llm(
        LlmCall(run_id, "tell", 2, request, stream=True), complete, published.append
    )
    assert outcome.result is not None
    # The scripted deltas come all at once: one piece, handed over before the call returns.
    assert [(d.sequence, d.text) for d in published] == [(0, outcome.result.text)]
    assert {(d.run_id, d.node_id, d.attempt, d.try_number) for d in published} == {
        (run_id, "tell", 2, 1)
    }
