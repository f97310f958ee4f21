"""What a key may do beyond its scopes, on real PostgreSQL and Kafka: commands only Heddle
sends are refused, tasks are for their assignee or role, the tenant's AI settings stay the
admin's, artifacts cannot run in a browser, and bodies nested too deeply or ids that are
no run get a clear 422 or 404 instead of a 500."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from api.http.middleware import TOO_DEEP
from api.http.redaction import REDACTED
from domain.tenants import settings_id
from tests.integration.helpers import (
    api_client,
    example,
    key_headers,
    publish,
    start_run,
    wait_for_command,
    wait_for_run,
)
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)
from tests.integration.test_people import wait_for_task
from tests.integration.test_threads import messages, read_stream, say

SECRET_PROMPT = "Never mention the discount code WINTER24."


async def test_commands_only_heddle_sends_are_refused_naming_who_sends_them(
    client: httpx.AsyncClient,
) -> None:
    run_id = str(uuid.uuid4())
    for type_, payload, sender in (
        ("FireTimer", {"run_id": run_id, "timer": "wait:pause:1"}, "the timer role"),
        (
            "CompleteRemoteTask",
            {"task_id": f"{run_id}:loud:1", "status": "ok", "output": {}},
            "the intake, from results on heddle.task-results",
        ),
        ("StartSubworkflow", {"run_id": run_id, "child_run_id": run_id}, "the run worker"),
        ("CompleteSubworkflow", {"child_run_id": run_id}, "the run worker"),
    ):
        sent = await client.post("/v1/commands", json={"type": type_, "payload": payload})
        assert sent.status_code == 403, type_
        assert sent.json()["detail"] == (
            f"{type_} is sent by Heddle itself ({sender}), never through the API"
        )
    allowed = await client.post("/v1/commands", json={"type": "CancelRun", "payload": {}})
    assert allowed.status_code == 202


async def test_a_task_is_completed_only_by_its_assignee_or_a_key_in_its_role(
    heddle: Any, client: httpx.AsyncClient
) -> None:
    await publish(client, example("approval"))
    owned = example("approval") | {"name": "owned-approval"}
    owned["nodes"]["review"] = {
        **{k: v for k, v in owned["nodes"]["review"].items() if k != "role"},
        "assignee": "{{ input.customer | lower }}",
    }
    await publish(client, owned)
    for_support = await start_run(client, "refund-approval", {"customer": "Ada", "amount": 40})
    for_ada = await start_run(client, "owned-approval", {"customer": "Ada", "amount": 5})
    await wait_for_task(client, for_support)
    await wait_for_task(client, for_ada)

    mallory = await key_headers(heddle, scopes=("read", "write"), name="mallory")
    sam = await key_headers(heddle, scopes=("read", "write"), name="sam", roles=("support",))
    ada = await key_headers(heddle, scopes=("read", "write"), name="ada")
    approve = {"decision": "approve"}
    refused = {
        "complete": await client.post(
            f"/v1/runs/{for_support}/tasks/review/complete", json=approve, headers=mallory
        ),
        "reassign": await client.post(
            f"/v1/runs/{for_support}/tasks/review/reassign",
            json={"assignee": "mallory"},
            headers=mallory,
        ),
        "command": await client.post(
            "/v1/commands",
            json={"type": "CompleteTask", "payload": {"run_id": for_support, "task": "review"}},
            headers=mallory,
        ),
        "by role": await client.post(
            f"/v1/runs/{for_ada}/tasks/review/complete", json=approve, headers=sam
        ),
    }
    assert {how: r.status_code for how, r in refused.items()} == dict.fromkeys(refused, 403)
    assert refused["complete"].json()["detail"] == (
        f"task 'review' of run {for_support} is for role 'support': 'mallory' (roles: none) "
        "may not act on it"
    )
    assert refused["by role"].json()["detail"] == (
        f"task 'review' of run {for_ada} is for assignee 'ada': 'sam' (roles: support) may "
        "not act on it"
    )
    for run_id, headers in ((for_support, sam), (for_ada, ada)):
        done = await client.post(
            f"/v1/runs/{run_id}/tasks/review/complete", json=approve, headers=headers
        )
        assert done.status_code == 202, done.text
        run = await wait_for_run(client, run_id)
        assert (run["status"], run["variables"]["outcome"]) == ("completed", "refunded")


async def test_the_tenants_ai_settings_and_system_prompts_are_read_with_an_admin_key_only(
    heddle: Any,
) -> None:
    async with api_client(heddle, "acme") as admin, api_client(heddle, "acme", ("read",)) as reader:
        configured = await admin.put(
            "/v1/tenant/ai", json={"model": "scripted:echo", "system": SECRET_PROMPT}
        )
        assert (await wait_for_command(admin, configured.json()["command_id"]))["status"] == (
            "accepted"
        )
        settings = settings_id("acme")
        for path in (
            f"/v1/runs/{settings}/events",
            f"/v1/runs/{settings}/state",
            f"/v1/runs/{settings}/export",
        ):
            for api in (reader, admin):
                answer = await api.get(path)
                assert (answer.status_code, answer.json()["detail"]) == (
                    404,
                    f"no run {settings}",
                ), path

        opened = await admin.post("/v1/threads", json={"title": "pricing"})
        thread_id = opened.json()["thread_id"]
        await wait_for_command(admin, opened.json()["command_id"])
        await say(admin, thread_id, "Any discount?")
        done = await admin.post(f"/v1/threads/{thread_id}/complete", json={})
        await wait_for_command(admin, done.json()["command_id"])

        seen = [m.json() for m in await read_stream(reader, thread_id) if m.event == "event"]
        assert SECRET_PROMPT not in str(seen)
        assert seen[0]["data"]["reply"]["system"] == REDACTED
        [requested] = [e for e in seen if e["type"] == "Thread.ReplyRequested"]
        assert requested["data"]["request"] is None, "a reply request repeats no transcript"
        assert [(m["role"], m["content"]) for m in await messages(reader, thread_id)] == [
            ("user", "Any discount?"),
            ("assistant", "Any discount?"),
        ]
        assert (await reader.get(f"/v1/runs/{thread_id}/events")).status_code == 404
        assert SECRET_PROMPT in str([m.data for m in await read_stream(admin, thread_id)])

        configured = await admin.put(
            "/v1/tenant/ai",
            json={"ai_mode": "orchestrator", "model": "scripted:agent", "system": SECRET_PROMPT},
        )
        await wait_for_command(admin, configured.json()["command_id"])
        opened = await admin.post("/v1/threads", json={"title": "agent"})
        await wait_for_command(admin, opened.json()["command_id"])
        await say(admin, opened.json()["thread_id"], "Hello")
        [_, reply] = await messages(admin, opened.json()["thread_id"])
        run_id = reply["source"]["run_id"]
        await wait_for_run(admin, run_id)
        for path in (
            f"/v1/runs/{run_id}/events",
            f"/v1/runs/{run_id}/state",
            f"/v1/runs/{run_id}/attempts",
        ):
            assert SECRET_PROMPT in (await admin.get(path)).text
            shown = await reader.get(path)
            assert shown.status_code == 200
            assert SECRET_PROMPT not in shown.text
            assert REDACTED in shown.text


async def test_artifacts_are_served_so_that_a_browser_runs_none_of_them(
    client: httpx.AsyncClient,
) -> None:
    page = "<script>alert(document.cookie)</script>"
    saved = {
        "name": "saved",
        "start": "save",
        "nodes": {
            "save": {
                "kind": "set",
                "vars": {"done": True},
                "on_exit": [
                    {"document": {"name": name, "content_type": kind, "template": page}}
                    for name, kind in (
                        ("page.html", "text/html"),
                        ("logo.svg", "image/svg+xml"),
                        ("notes.md", "text/markdown"),
                    )
                ],
            }
        },
    }
    await publish(client, saved)
    run_id = await start_run(client, "saved", {})
    assert (await wait_for_run(client, run_id))["status"] == "completed"
    listed = (await client.get(f"/v1/runs/{run_id}/artifacts")).json()["items"]
    served = {
        item["name"]: (await client.get(f"/v1/artifacts/{item['artifact_id']}/content")).headers
        for item in listed
    }
    assert {name: h["content-disposition"] for name, h in served.items()} == {
        "page.html": 'attachment; filename="page.html"',
        "logo.svg": 'attachment; filename="logo.svg"',
        "notes.md": 'inline; filename="notes.md"',
    }
    for headers in served.values():
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"].startswith("default-src 'none';")
        assert headers["content-security-policy"].endswith("; sandbox")


async def test_bodies_nested_too_deeply_and_ids_of_no_run_get_a_clear_422_or_404(
    client: httpx.AsyncClient,
) -> None:
    def nested(depth: int) -> Any:
        value: Any = "x"
        for _ in range(depth):
            value = [value]
        return value

    yaml_body = "name: deep\nstart: " + "[" * 5000 + "]" * 5000
    for response in (
        await client.put(
            "/v1/workflows/deep", content=yaml_body, headers={"content-type": "application/yaml"}
        ),
        await client.post(
            "/v1/commands",
            content='{"type": "StartRun", "payload": ' + "[" * 50_000 + "]" * 50_000 + "}",
            headers={"content-type": "application/json"},
        ),
    ):
        assert (response.status_code, response.json()["detail"]) == (422, TOO_DEEP)
    definition = await client.put(
        "/v1/workflows/deep", json={"start": "a", "nodes": {"a": {"kind": "set"}}, "x": nested(99)}
    )
    assert definition.status_code == 422
    assert definition.json()["problems"] == [
        {"path": "", "message": "nested deeper than 64 levels of objects and lists: flatten it"}
    ]
    started = await client.post("/v1/runs", json={"workflow": "hello", "input": {"x": nested(99)}})
    assert started.status_code == 422
    assert started.json()["problems"] == [
        {
            "path": "payload",
            "message": "Value error, nested deeper than 64 levels of objects and lists: flatten it",
        }
    ]

    opened = await client.post("/v1/threads", json={"title": "not a run"})
    thread_id = opened.json()["thread_id"]
    await wait_for_command(client, opened.json()["command_id"])
    for path in (
        f"/v1/runs/{thread_id}/events",
        f"/v1/runs/{thread_id}/state",
        f"/v1/runs/{thread_id}/export",
        f"/v1/runs/diff?a={thread_id}&b={thread_id}",
    ):
        answer = await client.get(path)
        assert (answer.status_code, answer.json()["detail"]) == (404, f"no run {thread_id}")
