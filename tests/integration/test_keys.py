"""API keys and tenants on real PostgreSQL and Kafka: what a caller without a key, with a
bad one or with too few scopes is told; keys shown once and stored as digests; the key's
name as the actor in events; and another tenant finding nothing at any endpoint."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import module_heddle
from tests.integration.helpers import (
    api_client,
    example,
    key_headers,
    publish,
    wait_for_command,
    wait_for_run,
)
from tests.integration.shared import client  # noqa: F401 (a fixture, of this module's heddle)
from tests.integration.test_streams import heddle_cli, served

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS_KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture(scope="module")
async def heddle(
    postgres_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    environ = {"HEDDLE_CREDENTIALS_KEY": CREDENTIALS_KEY}
    async with module_heddle(tmp_path_factory, postgres_url, kafka_bootstrap, environ) as instance:
        yield instance


@pytest.fixture
async def anonymous(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(heddle) as api:
        del api.headers["Authorization"]
        yield api


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_key(client: httpx.AsyncClient, *scopes: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/keys", json={"scopes": list(scopes), **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_request_without_a_key_is_401_saying_what_to_send(
    anonymous: httpx.AsyncClient,
) -> None:
    for method, path in (
        ("GET", "/v1/runs"),
        ("POST", "/v1/runs"),
        ("GET", "/v1/keys"),
        ("GET", f"/v1/runs/{uuid.uuid4()}/stream"),
        ("GET", "/asyncapi.json"),
    ):
        response = await anonymous.request(method, path, json={"workflow": "hello"})
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"].startswith(
            "missing API key: send an API key as `Authorization: Bearer <key>`"
        )
        assert "HEDDLE_API_KEY" in response.json()["detail"]
    basic = await anonymous.get("/v1/runs", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401
    assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
    assert (await anonymous.get("/readyz")).status_code == 200


async def test_a_wrong_revoked_or_expired_key_is_401_saying_why(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    made = await new_key(client, "read")
    forged = made["key"][:-4] + ("AAAA" if not made["key"].endswith("AAAA") else "BBBB")
    for wrong in ("not-a-key", forged, "heddle_000000000000_" + "x" * 43):
        response = await anonymous.get("/v1/runs", headers=bearer(wrong))
        assert response.status_code == 401
        assert response.json()["detail"].startswith("invalid API key: send an API key as")
    assert (await anonymous.get("/v1/runs", headers=bearer(made["key"]))).status_code == 200

    revoked = await client.delete(f"/v1/keys/{made['id']}")
    assert revoked.json()["status"] == "revoked"
    response = await anonymous.get("/v1/runs", headers=bearer(made["key"]))
    assert response.status_code == 401
    assert response.json()["detail"].startswith(f"API key {made['id']} was revoked")

    soon = datetime.now(UTC) + timedelta(seconds=1)
    expiring = await new_key(client, "read", expires_at=soon.isoformat())
    assert (await anonymous.get("/v1/runs", headers=bearer(expiring["key"]))).status_code == 200
    await asyncio.sleep(1.1)
    response = await anonymous.get("/v1/runs", headers=bearer(expiring["key"]))
    assert response.status_code == 401
    assert response.json()["detail"].startswith(f"API key {expiring['id']} expired at")
    listed = {k["id"]: k["status"] for k in (await client.get("/v1/keys")).json()["items"]}
    assert (listed[made["id"]], listed[expiring["id"]]) == ("revoked", "expired")


async def test_a_key_without_the_scope_is_403_naming_the_scope(
    heddle: Any, anonymous: httpx.AsyncClient
) -> None:
    reader = await key_headers(heddle, scopes=("read",))
    writer = await key_headers(heddle, scopes=("write",))
    assert (await anonymous.get("/v1/runs", headers=reader)).status_code == 200
    for method, path, headers, scope in (
        ("POST", "/v1/runs", reader, "write"),
        ("PUT", "/v1/workflows/hello", reader, "write"),
        ("POST", f"/v1/runs/{uuid.uuid4()}/cancel", reader, "write"),
        ("GET", "/v1/runs", writer, "read"),
        ("GET", "/v1/keys", writer, "admin"),
        ("POST", "/v1/keys", writer, "admin"),
        ("GET", "/v1/credentials", reader, "admin"),
        ("GET", "/v1/providers/health", reader, "admin"),
        ("DELETE", "/v1/credentials/team-a", writer, "admin"),
    ):
        response = await anonymous.request(method, path, headers=headers, json={})
        assert response.status_code == 403, (method, path)
        has = "read" if headers is reader else "write"
        assert response.json()["detail"] == (
            f"this API key lacks the {scope!r} scope (it has: {has})"
        )
    started = await anonymous.post("/v1/runs", headers=writer, json={"workflow": "nothing"})
    assert started.status_code == 202


async def test_a_new_key_is_shown_once_and_stored_only_as_a_digest(
    heddle: Any, client: httpx.AsyncClient
) -> None:
    made = await new_key(client, "write", "read", name="ci")
    assert made["key"].startswith(f"heddle_{made['id']}_")
    assert (made["tenant"], made["name"], made["scopes"]) == ("default", "ci", ["read", "write"])
    listing = await client.get("/v1/keys")
    assert made["key"] not in listing.text
    [listed] = [k for k in listing.json()["items"] if k["id"] == made["id"]]
    assert listed == {k: v for k, v in made.items() if k != "key"}
    with psycopg.connect(heddle.database_url) as conn:
        rows = conn.execute("SELECT * FROM api_keys WHERE id = %s", [made["id"]]).fetchall()
    assert made["key"] not in str(rows)
    assert bytes(rows[0][4]) == hashlib.sha256(made["key"].encode()).digest()
    refused = await client.post("/v1/keys", json={"scopes": ["root"]})
    assert refused.status_code == 422


async def test_events_name_the_key_that_acted_and_its_tenant(
    heddle: Any, client: httpx.AsyncClient
) -> None:
    await publish(client, example("hello"))
    named = await new_key(client, "read", "write", name="nightly-batch")
    unnamed = await new_key(client, "read", "write")
    for made, actor in ((named, "nightly-batch"), (unnamed, f"key {unnamed['id']}")):
        headers = bearer(made["key"])
        started = (
            await client.post(
                "/v1/runs", headers=headers, json={"workflow": "hello", "input": {"name": "Ada"}}
            )
        ).json()
        await wait_for_run(client, started["run_id"])
        events = (await client.get(f"/v1/runs/{started['run_id']}/events")).json()["events"]
        assert (events[0]["data"]["tenant"], events[0]["data"]["actor"]) == ("default", actor)


async def test_an_admin_manages_the_keys_of_its_own_tenant_only(
    heddle: Any, client: httpx.AsyncClient
) -> None:
    async with api_client(heddle, tenant="acme") as acme:
        theirs = await new_key(acme, "read")
        refused = await acme.post("/v1/keys", json={"scopes": ["read"], "tenant": "default"})
        assert refused.status_code == 403
        assert "heddle keys create --database --tenant default" in refused.json()["detail"]
        assert {k["tenant"] for k in (await acme.get("/v1/keys")).json()["items"]} == {"acme"}
    assert (await client.delete(f"/v1/keys/{theirs['id']}")).status_code == 404
    assert theirs["id"] not in (await client.get("/v1/keys")).text
    response = await client.get("/v1/runs", headers=bearer(theirs["key"]))
    assert response.status_code == 200, "a failed revoke by another tenant leaves the key working"


async def test_another_tenant_sees_none_of_a_tenants_objects_at_any_endpoint(
    heddle: Any, client: httpx.AsyncClient
) -> None:
    # What the owner (tenant `default`) has: a finished run, a run waiting on a task,
    # a command, a workflow, a credential and keys.
    await publish(client, example("hello"))
    await publish(client, example("approval"))
    hello = (
        await client.post("/v1/runs", json={"workflow": "hello", "input": {"name": "Ada"}})
    ).json()
    refund = (
        await client.post(
            "/v1/runs",
            json={"workflow": "refund-approval", "input": {"customer": "Ada", "amount": 40}},
        )
    ).json()
    finished, waiting = hello["run_id"], refund["run_id"]
    await wait_for_run(client, finished)
    await publish(client, example("actions"))
    brief = (
        await client.post(
            "/v1/runs",
            json={
                "workflow": "renewal-brief",
                "input": {"customer": "Acme", "arr": 1, "days_to_renewal": 9},
            },
        )
    ).json()
    await wait_for_run(client, brief["run_id"])
    [artifact] = (await client.get(f"/v1/runs/{brief['run_id']}/artifacts")).json()["items"]
    artifact_id = artifact["artifact_id"]
    await wait_for_run(client, waiting, status={"running"})
    for _ in range(200):
        if (await client.get("/v1/tasks", params={"run_id": waiting})).json()["items"]:
            break
        await asyncio.sleep(0.05)
    assert (
        await client.put(
            "/v1/credentials/team-a", json={"provider": "openai", "api_key": "sk-owner"}
        )
    ).status_code == 200
    owner_key = (await client.get("/v1/keys")).json()["items"][0]["id"]
    configured = await client.put(
        "/v1/tenant/ai", json={"model": "scripted:echo", "system": "the owner's prompt"}
    )
    assert (await wait_for_command(client, configured.json()["command_id"]))["status"] == "accepted"
    opened = (await client.post("/v1/threads", json={"title": "owner's chat"})).json()
    thread = opened["thread_id"]
    said = await client.post(f"/v1/threads/{thread}/messages", json={"content": "hello"})
    await wait_for_command(client, said.json()["command_id"])
    exported = (await client.get(f"/v1/runs/{finished}/export")).json()
    document = (
        await client.post(
            "/v1/documents", content=b"owner notes", headers={"Content-Type": "text/plain"}
        )
    ).json()["document_id"]
    # A customer with a playbook's recommendation in its owner's queue.
    await publish(client, {"name": "check-in", "start": "note",
                           "nodes": {"note": {"kind": "set", "vars": {"done": True}}}})  # fmt: skip
    playbook = {"name": "care", "rules": [{"id": "all", "workflow": "check-in", "stage": "now"}]}
    assert (await client.put("/v1/playbooks/care", json=playbook)).status_code == 200
    customer = {"name": "Acme Corp", "owner": "maya", "stakeholders": [{"name": "Wile E."}]}
    saved = await client.put("/v1/customers/acme", json=customer)
    await wait_for_command(client, saved.json()["command_id"])
    wait = {"X-Heddle-Wait-For-Command": saved.json()["command_id"]}
    [item] = (await client.get("/v1/queues/maya", headers=wait)).json()["items"]
    # A schedule (it fires once a day: nothing during the test).
    scheduled = await client.post(
        "/v1/schedules", json={"name": "greeter", "workflow": "hello", "every": "1d",
                               "input": {"name": "Ada"}},
    )  # fmt: skip
    assert (await wait_for_command(client, scheduled.json()["command_id"]))["status"] == "accepted"

    async with api_client(heddle, tenant="intruder") as intruder:

        async def not_found(method: str, path: str, **kwargs: Any) -> None:
            response = await intruder.request(method, path, **kwargs)
            assert response.status_code == 404, (method, path, response.text)

        async def rejected(path: str, body: dict[str, Any]) -> None:
            sent = await intruder.post(path, json=body)
            assert sent.status_code == 202, (path, sent.text)
            result = await wait_for_command(intruder, sent.json()["command_id"])
            assert result["status"] == "rejected", (path, result)
            assert result["reason"].startswith(
                ("no run", "no workflow named", "no thread", "no customer", "no schedule")
            ), result

        async def empty(path: str, **params: Any) -> None:
            response = await intruder.get(path, params=params)
            assert response.status_code == 200, path
            assert response.json()["items"] == [], path

        async def rejected_patch(path: str) -> None:
            sent = await intruder.patch(path, json={"risk": 99})
            assert sent.status_code == 202, sent.text
            result = await wait_for_command(intruder, sent.json()["command_id"])
            assert result["reason"] == "no customer 'acme': create it first (PUT)", result

        async def no_tenant_data(path: str) -> None:
            response = await intruder.get(path)
            assert response.status_code in (200, 503), (path, response.text)  # 503: unhealthy
            for owners in (finished, waiting, "refund-approval", "team-a", "sk-owner"):
                assert owners not in response.text, (path, owners)

        async def own_workflow() -> None:
            published = await publish(intruder, example("hello"))
            assert published["version"] == 1
            owner = (await client.get("/v1/workflows/hello")).json()
            assert (owner["version"], owner["published_by"]) == (1, "api")

        async def import_over_the_owners_run() -> None:
            response = await intruder.post(
                "/v1/runs/import", params={"keep_id": "true"}, json=exported
            )
            assert response.status_code == 409, response.text
            imported = await intruder.post("/v1/runs/import", json=exported)
            assert imported.status_code == 201
            assert imported.json()["run_id"] != finished

        async def command_of_the_owner() -> None:
            answer = (await intruder.get(f"/v1/commands/{hello['command_id']}")).json()
            assert answer == {"command_id": hello["command_id"], "status": "pending"}

        async def own_credential() -> None:
            stored = await intruder.put(
                "/v1/credentials/team-a", json={"provider": "openai", "api_key": "sk-intruder"}
            )
            assert stored.status_code == 200
            assert await heddle.credentials.key("default", "team-a") == ("openai", "sk-owner")

        async def own_document() -> None:
            uploaded = await intruder.post(
                "/v1/documents", content=b"intruder notes", headers={"Content-Type": "text/plain"}
            )
            assert uploaded.status_code == 201, uploaded.text
            document = uploaded.json()["document_id"]
            assert (await heddle.documents.text("intruder", document)).text == "intruder notes"
            assert await heddle.documents.text("default", document) is None

        async def own_keys_only() -> None:
            listed = (await intruder.get("/v1/keys")).json()["items"]
            assert {k["tenant"] for k in listed} == {"intruder"}

        async def no_key_for_the_owner() -> None:
            body = {"scopes": ["admin"], "tenant": "default"}
            response = await intruder.post("/v1/keys", json=body)
            assert response.status_code == 403

        async def operators_only() -> None:
            response = await intruder.get("/metrics")
            assert response.status_code == 403, response.text

        async def no_dead_letters() -> None:
            listed = await intruder.get("/v1/dead-letters")
            assert listed.json() == {"dead_letters": []}, listed.text

        async def own_ai_mode() -> None:
            mine = (await intruder.get("/v1/tenant/ai")).json()
            assert (mine["tenant"], mine["model"]) == ("intruder", None)

        async def configure_own_ai_mode() -> None:
            sent = await intruder.put("/v1/tenant/ai", json={"model": "scripted:other"})
            assert (await wait_for_command(intruder, sent.json()["command_id"]))["status"] == (
                "accepted"
            )
            owner = (await client.get("/v1/tenant/ai")).json()
            assert (owner["model"], owner["system"]) == ("scripted:echo", "the owner's prompt")

        async def delete_no_schedule_of_the_owner() -> None:
            sent = await intruder.delete("/v1/schedules/greeter")
            result = await wait_for_command(intruder, sent.json()["command_id"])
            assert result["reason"] == "no schedule 'greeter'", result
            owner = (await client.get("/v1/schedules/greeter")).json()
            assert owner["status"] == "active"

        async def own_schedule() -> None:
            body = {"name": "greeter", "workflow": "refund-approval", "every": "1d"}
            await rejected("/v1/schedules", body)  # its tenant has no such workflow
            assert (await client.get("/v1/schedules/greeter")).json()["workflow"] == "hello"

        async def own_customers() -> None:
            mine = await intruder.put("/v1/customers/acme", json={"name": "Intruder's Acme"})
            await wait_for_command(intruder, mine.json()["command_id"])
            owner = (await client.get("/v1/customers/acme")).json()
            assert (owner["name"], owner["version"]) == ("Acme Corp", 3)

        async def own_import() -> None:
            body = {"customers": [{"customer_id": "acme", "name": "Imported Acme"}]}
            imported = await intruder.post("/v1/customers/import", json=body)
            assert [a["customer_id"] for a in imported.json()["accepted"]] == ["acme"]
            await wait_for_command(intruder, imported.json()["accepted"][0]["command_id"])
            assert (await client.get("/v1/customers/acme")).json()["name"] == "Acme Corp"

        async def no_owners_workflows_in_a_playbook() -> None:
            answer = await intruder.put("/v1/playbooks/care", json=playbook)
            assert answer.status_code == 422, answer.text
            [problem] = answer.json()["problems"]
            assert problem["path"] == "rules[0].workflow"

        customer_path = "/v1/customers/acme"
        task = f"/v1/runs/{waiting}/tasks/review"
        # Reads first: the writes after them give the intruder things of its own.
        checks: dict[str, Callable[[], Awaitable[None]]] = {
            "GET /v1/runs": lambda: empty("/v1/runs"),
            "GET /v1/tasks": lambda: empty("/v1/tasks"),
            "GET /v1/workflows": lambda: empty("/v1/workflows"),
            "GET /v1/credentials": lambda: empty("/v1/credentials"),
            "GET /v1/keys": own_keys_only,
            "GET /v1/runs/{run_id}": lambda: not_found("GET", f"/v1/runs/{finished}"),
            "GET /v1/runs/{run_id}/events": lambda: not_found("GET", f"/v1/runs/{finished}/events"),
            "GET /v1/runs/{run_id}/state": lambda: not_found("GET", f"/v1/runs/{finished}/state"),
            "GET /v1/runs/{run_id}/export": lambda: not_found("GET", f"/v1/runs/{finished}/export"),
            "GET /v1/runs/{run_id}/stream": lambda: not_found("GET", f"/v1/runs/{waiting}/stream"),
            "GET /v1/runs/{run_id}/attempts": lambda: not_found(
                "GET", f"/v1/runs/{finished}/attempts"
            ),
            "GET /v1/usage": lambda: empty("/v1/usage", group_by="run"),
            "GET /v1/runs/{run_id}/artifacts": lambda: not_found(
                "GET", f"/v1/runs/{brief['run_id']}/artifacts"
            ),
            "GET /v1/artifacts/{artifact_id}": lambda: not_found(
                "GET", f"/v1/artifacts/{artifact_id}"
            ),
            "GET /v1/artifacts/{artifact_id}/content": lambda: not_found(
                "GET", f"/v1/artifacts/{artifact_id}/content"
            ),
            "GET /v1/threads": lambda: empty("/v1/threads"),
            "GET /v1/threads/{thread_id}": lambda: not_found("GET", f"/v1/threads/{thread}"),
            "GET /v1/threads/{thread_id}/messages": lambda: not_found(
                "GET", f"/v1/threads/{thread}/messages"
            ),
            "GET /v1/threads/{thread_id}/stream": lambda: not_found(
                "GET", f"/v1/threads/{thread}/stream"
            ),
            "GET /v1/tenant/ai": own_ai_mode,
            "GET /v1/customers": lambda: empty("/v1/customers"),
            "GET /v1/customers/{customer_id}": lambda: not_found("GET", customer_path),
            "GET /v1/customers/{customer_id}/stakeholders": lambda: not_found(
                "GET", f"{customer_path}/stakeholders"
            ),
            "GET /v1/customers/{customer_id}/context": lambda: not_found(
                "GET", f"{customer_path}/context"
            ),
            "GET /v1/playbooks": lambda: empty("/v1/playbooks"),
            "GET /v1/playbooks/{name}": lambda: not_found("GET", "/v1/playbooks/care"),
            "GET /v1/queues/{assignee}": lambda: empty("/v1/queues/maya"),
            "POST /v1/queues/{assignee}/items/{item_id}/start": lambda: not_found(
                "POST", f"/v1/queues/maya/items/{item['item_id']}/start"
            ),
            "PATCH /v1/customers/{customer_id}": lambda: rejected_patch(customer_path),
            "POST /v1/queues/{assignee}/items/{item_id}/snooze": lambda: not_found(
                "POST", f"/v1/queues/maya/items/{item['item_id']}/snooze", json={"until": "1d"}
            ),
            "POST /v1/customers/{customer_id}/signals": lambda: rejected(
                f"{customer_path}/signals", {"kind": "contact"}
            ),
            "PUT /v1/playbooks/{name}": no_owners_workflows_in_a_playbook,
            "PUT /v1/customers/{customer_id}": own_customers,
            "POST /v1/customers/import": own_import,
            "GET /v1/schedules": lambda: empty("/v1/schedules"),
            "GET /v1/schedules/{name}": lambda: not_found("GET", "/v1/schedules/greeter"),
            "POST /v1/schedules": own_schedule,
            "POST /v1/schedules/{name}/pause": lambda: rejected("/v1/schedules/greeter/pause", {}),
            "POST /v1/schedules/{name}/resume": lambda: rejected(
                "/v1/schedules/greeter/resume", {}
            ),
            "DELETE /v1/schedules/{name}": delete_no_schedule_of_the_owner,
            "GET /v1/runs/diff": lambda: not_found(
                "GET", "/v1/runs/diff", params={"a": finished, "b": finished}
            ),
            "GET /v1/workflows/{name}": lambda: not_found("GET", "/v1/workflows/refund-approval"),
            "GET /v1/commands/{command_id}": command_of_the_owner,
            "GET /v1/projections": lambda: no_tenant_data("/v1/projections"),
            "GET /v1/providers/health": lambda: no_tenant_data("/v1/providers/health"),
            "GET /asyncapi.json": lambda: no_tenant_data("/asyncapi.json"),
            "GET /asyncapi": lambda: no_tenant_data("/asyncapi"),
            "POST /v1/runs": lambda: rejected("/v1/runs", {"workflow": "refund-approval"}),
            "POST /v1/commands": lambda: rejected(
                "/v1/commands", {"type": "CancelRun", "payload": {"run_id": waiting}}
            ),
            "POST /v1/runs/{run_id}/fork": lambda: rejected(
                f"/v1/runs/{finished}/fork", {"from_node": "greet"}
            ),
            "POST /v1/runs/{run_id}/edits": lambda: rejected(
                f"/v1/runs/{waiting}/edits",
                {"edits": [{"op": "remove_node", "node": "refuse"}], "reason": "x"},
            ),
            "POST /v1/runs/{run_id}/tasks/{task}/complete": lambda: rejected(
                f"{task}/complete", {"decision": "approve"}
            ),
            "POST /v1/runs/{run_id}/tasks/{task}/reassign": lambda: rejected(
                f"{task}/reassign", {"assignee": "mallory"}
            ),
            "POST /v1/runs/{run_id}/pause": lambda: rejected(f"/v1/runs/{waiting}/pause", {}),
            "POST /v1/runs/{run_id}/resume": lambda: rejected(f"/v1/runs/{waiting}/resume", {}),
            "POST /v1/runs/{run_id}/cancel": lambda: rejected(f"/v1/runs/{waiting}/cancel", {}),
            "POST /v1/runs/{run_id}/complete": lambda: rejected(
                f"/v1/runs/{waiting}/complete", {"outcome": "taken over"}
            ),
            "POST /v1/runs/{run_id}/variables": lambda: rejected(
                f"/v1/runs/{waiting}/variables", {"variables": {"approved": True}}
            ),
            "POST /v1/runs/import": import_over_the_owners_run,
            "POST /v1/threads": lambda: rejected("/v1/threads", {"workflow": "refund-approval"}),
            "POST /v1/threads/{thread_id}/messages": lambda: rejected(
                f"/v1/threads/{thread}/messages", {"content": "let me in"}
            ),
            "POST /v1/threads/{thread_id}/complete": lambda: rejected(
                f"/v1/threads/{thread}/complete", {}
            ),
            "PUT /v1/tenant/ai": configure_own_ai_mode,
            "PUT /v1/workflows/{name}": own_workflow,
            "POST /v1/documents": own_document,
            "GET /v1/documents/{document_id}": lambda: not_found(
                "GET", f"/v1/documents/{document}"
            ),
            "DELETE /v1/credentials/{credential_id}": lambda: not_found(
                "DELETE", "/v1/credentials/team-a"
            ),
            "PUT /v1/credentials/{credential_id}": own_credential,
            "POST /v1/keys": no_key_for_the_owner,
            "DELETE /v1/keys/{key_id}": lambda: not_found("DELETE", f"/v1/keys/{owner_key}"),
            "GET /v1/dead-letters": no_dead_letters,
            "GET /metrics": operators_only,
            "GET /v1/dead-letters/{partition}/{offset}": lambda: not_found(
                "GET", "/v1/dead-letters/0/0"
            ),
            "POST /v1/dead-letters/replay": lambda: not_found(
                "POST", "/v1/dead-letters/replay", json={"entries": [{"partition": 0, "offset": 0}]}
            ),
        }
        paths = (await client.get("/openapi.json")).json()["paths"]
        endpoints = {f"{m.upper()} {p}" for p, ops in paths.items() for m in ops}
        assert set(checks) == endpoints - {"GET /healthz", "GET /readyz"}, "check every endpoint"
        for check in checks.values():
            await check()

    # The owner's things are as they were.
    assert (await client.get(f"/v1/runs/{waiting}")).json()["status"] == "running"
    [open_task] = (await client.get("/v1/tasks", params={"run_id": waiting})).json()["items"]
    assert (open_task["status"], open_task["assignee"]) == ("open", None)
    assert [c["id"] for c in (await client.get("/v1/credentials")).json()["items"]] == ["team-a"]
    assert (await client.get("/v1/runs", params={"workflow": "hello"})).json()["items"]
    for _ in range(200):
        chat = (await client.get(f"/v1/threads/{thread}/messages")).json()["items"]
        if len(chat) >= 2:
            break
        await asyncio.sleep(0.05)
    assert [(m["role"], m["content"]) for m in chat] == [
        ("user", "hello"),
        ("assistant", "hello"),
    ], "the intruder's message was not posted"


async def heddle_keys(*args: str, **env: str) -> tuple[int, str, str]:
    """`heddle keys ...` in a subprocess, with `env` added to this environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "keys",
        *args,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_heddle_keys_make_list_and_revoke_keys_through_the_api_or_the_database(
    heddle: Any, anonymous: httpx.AsyncClient
) -> None:
    direct = {"DATABASE_URL": heddle.database_url}
    code, first, err = await heddle_keys(
        "create", "--database", "--tenant", "globex", "--scope", "admin", "--name", "ops", **direct
    )
    assert code == 0, err
    assert "of tenant globex (admin); it is shown this once" in err
    admin_key = first.strip()
    assert (await anonymous.get("/v1/keys", headers=bearer(admin_key))).status_code == 200

    async with served(heddle) as api:
        api.headers["Authorization"] = f"Bearer {admin_key}"
        code, out, err = await heddle_cli(
            api, "keys", "create", "--scope", "read", "--role", "support", "--json"
        )
        assert code == 0, err
        reader = json.loads(out)
        assert (reader["tenant"], reader["scopes"], reader["roles"]) == (
            "globex",
            ["read"],
            ["support"],
        )
        code, out, _ = await heddle_cli(api, "keys", "list")
        assert f"{reader['id']} │ globex" in out
        assert reader["key"] not in out
        code, out, _ = await heddle_cli(api, "keys", "revoke", reader["id"])
        assert (code, out.strip()) == (0, f"revoked key {reader['id']}")
        code, _, err = await heddle_cli(api, "keys", "create", "--scope", "root")
        assert code == 1
        assert "unknown scopes root" in err

    assert (await anonymous.get("/v1/runs", headers=bearer(reader["key"]))).status_code == 401
    code, out, _ = await heddle_keys("list", "--database", "--json", **direct)
    tenants = {key["tenant"] for key in json.loads(out)}
    assert {"default", "globex"} <= tenants
    admin_id = admin_key.split("_")[1]
    code, out, _ = await heddle_keys("revoke", "--database", admin_id, **direct)
    assert code == 0
    assert (await anonymous.get("/v1/keys", headers=bearer(admin_key))).status_code == 401
