"""Chat threads through real Kafka and PostgreSQL: a `chat` node answered by the real
OpenAI SDK against the fake OpenAI server, branches, the thread's SSE stream resumed with
`Last-Event-ID`, conversation workflows, and the threads read model rebuilt."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from infra.projector import rebuild
from tests.conftest import module_heddle
from tests.fakes.llm_servers import FakeLlmServer, OpenAiWire
from tests.integration.helpers import (
    example,
    key_headers,
    publish,
    wait_for_command,
    wait_for_run,
)
from tests.integration.shared import openai  # noqa: F401 (fixture)
from tests.integration.test_projections import table_digest
from tests.integration.test_streams import SLOW, STORY, heddle_cli, served


@pytest.fixture(scope="module")
async def heddle(
    openai: FakeLlmServer,
    postgres_url: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Any]:
    environ = {"OPENAI_BASE_URL": f"{openai.url}/v1", "OPENAI_API_KEY": "sk-test-openai"}
    async with module_heddle(tmp_path_factory, postgres_url, kafka_bootstrap, environ) as heddle:
        yield heddle


@pytest.fixture
async def client(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with served(heddle) as client:
        yield client


def support(name: str, model: str = "openai:gpt-4o-mini", **chat: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "chat",
        "nodes": {
            "chat": {
                "kind": "chat",
                "model": model,
                "system": "You help {{ input.customer }} with order {{ input.order }}.",
                "branches": {"thanks": {"reply": "Glad to help, {{ input.customer }}!"}},
                "output": "chat",
                "next": "close",
                **chat,
            },
            "close": {"kind": "set", "vars": {"resolution": "{{ vars.chat.data.resolution }}"}},
        },
    }


async def until(check: Any, what: str, seconds: float = 30.0) -> Any:
    """Poll `check` (async, returns a value or None) until it gives a value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {what} after {seconds} s")


async def thread_of_run(client: httpx.AsyncClient, run_id: str) -> str:
    async def found() -> str | None:
        items = (await client.get("/v1/threads", params={"run_id": run_id})).json()["items"]
        return items[0]["thread_id"] if items else None

    return str(await until(found, f"thread of run {run_id}"))


async def chat_thread(client: httpx.AsyncClient, workflow: dict[str, Any], **input: Any) -> str:
    """Publish `workflow` and start a run of it: the thread of its `chat` node."""
    await publish(client, workflow)
    return await thread_of_run(client, await start(client, workflow["name"], **input))


async def messages(client: httpx.AsyncClient, thread_id: str) -> list[dict[str, Any]]:
    """The thread's messages (once the read model has the thread)."""

    async def shown() -> dict[str, Any] | None:
        response = await client.get(f"/v1/threads/{thread_id}/messages")
        return response.json() if response.status_code == 200 else None

    return (await until(shown, f"thread {thread_id}"))["items"]  # type: ignore[no-any-return]


async def say(client: httpx.AsyncClient, thread_id: str, content: str = "", **more: Any) -> int:
    """Post a message and wait until it is answered; returns how many messages there are."""
    count = len(await messages(client, thread_id))
    sent = await client.post(f"/v1/threads/{thread_id}/messages", json={"content": content, **more})
    assert sent.status_code == 202, sent.text
    assert (await wait_for_command(client, sent.json()["command_id"]))["status"] == "accepted"

    async def answered() -> int | None:
        now = await messages(client, thread_id)
        return len(now) if len(now) >= count + 2 and now[-1]["role"] == "assistant" else None

    return int(await until(answered, f"answer in thread {thread_id}"))


async def start(client: httpx.AsyncClient, workflow: str, **input: Any) -> str:
    started = (await client.post("/v1/runs", json={"workflow": workflow, "input": input})).json()
    return str(started["run_id"])


async def test_a_chat_node_answers_two_messages_through_openai_then_completing_moves_the_run_on(
    client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    await publish(client, support("support"))
    run_id = await start(client, "support", customer="Ada", order="A-17")
    thread_id = await thread_of_run(client, run_id)
    openai.then(
        OpenAiWire.stream(["Your parcel ", "ships today."]),
        OpenAiWire.stream(["You are ", "welcome."]),
    )

    await say(client, thread_id, "Where is my parcel?")
    await say(client, thread_id, "Thank you")

    shown = [(m["role"], m["content"]) for m in await messages(client, thread_id)]
    assert shown == [
        ("user", "Where is my parcel?"),
        ("assistant", "Your parcel ships today."),
        ("user", "Thank you"),
        ("assistant", "You are welcome."),
    ]
    reply = (await messages(client, thread_id))[1]
    assert (reply["provider"], reply["model"], reply["author"]) == (
        "openai",
        "gpt-4o-mini",
        "heddle",
    )
    sent = openai.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "You help Ada with order A-17."}
    assert [m["content"] for m in sent[1:]] == [
        "Where is my parcel?",
        "Your parcel ships today.",
        "Thank you",
    ]
    assert (await client.get(f"/v1/runs/{run_id}")).json()["status"] == "running"

    done = await client.post(
        f"/v1/threads/{thread_id}/complete", json={"data": {"resolution": "shipped"}}
    )
    assert (await wait_for_command(client, done.json()["command_id"]))["status"] == "accepted"
    run = await wait_for_run(client, run_id)
    assert run["status"] == "completed"
    assert run["variables"]["resolution"] == "shipped"
    assert len(run["variables"]["chat"]["messages"]) == 4
    assert (run["usage"]["llm_calls"], run["nodes"]["chat"]["model"]) == (2, "gpt-4o-mini")
    [used] = (await client.get("/v1/usage", params={"run_id": run_id})).json()["items"]
    assert (used["llm_calls"], used["input_tokens"]) == (2, 24)
    thread = (await client.get(f"/v1/threads/{thread_id}")).json()
    assert (thread["status"], thread["node_id"], thread["messages"]) == ("completed", "chat", 4)


async def test_a_branch_with_a_fixed_reply_answers_without_a_model(
    client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    thread_id = await chat_thread(client, support("support"), customer="Grace", order="B-2")
    calls = openai.calls

    await say(client, thread_id, "", branch="thanks")

    assert [(m["role"], m["content"], m["branch"]) for m in await messages(client, thread_id)] == [
        ("user", "", "thanks"),
        ("assistant", "Glad to help, Grace!", "thanks"),
    ]
    assert openai.calls == calls
    unknown = await client.post(f"/v1/threads/{thread_id}/messages", json={"branch": "nope"})
    result = await wait_for_command(client, unknown.json()["command_id"])
    assert result["reason"] == f"thread {thread_id} has no branch 'nope' (its branches: thanks)"


async def read_stream(
    client: httpx.AsyncClient,
    thread_id: str,
    last_event_id: str | None = None,
    stop: Any = None,
) -> list[ServerSentEvent]:
    """Messages until the `end` (or until `stop(message)` holds, then hang up)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    received: list[ServerSentEvent] = []
    path = f"/v1/threads/{thread_id}/stream"
    async with aconnect_sse(client, "GET", path, headers=headers) as source:
        assert source.response.status_code == 200, await source.response.aread()
        async for message in source.aiter_sse():
            received.append(message)
            if message.event == "end" or (stop and stop(message)):
                break
    return received


def an_answer(message: ServerSentEvent) -> bool:
    if message.event != "event":
        return False
    event = message.json()
    return bool(event["type"] == "Thread.MessagePosted" and event["data"]["role"] == "assistant")


async def test_a_thread_stream_resumed_with_last_event_id_gets_every_remaining_message_once(
    client: httpx.AsyncClient, heddle: Any
) -> None:
    story_chat = support("story-chat", model="scripted:story", options=SLOW)
    thread_id = await chat_thread(client, story_chat, customer="Ada", order="C-3")

    await say(client, thread_id, "one")
    before = await read_stream(client, thread_id, stop=an_answer)
    await say(client, thread_id, "two")
    done = await client.post(f"/v1/threads/{thread_id}/complete", json={"data": {}})
    await wait_for_command(client, done.json()["command_id"])
    after = await read_stream(client, thread_id, last_event_id=before[-1].id)

    assert after[-1].event == "end"
    assert after[-1].json()["outcome"] == "completed"
    everything = before + after
    ids = [m.id for m in everything if m.event != "end"]
    assert len(ids) == len(set(ids)), "a message was sent twice"
    stored = await heddle.writer.run(heddle.store.aggregate_events, uuid.UUID(thread_id))
    assert [m.json() for m in everything if m.event == "event"] == stored
    streamed = "".join(m.json()["text"] for m in everything if m.event == "token")
    assert streamed == f"{STORY} (one){STORY} (two)"
    assert {m.json()["thread_id"] for m in everything if m.event == "token"} == {thread_id}


async def test_a_conversation_workflow_answers_each_message_from_where_its_run_waits(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, example("conversation"))
    opened = (await client.post("/v1/threads", json={"workflow": "order-desk"})).json()
    thread_id = opened["thread_id"]
    shown = await client.get(
        f"/v1/threads/{thread_id}", headers={"X-Heddle-Wait-For-Command": opened["command_id"]}
    )
    assert (shown.json()["status"], shown.json()["workflow"]) == ("open", "order-desk")

    await say(client, thread_id, "I want tea")
    await say(client, thread_id, "two cups")

    assert [(m["role"], m["content"]) for m in await messages(client, thread_id)] == [
        ("user", "I want tea"),
        ("assistant", "How many of I want tea?"),
        ("user", "two cups"),
        ("assistant", "Ordered two cups of I want tea."),
    ]
    thread = (await client.get(f"/v1/threads/{thread_id}")).json()
    run = await wait_for_run(client, thread["run_id"])
    assert run["status"] == "completed"


async def test_the_threads_read_model_rebuilds_to_identical_rows(
    client: httpx.AsyncClient, heddle: Any
) -> None:
    story_chat = support("story-chat", model="scripted:story", options=SLOW)
    thread_id = await chat_thread(client, story_chat, customer="Alan", order="D-4")
    await say(client, thread_id, "rebuild me")

    tables = ("threads", "thread_messages")
    before = {t: table_digest(heddle.database_url, t) for t in tables}
    await asyncio.to_thread(rebuild, heddle.database_url, heddle.store, "threads")
    assert {t: table_digest(heddle.database_url, t) for t in tables} == before
    assert before["thread_messages"][0] >= 2


async def test_the_chat_example_talks_branches_and_completes_with_the_outcome(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, example("chat"))
    run_id = await start(client, "renewal-chat", customer="Acme", arr=120000)
    thread_id = await thread_of_run(client, run_id)
    await say(client, thread_id, "What should I offer?")
    await say(client, thread_id, branch="thanks")
    system = "You help a CSM renew Acme renews at 120000 USD a year. Be brief."
    assert [(m["role"], m["content"]) for m in await messages(client, thread_id)] == [
        ("assistant", "Ready to talk about Acme's renewal."),
        ("user", "What should I offer?"),
        ("assistant", f"({system}) What should I offer?"),
        ("user", ""),
        ("assistant", "Anytime. Good luck with Acme!"),
    ]
    [task] = (await client.get("/v1/tasks", params={"run_id": run_id})).json()["items"]
    assert (task["type"], task["role"], task["title"]) == ("chat", "csm", "Renewal: Acme")
    done = await client.post(
        f"/v1/threads/{thread_id}/complete", json={"data": {"outcome": "renewed"}}
    )
    await wait_for_command(client, done.json()["command_id"])
    run = await wait_for_run(client, run_id)
    assert (run["status"], run["variables"]["outcome"]) == ("completed", "renewed")


async def test_the_threads_cli_opens_a_thread_says_something_shows_it_and_completes_it(
    client: httpx.AsyncClient,
) -> None:
    configured = await client.put("/v1/tenant/ai", json={"model": "scripted:echo"})
    assert (await wait_for_command(client, configured.json()["command_id"]))["status"] == (
        "accepted"
    )

    code, out, err = await heddle_cli(client, "threads", "open", "--title", "from the cli")
    assert code == 0, err
    thread_id = out.strip()
    code, out, err = await heddle_cli(client, "threads", "say", thread_id, "ping")
    assert (code, out.strip()) == (0, "ping"), err
    code, out, err = await heddle_cli(client, "threads", "show", thread_id)
    assert out.splitlines() == ["user: ping", "assistant: ping"], err
    code, out, err = await heddle_cli(client, "threads", "say", thread_id, "--branch", "x")
    assert code == 3  # refused by the API (docs: exit codes)
    assert f"thread {thread_id} has no branch 'x' (its branches: none)" in " ".join(err.split())
    code, out, err = await heddle_cli(
        client, "threads", "complete", thread_id, "--data", '{"ok": true}'
    )
    assert (code, out.strip()) == (0, f"thread {thread_id} completed"), err
    code, out, err = await heddle_cli(client, "threads", "list", "--status", "completed", "--json")
    assert thread_id in [t["thread_id"] for t in json.loads(out)]


async def test_a_tenant_in_orchestrator_mode_answers_through_an_agent_with_its_tools(
    client: httpx.AsyncClient, heddle: Any
) -> None:
    headers = await key_headers(heddle, "acme")
    script = [
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "19 * 3"}}]},
        "That makes {{ messages[-1].content }} EUR.",
    ]
    async with httpx.AsyncClient(base_url=client.base_url, headers=headers) as acme:
        configured = await acme.put("/v1/tenant/ai", json={
            "ai_mode": "orchestrator", "model": "scripted:agent", "tools": ["calculator"],
            "options": {"replies": script}})  # fmt: skip
        assert (await wait_for_command(acme, configured.json()["command_id"]))["status"] == (
            "accepted"
        )
        mode = (await acme.get("/v1/tenant/ai")).json()
        assert (mode["ai_mode"], mode["tools"]) == ("orchestrator", ["calculator"])
        opened = (await acme.post("/v1/threads", json={"title": "pricing"})).json()
        await wait_for_command(acme, opened["command_id"])

        count = await say(acme, opened["thread_id"], "3 seats at 19 EUR?")

        shown = await messages(acme, opened["thread_id"])
        assert [(m["role"], m["content"]) for m in shown] == [
            ("user", "3 seats at 19 EUR?"),
            ("assistant", "That makes 57 EUR."),
        ]
        assert count == 2
        run = await wait_for_run(acme, shown[1]["source"]["run_id"])
        assert (run["workflow"], run["status"]) == ("orchestrator", "completed")
        attempts = (await acme.get(f"/v1/runs/{run['run_id']}/attempts")).json()["items"]
        assert [a["step"] for a in attempts if a["step"]] == [1, 2]
        live = await read_stream(acme, opened["thread_id"], stop=an_answer)
        streamed = [m.json() for m in live if m.event == "token"]
        assert "".join(t["text"] for t in streamed) == "That makes 57 EUR."
        assert {(t["thread_id"], t["node_id"]) for t in streamed} == {
            (opened["thread_id"], "answer")
        }
    assert (await client.get("/v1/tenant/ai")).json()["ai_mode"] == "simple"


async def test_only_an_admin_key_sets_the_tenants_ai_mode(
    client: httpx.AsyncClient, heddle: Any
) -> None:
    writer = await key_headers(heddle, "default", ("read", "write"))
    body = {"type": "ConfigureTenant", "payload": {"model": "scripted:echo"}}
    sent = await client.post("/v1/commands", json=body, headers=writer)
    assert sent.status_code == 403
    assert sent.json()["detail"] == "this API key lacks the 'admin' scope (it has: read, write)"
    assert (await client.put("/v1/tenant/ai", json={}, headers=writer)).status_code == 403


async def test_a_reply_the_provider_refuses_leaves_the_error_on_the_thread(
    client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    thread_id = await chat_thread(client, support("support"), customer="Ed", order="E")
    openai.then(OpenAiWire.error(400, "This model does not exist", "model_not_found"))
    sent = await client.post(f"/v1/threads/{thread_id}/messages", json={"content": "hello?"})
    await wait_for_command(client, sent.json()["command_id"])

    async def failed() -> dict[str, Any] | None:
        thread = (await client.get(f"/v1/threads/{thread_id}")).json()
        return thread if thread["last_error"] else None

    thread = await until(failed, "failed reply")
    assert thread["pending_replies"] == 0
    assert "This model does not exist" in thread["last_error"]["message"]
    assert [m["role"] for m in await messages(client, thread_id)] == ["user"]
