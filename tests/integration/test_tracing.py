"""One trace from a request to the read models (HEDDLE_TRACING, here with an in-memory
exporter), on real Kafka and PostgreSQL: `POST /v1/runs` of a 3-node chain gives spans of
the API, the intake, each worker step and model call, and the projector, all in the
request's trace; and every event of the run says which command it serves and what
caused it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra import tracing
from tests.integration.helpers import publish, wait_for_run
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def chain(name: str, nodes: int) -> dict[str, Any]:
    graph = {
        f"s{i}": {
            "kind": "llm",
            "model": "scripted:echo",
            "prompt": f"step {i}: {{{{ vars.s{i - 1} }}}}" if i else "step 0: {{ input.topic }}",
            "output": f"s{i}",
            **({"next": f"s{i + 1}"} if i < nodes - 1 else {}),
        }
        for i in range(nodes)
    }
    return {"name": name, "start": "s0", "nodes": graph}


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        yield exporter
    finally:
        tracing.configure(None)
        provider.shutdown()


def spans_of_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


async def test_a_run_of_a_3_node_chain_is_one_trace_from_the_request_to_the_projector(
    client: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    await publish(client, chain("traced-chain", 3))
    caller = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"  # the caller's own trace goes on
    run_id = str(uuid.uuid4())
    start = {"workflow": "traced-chain", "input": {"topic": "tea"}, "run_id": run_id}
    sent = await client.post(
        "/v1/commands",
        json={"type": "StartRun", "payload": start, "correlation_id": "order-7"},
        headers={"traceparent": caller},
    )
    assert sent.status_code == 202, sent.text
    command_id = sent.json()["command_id"]
    assert (await wait_for_run(client, run_id))["status"] == "completed"
    trace_id = int(CALLER_TRACE, 16)
    deadline = time.monotonic() + 10  # the projector's span ends as its batch is written
    while not any(s.name == "heddle.projector.apply" for s in spans_of_trace(exported, trace_id)):
        assert time.monotonic() < deadline, "no projector span in the request's trace"
        await asyncio.sleep(0.05)

    spans = spans_of_trace(exported, trace_id)
    names = Counter(s.name for s in spans)
    assert names["HTTP POST"] == 1
    assert names["heddle.intake.command"] == 1
    assert names["heddle.worker.call"] == 3
    assert names["heddle.model_call"] == 3
    assert names["heddle.projector.apply"] >= 1
    steps = {s.context.span_id: s for s in spans if s.name == "heddle.worker.call"}
    assert sorted(s.attributes["heddle.node_id"] for s in steps.values()) == ["s0", "s1", "s2"]
    for call in (s for s in spans if s.name == "heddle.model_call"):
        assert call.parent is not None
        assert call.parent.span_id in steps, "a model call is a child of its step"
    of_the_run = [
        s
        for s in exported.get_finished_spans()
        if s.attributes and s.attributes.get("heddle.run_id") == run_id
    ]
    assert {s.context.trace_id for s in of_the_run} == {trace_id}

    events = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
    assert {e["metadata"]["correlation_id"] for e in events} == {"order-7"}
    assert {e["metadata"]["traceparent"].split("-")[1] for e in events} == {CALLER_TRACE}
    assert events[0]["metadata"]["causation_id"] == command_id
    by_id = {e["id"]: e for e in events}
    answered = [e for e in events if e["type"] == "WorkflowRun.LlmCallCompleted"]
    assert len(answered) == 3
    for answer in answered:  # caused by the NodeStarted of its node
        cause = by_id[answer["metadata"]["causation_id"]]
        assert cause["type"] == "WorkflowRun.NodeStarted"
        assert cause["data"]["node_id"] == answer["data"]["node_id"]
