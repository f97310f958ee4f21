"""Replay to debug, on real PostgreSQL and real Kafka: a run's state at any event, diffs,
export and import, tenant isolation, and runs that keep their definition version.

One Heddle serves the whole module (starting one costs seconds); each test starts its
own runs, except the hello runs for Ada and Grace, which several tests only read.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.helpers import api_client, example, key_headers, publish, wait_for_run
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
async def hello_runs(heddle: Any) -> dict[str, dict[str, Any]]:
    """Finished hello runs for Ada (vip) and Grace (regular), as GET /v1/runs shows them."""
    async with api_client(heddle) as api:
        await publish(api, example("hello"))
        runs = {}
        for name in ("Ada", "Grace"):
            runs[name] = await start(api, "hello", name=name)
        return {name: await wait_for_run(api, run_id) for name, run_id in runs.items()}


def slow_chain(name: str, prompt: str, latency_ms: int) -> dict[str, Any]:
    """Two slow model calls in a row, then a `set`: a run that moves in visible steps."""
    options = {"latency_ms": latency_ms, "reply": "{{ prompt }}!"}
    return {
        "name": name,
        "start": "first",
        "nodes": {
            "first": {
                "kind": "llm",
                "model": "scripted:slow",
                "prompt": prompt,
                "options": options,
                "output": "one",
                "next": "second",
            },
            "second": {
                "kind": "llm",
                "model": "scripted:slow",
                "prompt": "then {{ vars.one }}",
                "options": options,
                "output": "two",
                "next": "done",
            },
            "done": {"kind": "set", "vars": {"finished": "yes"}},
        },
    }


async def start(client: httpx.AsyncClient, workflow: str, **input: Any) -> str:
    response = await client.post("/v1/runs", json={"workflow": workflow, "input": input})
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


async def test_the_state_at_event_n_equals_what_the_run_endpoint_reported_at_n(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, slow_chain("steps", "hello {{ input.name }}", latency_ms=400))
    run_id = await start(client, "steps", name="Ada")
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/runs/{run_id}")
        if response.status_code == 200:
            snapshot = response.json()
            seen.setdefault(snapshot["version"], snapshot)
            if snapshot["status"] == "completed":
                break
        await asyncio.sleep(0.02)
    assert len(seen) >= 3, f"saw only versions {sorted(seen)}"
    for version, snapshot in seen.items():
        response = await client.get(f"/v1/runs/{run_id}/state", params={"at": version})
        assert response.status_code == 200, response.text
        state = response.json()["state"]
        assert state["version"] == version
        for field in ("status", "variables", "output", "error", "usage", "workflow_version"):
            assert state[field] == snapshot[field], (version, field)
        assert list(state["nodes"]) == list(snapshot["nodes"])
        for node_id, node in snapshot["nodes"].items():
            assert state["nodes"][node_id]["status"] == node["status"], (version, node_id)
            assert state["nodes"][node_id].get("output") == node.get("output"), (version, node_id)


async def test_the_state_right_after_a_node_shows_its_output_and_what_had_not_run_yet(
    client: httpx.AsyncClient, hello_runs: dict[str, dict[str, Any]]
) -> None:
    run_id = hello_runs["Ada"]["run_id"]
    view = (await client.get(f"/v1/runs/{run_id}/state", params={"at_node": "greet"})).json()
    assert view["at"]["type"] == "NodeCompleted"
    assert view["at"]["summary"] == "greet completed"
    state = view["state"]
    assert state["status"] == "running"
    assert state["variables"] == {"greeting": "Say hello to Ada"}
    assert {n: s["status"] for n, s in state["nodes"].items()} == {
        "greet": "completed",
        "route": "pending",
        "vip": "pending",
        "regular": "pending",
    }
    assert state["graph"]["nodes"]["greet"]["prompt"] == "Say hello to {{ input.name }}"
    marked = [e for e in view["timeline"] if e["current"]]
    assert [e["version"] for e in marked] == [view["at"]["version"]]
    assert view["timeline"][-1]["type"] == "Completed"
    assert view["timeline"][-1]["after"] is True


async def test_a_point_the_run_never_reached_is_refused_with_the_reason(
    client: httpx.AsyncClient, hello_runs: dict[str, dict[str, Any]]
) -> None:
    run_id = hello_runs["Ada"]["run_id"]
    skipped = await client.get(f"/v1/runs/{run_id}/state", params={"at_node": "regular"})
    assert skipped.status_code == 422
    assert "never completed or failed (skipped)" in skipped.json()["detail"]
    too_far = await client.get(f"/v1/runs/{run_id}/state", params={"at": 999})
    assert too_far.status_code == 422
    assert "the run has events 1 to" in too_far.json()["detail"]


async def test_a_global_position_gives_the_run_as_it_stood_then(
    client: httpx.AsyncClient, hello_runs: dict[str, dict[str, Any]]
) -> None:
    run_id = hello_runs["Ada"]["run_id"]
    events = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
    third = events[2]
    view = (
        await client.get(f"/v1/runs/{run_id}/state", params={"at_position": third["position"]})
    ).json()
    assert view["at"]["version"] == 3
    latest = (await client.get(f"/v1/runs/{run_id}/state")).json()
    assert latest["state"]["status"] == "completed"
    assert latest["state"]["output"] == hello_runs["Ada"]["output"]


async def test_ada_and_grace_diverge_first_at_greet_and_then_take_different_branches(
    client: httpx.AsyncClient, hello_runs: dict[str, dict[str, Any]]
) -> None:
    ada, grace = hello_runs["Ada"]["run_id"], hello_runs["Grace"]["run_id"]
    diff = (await client.get("/v1/runs/diff", params={"a": ada, "b": grace})).json()
    assert diff["same"] is False
    assert diff["first_divergence"]["node"] == "greet"
    greet = diff["nodes"]["greet"]
    assert {"input", "output"} <= set(greet["differs"])
    assert greet["a"]["input"]["messages"][-1]["content"] == "Say hello to Ada"
    assert greet["b"]["input"]["messages"][-1]["content"] == "Say hello to Grace"
    assert greet["a"]["model"] == greet["b"]["model"] == "scripted:echo"
    assert greet["a"]["tokens"]["output"] == 4
    assert diff["nodes"]["route"]["a"]["output"] == {"next": "vip"}
    assert diff["nodes"]["route"]["b"]["output"] == {"next": "regular"}
    assert (diff["nodes"]["vip"]["a"]["status"], diff["nodes"]["vip"]["b"]["status"]) == (
        "completed",
        "skipped",
    )
    assert (diff["nodes"]["regular"]["a"]["status"], diff["nodes"]["regular"]["b"]["status"]) == (
        "skipped",
        "completed",
    )
    assert diff["run"]["variables"]["changed"]["tier"] == {"a": "vip", "b": "regular"}
    assert diff["run"]["status"]["same"] is True


async def test_a_run_compared_with_itself_is_the_same_everywhere(
    client: httpx.AsyncClient, hello_runs: dict[str, dict[str, Any]]
) -> None:
    ada = hello_runs["Ada"]["run_id"]
    diff = (await client.get("/v1/runs/diff", params={"a": ada, "b": ada})).json()
    assert diff["same"] is True
    assert diff["first_divergence"] is None
    assert all(node["same"] for node in diff["nodes"].values())


async def test_an_exported_run_imports_as_a_new_run_with_the_same_state(
    client: httpx.AsyncClient, hello_runs: dict[str, dict[str, Any]]
) -> None:
    original = hello_runs["Grace"]["run_id"]
    history = (await client.get(f"/v1/runs/{original}/export")).json()
    assert history["format"] == "heddle.run-history/1"
    assert (history["workflow"], history["workflow_version"], history["status"]) == (
        "hello",
        1,
        "completed",
    )
    assert [e["version"] for e in history["events"]] == list(range(1, history["event_count"] + 1))
    imported = await client.post("/v1/runs/import", json=history)
    assert imported.status_code == 201, imported.text
    copy_id = imported.json()["run_id"]
    assert copy_id != original
    before = (await client.get(f"/v1/runs/{original}/state")).json()["state"]
    after = (await client.get(f"/v1/runs/{copy_id}/state")).json()["state"]
    assert {**after, "run_id": original} == before
    shown = await wait_for_run(client, copy_id)  # the projections see it like any run
    assert shown["variables"] == {"greeting": "Say hello to Grace", "tier": "regular"}


async def test_an_import_never_overwrites_a_run_and_refuses_a_history_that_does_not_replay(
    client: httpx.AsyncClient, hello_runs: dict[str, dict[str, Any]]
) -> None:
    original = hello_runs["Ada"]["run_id"]
    history = (await client.get(f"/v1/runs/{original}/export")).json()
    again = await client.post("/v1/runs/import", json=history, params={"keep_id": True})
    assert again.status_code == 409
    assert "exists already" in again.json()["detail"]
    broken = copy.deepcopy(history)
    broken["events"][3]["data"]["node_id"] = "greeet"
    refused = await client.post("/v1/runs/import", json=broken)
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("event 4 (WorkflowRun.NodeCompleted) does not apply")
    lying = copy.deepcopy(history)
    lying["status"] = "failed"
    refused = await client.post("/v1/runs/import", json=lying)
    assert refused.status_code == 422
    assert "replay to 'completed'" in refused.json()["detail"]


async def test_another_tenant_cannot_replay_export_or_diff_a_run(
    client: httpx.AsyncClient, heddle: Any, hello_runs: dict[str, dict[str, Any]]
) -> None:
    ada, grace = hello_runs["Ada"]["run_id"], hello_runs["Grace"]["run_id"]
    other_tenant = await key_headers(heddle, "someone-else")
    for path, params in [
        (f"/v1/runs/{ada}/state", {}),
        (f"/v1/runs/{ada}/state", {"at": 1}),
        (f"/v1/runs/{ada}/export", {}),
        ("/v1/runs/diff", {"a": ada, "b": grace}),
    ]:
        response = await client.get(path, params=params, headers=other_tenant)
        assert response.status_code == 404, path
    unknown = await client.get(f"/v1/runs/{uuid.uuid4()}/state")
    assert unknown.status_code == 404


async def test_a_run_keeps_its_definition_version_when_a_new_one_is_published(
    client: httpx.AsyncClient,
) -> None:
    first = await publish(client, slow_chain("pinned", "version one for {{ input.name }}", 1500))
    old_run = await start(client, "pinned", name="Ada")
    await wait_for_run(client, old_run, status={"running"})
    second = await publish(client, slow_chain("pinned", "version two for {{ input.name }}", 10))
    assert (first["version"], second["version"]) == (1, 2)
    new_run = await start(client, "pinned", name="Ada")
    old, new = await wait_for_run(client, old_run), await wait_for_run(client, new_run)
    assert old["status"] == new["status"] == "completed"
    assert old["workflow_version"] == 1
    assert old["variables"]["one"] == "version one for Ada!"
    assert new["workflow_version"] == 2
    assert new["variables"]["one"] == "version two for Ada!"
    replayed = (await client.get(f"/v1/runs/{old_run}/state")).json()["state"]
    assert replayed["graph"]["nodes"]["first"]["prompt"] == "version one for {{ input.name }}"
