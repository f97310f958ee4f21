"""The OpenAPI document is the contract: with data in every read model, the answer of each
route fits the schema `/openapi.json` gives for it (a field the schema does not name, a
type it does not allow, fails here), and every list goes a page at a time with the same
cursor, on real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import jsonschema

from tests.integration.helpers import (
    api_client,
    example,
    publish,
    start_run,
    wait_for_command,
    wait_for_run,
    wait_for_task,
)
from tests.integration.shared import client  # noqa: F401 (fixtures)
from tests.integration.test_keys import heddle  # noqa: F401 (with a credentials key)

SAVED = {
    "name": "saved",
    "start": "save",
    "nodes": {
        "save": {
            "kind": "set",
            "vars": {"done": True},
            "on_exit": [{"document": {"name": "notes.md", "content_type": "text/markdown",
                                      "template": "notes"}}],
        }
    },
}  # fmt: skip


async def test_every_answer_fits_its_schema_in_the_document(client: httpx.AsyncClient) -> None:
    await publish(client, example("hello"))
    await publish(client, example("approval"))
    await publish(client, SAVED)
    hello = await start_run(client, "hello", {"name": "Ada"})
    other = await start_run(client, "hello", {"name": "Grace"})
    saved = await start_run(client, "saved", {})
    refund = await start_run(client, "refund-approval", {"customer": "Ada", "amount": 12})
    for run_id in (hello, other, saved):
        await wait_for_run(client, run_id)
    await wait_for_task(client, refund)
    thread = (await client.post("/v1/threads", json={"title": "hi"})).json()
    await wait_for_command(client, thread["command_id"])
    posted = await client.post(
        f"/v1/threads/{thread['thread_id']}/messages", json={"content": "hi"}
    )
    await wait_for_command(client, posted.json()["command_id"])
    key = (await client.post("/v1/keys", json={"scopes": ["read"], "name": "dash"})).json()
    await client.put("/v1/credentials/team-a", json={"provider": "openai", "api_key": "sk-1"})
    document = (
        await client.post("/v1/documents", content=b"hello", headers={"content-type": "text/plain"})
    ).json()
    [artifact] = (await client.get(f"/v1/runs/{saved}/artifacts")).json()["items"]
    exported = (await client.get(f"/v1/runs/{hello}/export")).json()
    thread_id, run_a, run_b = thread["thread_id"], hello, other
    answers = {
        ("get", "/v1/runs/{run_id}/export"): exported,
        ("post", "/v1/keys"): key,
        ("post", "/v1/documents"): document,
        ("put", "/v1/workflows/{name}"): await client.put(
            "/v1/workflows/hello", json=example("hello")
        ),
        ("post", "/v1/runs/import"): await client.post("/v1/runs/import", json=exported),
        ("delete", "/v1/keys/{key_id}"): await client.delete(f"/v1/keys/{key['id']}"),
        ("put", "/v1/credentials/{credential_id}"): await client.put(
            "/v1/credentials/team-b", json={"provider": "openai", "api_key": "sk-1"}
        ),
        ("post", "/v1/dead-letters/replay"): await client.post(
            "/v1/dead-letters/replay", json={"all": True}
        ),
        ("get", "/v1/usage"): await client.get("/v1/usage", params={"group_by": "model"}),
        ("get", "/v1/runs/diff"): await client.get(
            "/v1/runs/diff", params={"a": run_a, "b": run_b}
        ),
    }
    for path in (
        "/healthz",
        "/readyz",
        "/v1/runs",
        f"/v1/runs/{hello}",
        f"/v1/runs/{hello}/events",
        f"/v1/runs/{hello}/attempts",
        f"/v1/runs/{hello}/state",
        "/v1/tasks",
        f"/v1/runs/{saved}/artifacts",
        f"/v1/artifacts/{artifact['artifact_id']}",
        "/v1/threads",
        f"/v1/threads/{thread_id}",
        f"/v1/threads/{thread_id}/messages",
        "/v1/projections",
        f"/v1/commands/{thread['command_id']}",
        "/v1/workflows",
        "/v1/workflows/hello",
        "/v1/credentials",
        "/v1/keys",
        "/v1/dead-letters",
        "/v1/providers/health",
        "/v1/tenant/ai",
        f"/v1/documents/{document['document_id']}",
        "/asyncapi.json",
    ):
        answers[("get", template_of(path))] = await client.get(path)
    spec = (await client.get("/openapi.json")).json()
    for (method, template), answer in answers.items():
        body = answer.json() if isinstance(answer, httpx.Response) else answer
        if isinstance(answer, httpx.Response):
            assert answer.status_code < 300, (template, answer.text)
        assert body, template
        check(spec, method, template, body)


TEMPLATES = [
    (re.compile(r"^/v1/runs/[0-9a-f-]{36}(?=/|$)"), "/v1/runs/{run_id}"),
    (re.compile(r"^/v1/artifacts/[^/]+"), "/v1/artifacts/{artifact_id}"),
    (re.compile(r"^/v1/threads/[^/]+"), "/v1/threads/{thread_id}"),
    (re.compile(r"^/v1/commands/[^/]+"), "/v1/commands/{command_id}"),
    (re.compile(r"^/v1/documents/[^/]+"), "/v1/documents/{document_id}"),
    (re.compile(r"^/v1/workflows/[^/]+"), "/v1/workflows/{name}"),
]


def template_of(path: str) -> str:
    for pattern, template in TEMPLATES:
        path = pattern.sub(template, path)
    return path


def strict(schema: Any) -> Any:
    """`schema` with every object that names its properties closed to any other."""
    if isinstance(schema, dict):
        closed = {key: strict(value) for key, value in schema.items()}
        if "properties" in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def check(spec: dict[str, Any], method: str, template: str, body: Any) -> None:
    """`body` fits the schema the document gives for the route's success, no field left
    undocumented."""
    responses = spec["paths"][template][method]["responses"]
    [success] = [status for status in responses if status.startswith("2")]
    schema = responses[success]["content"]["application/json"]["schema"]
    document = {**schema, "components": strict(spec["components"])}
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(document).iter_errors(body)
    ]
    assert not errors, f"{method.upper()} {template}: {errors[:5]}"


async def pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, one to a page, following `next_cursor`."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = await client.get(path, params={**params, "limit": 1, "cursor": cursor or ""})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["items"]) <= 1
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def unscored(item: dict[str, Any]) -> dict[str, Any]:
    """A list's item without the work queue's score, which grows as tasks wait."""
    return {key: value for key, value in item.items() if key not in ("score", "scored_at")}


async def test_every_list_goes_a_page_at_a_time_with_the_same_cursor(heddle: Any) -> None:
    async with api_client(heddle, tenant="pages") as client:
        await publish(client, example("approval"))
        await publish(client, example("hello"))
        refunds = [
            await start_run(client, "refund-approval", {"customer": f"C{n}", "amount": 10 * n})
            for n in range(1, 5)
        ]
        for run_id in refunds:
            await wait_for_task(client, run_id)
        for run_id in refunds[:2]:
            done = await client.post(
                f"/v1/runs/{run_id}/tasks/review/complete", json={"decision": "approve"}
            )
            await wait_for_command(client, done.json()["command_id"])
        deadline = asyncio.get_running_loop().time() + 60
        completed = {"status": "completed"}
        while len((await client.get("/v1/tasks", params=completed)).json()["items"]) < 2:
            assert asyncio.get_running_loop().time() < deadline, "the tasks were not completed"
            await asyncio.sleep(0.05)
        for name in ("team-b", "team-a", "team-c"):
            await client.put(f"/v1/credentials/{name}", json={"provider": "openai", "api_key": "k"})
        for name in ("one", "two"):
            await client.post("/v1/keys", json={"scopes": ["read"], "name": name})
        lists = {
            "/v1/tasks": {"status": "open"},
            "/v1/workflows": {},
            "/v1/keys": {},
            "/v1/credentials": {},
            "/v1/runs": {},
            "/v1/threads": {},
        }
        for path, params in lists.items():
            whole = (await client.get(path, params={**params, "limit": 500})).json()
            assert whole["next_cursor"] is None
            paged = await pages(client, path, **params)
            assert [unscored(i) for i in paged] == [unscored(i) for i in whole["items"]], path
        queue = await pages(client, "/v1/tasks")
        assert len({task["scored_at"] for task in queue}) == 1, "one clock for every page"
        assert [t["run_id"] for t in queue] == refunds[:1:-1], "the bigger refund first"
        done = await pages(client, "/v1/tasks", status="completed")
        assert {t["run_id"] for t in done} == set(refunds[:2])
        assert [w["name"] for w in await pages(client, "/v1/workflows")] == [
            "hello", "refund-approval",
        ]  # fmt: skip
        assert [c["id"] for c in await pages(client, "/v1/credentials")] == [
            "team-a", "team-b", "team-c",
        ]  # fmt: skip
        assert [k["name"] for k in await pages(client, "/v1/keys")][-2:] == ["one", "two"]
        refused = await client.get("/v1/tasks", params={"cursor": "nonsense"})
        assert refused.status_code == 400
