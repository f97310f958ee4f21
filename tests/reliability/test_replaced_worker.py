"""The only worker SIGKILLed mid-work and a new one started: in a model call, the run
completes with the call made once more; in an agent that books seats through an HTTP
tool, with one booking saved and the next in flight, the run completes without booking a
saved seat again or asking the model again for a saved turn."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from domain.messages import RunEvent
from tests.fakes.llm_servers import FakeLlmServer, OpenAiWire, Received, Reply
from tests.integration.helpers import api_client, example, publish, start_run, wait_for_run
from tests.processes import spawn_worker, spawned_workers, wait_for_line

SEATS = ("1A", "1B", "1C")
SLOW_SEAT = "1B"


async def test_a_worker_killed_mid_call_is_replaced_and_the_run_completes(
    front: Any, settings: Any, database_url: str, kafka_bootstrap: str
) -> None:
    slow = example("hello")
    slow["nodes"]["greet"]["model"] = "scripted:slow"
    slow["nodes"]["greet"]["options"] = {"latency_ms": 2000, "reply": "Hello, {{ prompt[13:] }}!"}
    async with api_client(front) as client:
        await publish(client, slow)
        with spawned_workers(1, settings, database_url, kafka_bootstrap) as workers:
            run_id = await start_run(client, "hello", {"name": "Ada"})
            await wait_for_line(workers[0], "node greet")
            workers[0].kill()
            state = (await client.get(f"/v1/runs/{run_id}")).json()
            assert state["status"] == "running", "the killed worker must not have finished"
            workers.append(spawn_worker(settings, database_url, kafka_bootstrap))
            run = await wait_for_run(client, run_id, timeout=60)
    assert run["status"] == "completed"
    assert run["variables"] == {"greeting": "Hello, Ada!", "tier": "vip"}
    assert run["usage"]["llm_calls"] == 1


def bookings(service: FakeLlmServer) -> dict[str, Any]:
    return {
        "name": "bookings",
        "tools": {
            "book": {
                "description": "Book one seat.",
                "url": service.url + "/bookings",
                "method": "POST",
                "parameters": {
                    "type": "object",
                    "properties": {"seat": {"type": "string"}},
                    "required": ["seat"],
                },
            }
        },
        "start": "agent",
        "nodes": {
            "agent": {
                "kind": "agent",
                "model": "openai:gpt-4o-mini",
                "stream": False,
                "prompt": "Book seats 1A, 1B and 1C, one at a time.",
                "tools": ["book"],
                "output": "answer",
            }
        },
    }


def turn_of(request: Received) -> int:
    """Which model turn a request is: how many tool results it carries."""
    return sum(message["role"] == "tool" for message in request.body["messages"])


def agent_model(request: Received) -> Reply:
    """Books the seats one tool call per turn, then says so."""
    turn = turn_of(request)
    if turn < len(SEATS):
        arguments = json.dumps({"seat": SEATS[turn]})
        calls = [(f"call_{turn + 1}", "book", arguments)]
        return OpenAiWire.completion(None, tool_calls=calls, finish_reason="tool_calls")
    return OpenAiWire.completion("Booked 1A, 1B and 1C.")


def booking_service(slow_seat_asked: asyncio.Event) -> Callable[[Received], Reply]:
    """Books what it is asked; seat 1B takes long enough for the worker to be killed."""

    def book(request: Received) -> Reply:
        seat = request.body["seat"]
        if seat != SLOW_SEAT:
            return Reply(body={"booked": seat})
        slow_seat_asked.set()
        return Reply(body={"booked": seat}, delay=3.0)

    return book


async def test_an_agent_resumes_on_a_new_worker_without_repeating_saved_calls_or_turns(
    front: Any,
    settings: Any,
    database_url: str,
    kafka_bootstrap: str,
    openai: FakeLlmServer,
    service: FakeLlmServer,
    provider: dict[str, str],
) -> None:
    slow_seat_asked = asyncio.Event()
    openai.answer, service.answer = agent_model, booking_service(slow_seat_asked)
    async with api_client(front) as client:
        await publish(client, bookings(service))
        with spawned_workers(1, settings, database_url, kafka_bootstrap, provider) as workers:
            run_id = await start_run(client, "bookings", {})
            async with asyncio.timeout(60):
                await slow_seat_asked.wait()
            workers[0].kill()
            before = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
            saved = [e for e in before if e["type"] == RunEvent.TOOL_CALL_COMPLETED]
            assert [e["data"]["call_id"] for e in saved] == ["call_1"], "one booking saved"
            workers.append(spawn_worker(settings, database_url, kafka_bootstrap, provider))
            run = await wait_for_run(client, run_id, timeout=60)
        events = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
    assert run["status"] == "completed"
    assert run["variables"]["answer"] == "Booked 1A, 1B and 1C."
    keys = Counter(request.headers["idempotency-key"] for request in service.requests)
    key = f"{run_id}:agent:1:call_"
    assert keys[key + "1"] == 1, "the saved booking was not made again"
    assert keys[key + "2"] <= 2, "the booking in flight was repeated at most once, same key"
    assert keys[key + "3"] == 1
    assert set(keys) == {key + str(n) for n in (1, 2, 3)}
    turns = Counter(turn_of(request) for request in openai.requests)
    assert turns == Counter({0: 1, 1: 1, 2: 1, 3: 1}), "no saved turn was asked again"
    completed = Counter(
        e["data"]["call_id"] for e in events if e["type"] == RunEvent.TOOL_CALL_COMPLETED
    )
    assert completed == Counter({"call_1": 1, "call_2": 1, "call_3": 1})
    assert [e["type"] for e in events].count(RunEvent.NODE_COMPLETED) == 1
