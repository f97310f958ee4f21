"""The OpenAPI document is a contract a client can generate code from: the committed file
is what the app serves, every route says what it answers (and each error as a problem),
what it takes, and has an operation id a person would write."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from api.http import openapi
from api.http.app import create_app
from infra.runtime import Heddle
from infra.settings import Settings
from infra.store import EventStore

SPEC = openapi.document()
OPERATIONS = [
    (f"{method.upper()} {path}", operation)
    for path, methods in SPEC["paths"].items()
    for method, operation in methods.items()
]
REPORTS = {"GET /readyz", "GET /v1/providers/health"}
"""Routes whose 503 is a report of their own shape, not a problem (docs/errors.md)."""


def test_the_committed_openapi_document_is_what_the_app_serves() -> None:
    committed = json.loads(openapi.COMMITTED.read_text())
    assert committed == SPEC, "docs/openapi.json is stale: regenerate it with `make openapi`"
    assert openapi.COMMITTED.read_text() == openapi.render()


def test_operation_ids_are_unique_names_a_person_would_write() -> None:
    ids = [operation["operationId"] for _, operation in OPERATIONS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for route, operation in OPERATIONS:
        name = operation["operationId"]
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name), f"{route}: {name}"
        assert not re.search(r"_(get|post|put|delete)$|v1", name), f"{route}: {name}"
    chosen = {route: operation["operationId"] for route, operation in OPERATIONS}
    assert chosen["GET /v1/runs"] == "list_runs"
    assert chosen["POST /v1/runs/{run_id}/pause"] == "pause_run"
    assert chosen["POST /v1/runs/{run_id}/tasks/{task}/complete"] == "complete_task"
    assert chosen["PUT /v1/workflows/{name}"] == "publish_workflow"


def schema_of(response: dict[str, Any]) -> dict[str, Any]:
    [(_, content)] = response["content"].items()
    schema: dict[str, Any] = content["schema"]
    return schema


def test_every_route_says_what_it_answers_and_each_error_is_a_problem() -> None:
    components = SPEC["components"]["schemas"]
    assert "HTTPValidationError" not in components
    for route, operation in OPERATIONS:
        responses = operation["responses"]
        [success] = [status for status in responses if status.startswith("2")]
        if success != "204":
            schema = schema_of(responses[success])
            if "$ref" in schema:
                named = components[schema["$ref"].rsplit("/", 1)[1]]
                assert named.get("properties"), f"{route}: {named}"
            else:  # a stream, a page, metrics, an artifact's bytes
                assert schema["type"] == "string", f"{route}: {schema}"
        errors = {status for status in responses if status[0] in "45"}
        assert {"422"} <= errors or not operation.get("parameters"), route
        if route not in ("GET /healthz", "GET /readyz"):
            assert {"401", "403"} <= errors, route
        for status in errors - ({"503"} if route in REPORTS else set()):
            content = responses[status]["content"]
            assert list(content) == ["application/problem+json"], f"{route} {status}"
            assert schema_of(responses[status]) == {"$ref": "#/components/schemas/Problem"}
    problem = components["Problem"]
    assert set(problem["required"]) == {"title", "status", "detail", "instance"}
    assert components["ProblemAt"]["required"] == ["path", "message"]


BODYLESS = {
    "POST /v1/schedules/{name}/pause",
    "POST /v1/schedules/{name}/resume",
    "POST /v1/queues/{assignee}/items/{item_id}/start",
}
"""The POST routes whose path says everything: they take no body."""


def test_every_route_that_takes_a_body_shows_it() -> None:
    bodyless = set()
    for route, operation in OPERATIONS:
        if route.split()[0] in ("POST", "PUT"):
            if "requestBody" not in operation:
                bodyless.add(route)
                continue
            assert operation["requestBody"]["content"], route
            assert "413" in operation["responses"], route
    assert bodyless == BODYLESS
    put = SPEC["paths"]["/v1/workflows/{name}"]["put"]["requestBody"]["content"]
    assert set(put) == {"application/json", "application/yaml"}
    assert put["application/yaml"]["schema"] == {"$ref": "#/components/schemas/WorkflowSpec"}
    spec = SPEC["components"]["schemas"]["WorkflowSpec"]
    assert {"name", "start", "nodes"} <= set(spec["properties"])
    upload = SPEC["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert {"application/pdf", "text/plain"} <= set(upload)


@pytest.fixture
async def anonymous() -> Any:
    store = EventStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    runtime = Heddle(Settings(), "postgresql://unused/heddle", "unused:9092", store=store)
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://heddle.test") as client:
        yield client


async def test_the_document_and_its_pages_are_public_and_the_routes_are_not(
    anonymous: httpx.AsyncClient,
) -> None:
    assert (await anonymous.get("/openapi.json")).json() == SPEC
    for page in ("/docs", "/redoc"):
        answer = await anonymous.get(page)
        assert (answer.status_code, answer.headers["content-type"]) == (
            200,
            "text/html; charset=utf-8",
        )
    refused = await anonymous.get("/v1/runs")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
