"""A worker started as production runs it (`heddle serve --role worker --no-api`) has a
scrape target of its own: `/metrics` on `HEDDLE_METRICS_PORT`, with the model calls it
made; and its log is JSON lines, those for a run carrying the run's id. The workers'
consumer lag, as the API reports it, shows when no worker reads."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.integration.helpers import (
    api_client,
    example,
    metric_samples,
    publish,
    start_run,
    wait_for_metrics,
    wait_for_run,
)
from tests.processes import spawned_workers, wait_for_line


async def test_a_worker_without_the_api_serves_metrics_on_its_port_and_logs_json(
    front: Any, settings: Any, database_url: str, kafka_bootstrap: str
) -> None:
    async with api_client(front) as client:
        await publish(client, example("hello"))
        with spawned_workers(1, settings, database_url, kafka_bootstrap) as [worker]:
            run_id = await start_run(client, "hello", {"name": "Ada"})
            run = await wait_for_run(client, run_id, timeout=60)
            await wait_for_line(worker, f"for run {run_id}")
            async with httpx.AsyncClient() as scraper:

                async def scrape() -> str:
                    url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
                    return (await scraper.get(url)).raise_for_status().text

                text = await wait_for_metrics(
                    scrape, "heddle_model_calls_total", {"provider": "scripted", "outcome": "ok"}
                )
            lines = list(worker.lines)
    assert run["status"] == "completed"
    latency = metric_samples(text, "heddle_model_call_seconds_count")
    assert [s.labels for s in latency] == [{"provider": "scripted", "model": "echo"}]
    assert [s.value for s in metric_samples(text, "heddle_model_calls_in_flight")] == [0]
    assert run_id not in text
    logged = [json.loads(line) for line in lines]  # every line is one JSON object
    calling = [entry for entry in logged if entry["event"].startswith("calling ")]
    assert [(e["run_id"], e["node_id"], e["tenant"]) for e in calling] == [
        (run_id, "greet", "default")
    ]
    assert any(e["logger"].startswith("aiokafka") for e in logged)


async def test_the_workers_consumer_lag_grows_while_no_worker_reads_and_returns_to_zero(
    front: Any, settings: Any, database_url: str, kafka_bootstrap: str
) -> None:
    events = front.topics.events
    async with api_client(front) as client:

        async def worker_lag() -> float:
            response = (await client.get("/metrics")).raise_for_status()
            lags = metric_samples(response.text, "heddle_consumer_lag_messages")
            found = [s.value for s in lags if s.labels == {"group": "worker", "topic": events}]
            assert len(found) <= 1
            return found[0] if found else -1

        async def lag_until(done: Any) -> float:
            """The lag once `done(lag)`, or the last one seen after a minute."""
            deadline = time.monotonic() + 60
            while True:
                lag = await worker_lag()
                if done(lag) or time.monotonic() > deadline:
                    return lag
                await asyncio.sleep(0.2)

        await publish(client, example("hello"))
        with spawned_workers(1, settings, database_url, kafka_bootstrap):
            first = await start_run(client, "hello", {"name": "Ada"})
            assert (await wait_for_run(client, first, timeout=60))["status"] == "completed"
            assert await lag_until(lambda lag: lag == 0) == 0  # it has committed all it read
        waiting = await start_run(client, "hello", {"name": "Grace"})  # no worker reads it
        assert await lag_until(lambda lag: lag >= 1) >= 1
        with spawned_workers(1, settings, database_url, kafka_bootstrap):
            assert (await wait_for_run(client, waiting, timeout=60))["status"] == "completed"
            assert await lag_until(lambda lag: lag == 0) == 0
