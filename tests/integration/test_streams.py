"""Live streams of runs over SSE, served by a real HTTP server, on real PostgreSQL and Kafka:
events and token deltas as they happen, resumed with `Last-Event-ID` without gaps or
repeats, and the history of a run that has already ended."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from httpx_sse import ServerSentEvent, aconnect_sse

from domain.commands import receipt_id
from tests.integration.helpers import key_headers, publish, wait_for_command

ROOT = Path(__file__).resolve().parents[2]

STORY = "Once upon a time there was a workflow that wrote its answer piece by piece."
SLOW = {"reply": STORY + " ({{ prompt }})", "latency_ms": 300, "stream_chunk": 5}


def story(name: str) -> dict[str, Any]:
    """Three model calls in a row, each streamed in small pieces after a pause."""
    node = {"kind": "llm", "model": "scripted:story", "options": SLOW}
    return {
        "name": name,
        "start": "first",
        "nodes": {
            "first": {**node, "prompt": "one", "output": "one", "next": "second"},
            "second": {**node, "prompt": "two", "output": "two", "next": "third"},
            "third": {**node, "prompt": "three", "output": "three"},
        },
    }


@asynccontextmanager
async def served(heddle: Any, tenant: str = "default") -> AsyncIterator[httpx.AsyncClient]:
    """The API on a real socket (streams need one: httpx's ASGI transport buffers), called
    with a new key of `tenant`."""
    from api.http.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(heddle), host="127.0.0.1", port=0, lifespan="off", log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    headers = await key_headers(heddle, tenant)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30.0, headers=headers
        ) as client:
            yield client
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def client(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with served(heddle) as client:
        yield client


async def start(client: httpx.AsyncClient, workflow: str) -> str:
    started = (await client.post("/v1/runs", json={"workflow": workflow})).json()
    assert (await wait_for_command(client, started["command_id"]))["status"] == "accepted"
    return str(started["run_id"])


async def read_stream(
    client: httpx.AsyncClient,
    run_id: str,
    last_event_id: str | None = None,
    stop_after: str | None = None,
) -> list[ServerSentEvent]:
    """Messages until the `end` (or until an event of type `stop_after`, then hang up)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    received: list[ServerSentEvent] = []
    async with aconnect_sse(client, "GET", f"/v1/runs/{run_id}/stream", headers=headers) as source:
        assert source.response.status_code == 200
        async for message in source.aiter_sse():
            received.append(message)
            if message.event == "end":
                break
            if message.event == "event" and message.json()["type"] == stop_after:
                break
    return received


def events(messages: list[ServerSentEvent]) -> list[dict[str, Any]]:
    return [m.json() for m in messages if m.event == "event"]


def tokens(messages: list[ServerSentEvent]) -> list[tuple[int, dict[str, Any]]]:
    """Each delta with its Kafka offset (the id's second part)."""
    return [(int(m.id.split(":")[1]) - 1, m.json()) for m in messages if m.event == "token"]


def streamed_text(messages: list[ServerSentEvent], node_id: str) -> str:
    return "".join(t["text"] for _, t in tokens(messages) if t["node_id"] == node_id)


async def stored_events(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    return (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]  # type: ignore[no-any-return]


async def test_a_client_that_reconnects_with_last_event_id_gets_every_remaining_message_once(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, story("story"))
    run_id = await start(client, "story")

    before = await read_stream(client, run_id, stop_after="WorkflowRun.NodeCompleted")
    assert [
        e["data"]["node_id"] for e in events(before) if e["type"].endswith("NodeCompleted")
    ] == ["first"]
    after = await read_stream(client, run_id, last_event_id=before[-1].id)

    assert after[-1].event == "end"
    assert after[-1].json()["status"] == "completed"
    everything = before + after
    ids = [m.id for m in everything if m.event != "end"]
    assert len(ids) == len(set(ids)), "a message was sent twice"
    assert events(everything) == await stored_events(client, run_id)
    assert events(after), "the run had not ended when the client hung up"
    for node, prompt in (("first", "one"), ("second", "two"), ("third", "three")):
        assert streamed_text(everything, node) == f"{STORY} ({prompt})"
    offsets = [offset for offset, _ in tokens(everything)]
    assert offsets == sorted(set(offsets))


async def test_a_client_that_connects_after_the_end_gets_the_history_then_the_end(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, story("story"))
    run_id = await start(client, "story")
    live = await read_stream(client, run_id)

    late = await read_stream(client, run_id)
    assert events(late) == events(live) == await stored_events(client, run_id)
    assert tokens(late) == tokens(live)
    assert late[-1].event == "end"
    assert late[-1].json() == live[-1].json()
    assert streamed_text(late, "third") == f"{STORY} (three)"
    again = await read_stream(client, run_id, last_event_id=late[-1].id)
    assert [m.event for m in again] == ["end"]


async def test_a_stream_of_an_unknown_or_foreign_run_is_404_and_a_bad_id_is_400(
    client: httpx.AsyncClient, heddle: Any
) -> None:
    await publish(client, story("story"))
    run_id = await start(client, "story")
    unknown = await client.get(f"/v1/runs/{uuid.uuid4()}/stream")
    assert unknown.status_code == 404
    other = await key_headers(heddle, "other")
    foreign = await client.get(f"/v1/runs/{run_id}/stream", headers=other)
    assert foreign.status_code == 404
    started = (await client.post("/v1/runs", json={"workflow": "story"})).json()
    await wait_for_command(client, started["command_id"])
    not_a_run = receipt_id("default", started["command_id"])  # an aggregate, but no run
    assert (await client.get(f"/v1/runs/{not_a_run}/stream")).status_code == 404
    bad = await client.get(f"/v1/runs/{run_id}/stream", headers={"Last-Event-ID": "seven"})
    assert bad.status_code == 400
    assert "<version>:<offset>" in bad.json()["detail"]
    ahead = await client.get(f"/v1/runs/{run_id}/stream", headers={"Last-Event-ID": "999:0"})
    assert ahead.status_code == 400
    assert json.loads(ahead.text)["detail"].startswith("Last-Event-ID '999:0' is ahead of run")


async def heddle_cli(client: httpx.AsyncClient, *args: str) -> tuple[int, str, str]:
    """Run the `heddle` CLI against the served API (in a subprocess, so the API keeps serving)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        *args,
        cwd=ROOT,
        env={
            **os.environ,
            "HEDDLE_API_URL": str(client.base_url),
            "HEDDLE_API_KEY": client.headers["Authorization"].removeprefix("Bearer "),
            "COLUMNS": "200",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_run_follow_prints_the_model_text_as_it_streams_and_the_outcome(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, story("story"))
    code, stdout, stderr = await heddle_cli(client, "run", "story", "--follow")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert f"{STORY} (two)" in lines  # the streamed text, on a line of its own
    assert lines.index("  running third") < lines.index(f"{STORY} (three)")
    assert [line for line in lines if line.startswith("run ")][-1].startswith("run completed")

    code, stdout, stderr = await heddle_cli(client, "run", "story", "--follow", "--json")
    assert code == 0, stderr
    final = json.loads(stdout)
    assert final["status"] == "completed"
    assert final["variables"]["three"] == f"{STORY} (three)"


async def test_a_running_heddle_serves_the_asyncapi_document_of_its_own_topics(
    client: httpx.AsyncClient, heddle: Any
) -> None:
    document = (await client.get("/asyncapi.json")).json()
    assert document["channels"]["tokens"]["address"] == heddle.topics.tokens
    page = await client.get("/asyncapi")
    assert page.status_code == 200
    assert heddle.topics.events in page.text
