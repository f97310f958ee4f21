"""What an operator scrapes and reads: `/metrics` after a run holds its node steps by
workflow and kind and its model calls by provider and model (no run id in any label), and
each API request is logged once, with its route template and key id, never the key."""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import (
    example,
    metric_samples,
    publish,
    start_run,
    wait_for_metrics,
    wait_for_run,
)
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


async def test_metrics_after_a_run_show_its_node_steps_and_model_calls_without_run_ids(
    client: httpx.AsyncClient,
) -> None:
    hello = example("hello")
    hello["name"] = workflow = f"metrics-{uuid.uuid4().hex[:8]}"
    await publish(client, hello)
    run_id = await start_run(client, workflow, {"name": "Ada"})
    assert (await wait_for_run(client, run_id))["status"] == "completed"

    keyless = await client.get("/metrics", headers={"Authorization": ""})
    assert keyless.status_code == 401, "its labels name every tenant: an operator's key"

    async def scrape() -> str:
        response = await client.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text

    text = await wait_for_metrics(
        scrape, "heddle_node_step_seconds_count", {"workflow": workflow, "kind": "set"}
    )
    steps = {
        (s.labels["kind"], s.labels["status"]): s.value
        for s in metric_samples(text, "heddle_node_step_seconds_count")
        if s.labels["workflow"] == workflow
    }
    assert steps == {("llm", "completed"): 1, ("switch", "completed"): 1, ("set", "completed"): 1}
    calls = metric_samples(text, "heddle_model_calls_total")
    assert any(
        s.labels == {"provider": "scripted", "model": "echo", "outcome": "ok"} and s.value >= 1
        for s in calls
    )
    latency = metric_samples(text, "heddle_model_call_seconds_count")
    assert any(s.labels == {"provider": "scripted", "model": "echo"} for s in latency)
    commands = metric_samples(text, "heddle_commands_total")
    accepted = {"type": "StartRun", "outcome": "accepted", "reason": ""}
    assert any(s.labels == accepted and s.value >= 1 for s in commands)
    runs = {s.labels["status"]: s.value for s in metric_samples(text, "heddle_runs")}
    assert runs.get("completed", 0) >= 1
    for gauge in ("heddle_relay_lag_events", "heddle_projection_lag_events", "heddle_open_tasks",
                  "heddle_waiting_timers"):  # fmt: skip
        assert [s.value >= 0 for s in metric_samples(text, gauge)] == [True], gauge
    assert run_id not in text
    assert "run_id" not in text


async def test_each_api_request_is_logged_once_with_its_route_template_and_key_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="heddle.api.requests")
    run_id = str(uuid.uuid4())
    assert (await client.get(f"/v1/runs/{run_id}")).status_code == 404
    key = client.headers["Authorization"].removeprefix("Bearer ")
    lines: list[Any] = [r for r in caplog.records if r.name == "heddle.api.requests"]
    assert len(lines) == 1
    [line] = lines
    assert (line.method, line.route, line.status) == ("GET", "/v1/runs/{run_id}", 404)
    assert line.getMessage() == "GET /v1/runs/{run_id} 404"
    assert key.startswith(f"heddle_{line.key_id}_")  # the key's public id, not its secret
    assert line.duration_ms >= 0
    assert key not in caplog.text


async def test_rejected_commands_are_counted_by_type_and_reason_class_and_logged_once(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="heddle.intake")
    sent = await client.post(
        "/v1/commands", json={"type": "CancelRun", "payload": {}, "correlation_id": "c-9"}
    )
    assert sent.status_code == 202
    command_id = sent.json()["command_id"]

    async def scrape() -> str:
        return (await client.get("/metrics")).text

    rejected = {"type": "CancelRun", "outcome": "rejected", "reason": "invalid"}
    text = await wait_for_metrics(scrape, "heddle_commands_total", rejected)
    assert metric_samples(text, "heddle_command_batch_seconds_count")[0].value >= 1
    lines: list[Any] = [r for r in caplog.records if getattr(r, "command_id", "") == command_id]
    assert len(lines) == 1
    [line] = lines
    assert (line.command_type, line.outcome, line.tenant, line.correlation_id) == (
        "CancelRun", "rejected", "default", "c-9",
    )  # fmt: skip
    assert line.getMessage().startswith(f"CancelRun {command_id} rejected: invalid command:")


async def test_every_metric_the_grafana_dashboard_queries_is_one_heddle_exposes(
    client: httpx.AsyncClient,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "heddle.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queried = {name for expr in queries for name in re.findall(r"\bheddle_\w+", expr)}
    text = (await client.get("/metrics")).raise_for_status().text
    exposed = set()
    for family in text_string_to_metric_families(text):
        exposed |= {
            "histogram": {f"{family.name}_bucket", f"{family.name}_count", f"{family.name}_sum"},
            "counter": {f"{family.name}_total"},
        }.get(family.type, {family.name})
    assert len(queried) >= 15
    assert queried <= exposed, f"the dashboard queries {sorted(queried - exposed)}"
