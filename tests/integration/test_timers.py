"""Durable timers through Kafka and PostgreSQL: a run that waits on a timer completes when
it is due, also when Heddle was stopped and started again while it waited."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from tests.conftest import isolated_settings, running_heddle
from tests.integration.helpers import api_client, publish, wait_for_run

NAP = {
    "name": "nap",
    "start": "nap",
    "nodes": {
        "nap": {"kind": "wait", "for": "3s", "output": "woke", "next": "done"},
        "done": {"kind": "set", "vars": {"done": True}},
    },
}


async def test_a_run_waiting_on_a_timer_completes_after_a_restart(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    from infra.devstack import create_database

    settings = isolated_settings(tmp_path / "heddle")
    database_url = create_database(postgres_url, f"test_{uuid.uuid4().hex[:16]}")
    async with (
        running_heddle(settings, database_url, kafka_bootstrap) as heddle,
        api_client(heddle) as client,
    ):
        await publish(client, NAP)
        started = (await client.post("/v1/runs", json={"workflow": "nap"})).json()
        run = await wait_for_run(client, started["run_id"], status={"running"})
        began = time.monotonic()
    # Heddle is down while the timer comes due.
    async with (
        running_heddle(settings, database_url, kafka_bootstrap) as heddle,
        api_client(heddle) as client,
    ):
        run = await wait_for_run(client, started["run_id"], timeout=30)
        waited = time.monotonic() - began
        events = (await client.get(f"/v1/runs/{started['run_id']}/events")).json()["events"]
    assert run["status"] == "completed"
    assert run["variables"]["done"] is True
    assert waited >= 2.5  # not before its time
    assert [e["type"] for e in events].count("WorkflowRun.TimerFired") == 1
