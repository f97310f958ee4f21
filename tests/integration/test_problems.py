"""Every error the API answers has one shape, RFC 9457 `application/problem+json`
(docs/errors.md), whatever raised it: a missing key, an unknown id or route, a bad cursor,
a request or definition that does not validate (each problem at its path), a body too
large, a read that cannot wait long enough."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from api.http.app import create_app
from tests.integration.helpers import problem_of
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)


async def test_every_kind_of_error_is_a_problem_with_a_human_detail(
    heddle: Any, client: httpx.AsyncClient
) -> None:
    run_id = uuid.uuid4()
    transport = httpx.ASGITransport(app=create_app(heddle))
    async with httpx.AsyncClient(transport=transport, base_url="http://heddle.test") as anon:
        unauthorized = await anon.get("/v1/runs")
    assert problem_of(unauthorized, 401)["title"] == "Unauthorized"
    assert unauthorized.headers["www-authenticate"] == "Bearer"

    assert problem_of(await client.get(f"/v1/runs/{run_id}"), 404)["detail"].startswith(
        f"no run {run_id}"
    )
    assert problem_of(await client.get("/v1/no-such-route"), 404)["detail"] == "Not Found"
    assert problem_of(await client.delete("/v1/runs"), 405)["title"] == "Method Not Allowed"
    bad_cursor = problem_of(await client.get("/v1/runs", params={"cursor": "nope"}), 400)
    assert bad_cursor["detail"] == "invalid cursor: pass next_cursor from the previous page"

    too_large = await client.post("/v1/runs", content=b"x" * (2 * 1024 * 1024))
    assert "HEDDLE_MAX_BODY_BYTES" in problem_of(too_large, 413)["detail"]

    waited = await client.get(
        "/v1/runs",
        headers={"X-Heddle-Wait-For-Command": "never-sent", "X-Heddle-Wait-Timeout": "0.2"},
    )
    assert "not decided yet" in problem_of(waited, 503)["detail"]
    assert waited.headers["retry-after"] == "1"


async def test_a_request_that_does_not_validate_lists_each_problem_at_its_path(
    client: httpx.AsyncClient,
) -> None:
    limit = problem_of(await client.get("/v1/runs", params={"limit": 0}), 422)
    [only] = limit["problems"]
    assert only["path"] == "query.limit"
    assert limit["detail"] == f"the request is invalid: query.limit: {only['message']}"

    several = problem_of(await client.post("/v1/runs", json={"input": []}), 422)
    assert {p["path"] for p in several["problems"]} == {"body.workflow", "body.input"}
    assert several["detail"] == "the request is invalid: 2 problems"

    run_id = uuid.uuid4()
    fork = await client.post(f"/v1/runs/{run_id}/fork", json={"mode": "fast"})
    assert {p["path"] for p in problem_of(fork, 422)["problems"]} == {"from_node", "mode"}

    definition = await client.put(
        "/v1/workflows/broken", json={"start": "nowhere", "nodes": {"a": {"kind": "set"}}}
    )
    invalid = problem_of(definition, 422)
    assert invalid["detail"].startswith("the definition is invalid")
    assert invalid["problems"]
    assert all(set(p) == {"path", "message"} for p in invalid["problems"])
