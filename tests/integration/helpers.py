"""Helpers for integration tests: an API client and waiting for what a user would see."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TERMINAL = {"completed", "failed", "cancelled"}


ALL_SCOPES = ("read", "write", "admin")


async def key_headers(
    heddle: Any,
    tenant: str = "default",
    scopes: tuple[str, ...] = ALL_SCOPES,
    name: str = "api",
    roles: tuple[str, ...] = (),
) -> dict[str, str]:
    """The `Authorization` header of a new API key (named `api`: the actor in events),
    acting in the task `roles`."""
    from infra.keys import ApiKeys

    _, key = await ApiKeys(heddle.reads).create(tenant, list(scopes), name, roles=roles)
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def api_client(
    heddle: Any, tenant: str = "default", scopes: tuple[str, ...] = ALL_SCOPES
) -> AsyncIterator[httpx.AsyncClient]:
    """The API in process, called with a new key of `tenant` with `scopes`."""
    from api.http.app import create_app

    transport = httpx.ASGITransport(app=create_app(heddle))
    headers = await key_headers(heddle, tenant, scopes)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://heddle.test", headers=headers
    ) as client:
        yield client


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())  # type: ignore[no-any-return]


async def publish(client: httpx.AsyncClient, definition: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"/v1/workflows/{definition['name']}", json=definition)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def start_run(client: httpx.AsyncClient, workflow: str, input: dict[str, Any]) -> str:
    """Start a run of a published workflow; its run id."""
    started = await client.post("/v1/runs", json={"workflow": workflow, "input": input})
    assert started.status_code == 202, started.text
    return str(started.json()["run_id"])


async def wait_for_run(
    client: httpx.AsyncClient, run_id: str, timeout: float = 30.0, status: set[str] = TERMINAL
) -> dict[str, Any]:
    """Poll the run read model until the run reaches one of `status`."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/runs/{run_id}")
        if response.status_code == 200:
            last = response.json()
            if last["status"] in status:
                return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not reach {status} in {timeout} s; last seen: {last}")


async def wait_for_command(
    client: httpx.AsyncClient, command_id: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = (await client.get(f"/v1/commands/{command_id}")).json()
        if result["status"] != "pending":
            return result  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"command {command_id} still pending after {timeout} s")


async def wait_for_task(client: httpx.AsyncClient, run_id: str, timeout: float = 60) -> None:
    """Until the run has an open task."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (await client.get("/v1/tasks", params={"run_id": run_id})).json()["items"]:
        assert asyncio.get_running_loop().time() < deadline, f"run {run_id} opened no task"
        await asyncio.sleep(0.05)


def metric_samples(exposition: str, name: str) -> list[Any]:
    """The samples named `name` (e.g. `heddle_model_calls_total`) in a `/metrics` answer,
    read with prometheus-client's parser (which fails on a malformed one)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(exposition)
    return [sample for family in families for sample in family.samples if sample.name == name]


async def wait_for_metrics(
    scrape: Any, name: str, labels: dict[str, str], timeout: float = 30.0
) -> str:
    """Scrape (`await scrape()`: the text of `/metrics`) until a sample named `name` with
    `labels` (among its labels) counts above 0; the last scrape."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = await scrape()
        for sample in metric_samples(text, name):
            if labels.items() <= sample.labels.items() and sample.value > 0:
                return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} with {labels} after {timeout} s in:\n{text}")


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem in `response`, checked for the members every problem has."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["instance"] == response.request.url.raw_path.decode().split("?")[0]
    return body
