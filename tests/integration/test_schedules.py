"""Schedules on real Kafka and PostgreSQL: a schedule every 2 s fires exactly once per
tick, across a restart of Heddle, and catches up the ticks it missed while Heddle was down;
paused, it fires nothing; a bad schedule is refused at its path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx

from tests.conftest import running_heddle
from tests.integration.helpers import api_client, example, publish, wait_for_command


async def fires_until(
    client: httpx.AsyncClient, name: str, done: Any, timeout: float = 60
) -> list[dict[str, Any]]:
    """The schedule's ticks, oldest first, once `done(ticks)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        shown = (await client.get(f"/v1/schedules/{name}", params={"fires": 500})).json()
        fires = sorted(shown.get("fires", []), key=lambda f: f["tick"])
        if done(fires):
            return fires
        assert time.monotonic() < deadline, f"the schedule shows {shown}"
        await asyncio.sleep(0.2)


@asynccontextmanager
async def heddle_api(
    settings: Any, database_url: str, kafka_bootstrap: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_heddle(settings, database_url, kafka_bootstrap) as heddle,
        api_client(heddle) as client,
    ):
        yield client


def tick(fire: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(fire["tick"])


async def test_a_schedule_every_2s_fires_once_per_tick_across_a_restart_and_catches_up(
    settings: Any, database_url: str, kafka_bootstrap: str
) -> None:
    every = {"name": "greeter", "workflow": "hello", "every": "2s", "input": {"name": "Ada"},
             "overlap": "allow"}  # fmt: skip
    async with heddle_api(settings, database_url, kafka_bootstrap) as client:
        await publish(client, example("hello"))
        created = await client.post("/v1/schedules", json=every)
        assert created.status_code == 202, created.text
        assert (await wait_for_command(client, created.json()["command_id"]))["status"] == (
            "accepted"
        )
        before = await fires_until(client, "greeter", lambda fires: len(fires) >= 2)
    down_at = datetime.now().astimezone()
    await asyncio.sleep(10)
    async with heddle_api(settings, database_url, kafka_bootstrap) as client:
        back_at = datetime.now().astimezone()
        fires = await fires_until(
            client, "greeter", lambda fires: fires and tick(fires[-1]) >= back_at
        )
        listed = (await client.get("/v1/schedules")).json()["items"]
        runs = [(await client.get(f"/v1/runs/{f['run_id']}")).json() for f in fires[:3]]
    ticks = [tick(f) for f in fires]
    assert ticks[: len(before)] == [tick(f) for f in before]
    assert all(b - a == timedelta(seconds=2) for a, b in pairwise(ticks)), (
        ticks
    )  # none twice, none missed
    missed = [t for t in ticks if down_at < t < back_at]
    assert len(missed) >= 4, "the ticks missed while Heddle was down fired late"
    assert len({f["run_id"] for f in fires}) == len(fires)
    assert all(f["reason"] is None for f in fires)
    assert {r["workflow"] for r in runs} == {"hello"}
    [greeter] = listed
    assert greeter["fired"] >= len(fires)
    assert datetime.fromisoformat(greeter["next_fire_at"]) > tick(fires[-1]) - timedelta(seconds=1)


async def test_a_paused_schedule_fires_nothing_and_a_bad_one_is_refused_at_its_path(
    settings: Any, database_url: str, kafka_bootstrap: str
) -> None:
    async with heddle_api(settings, database_url, kafka_bootstrap) as client:
        await publish(client, example("hello"))
        bad = await client.post(
            "/v1/schedules", json={"name": "x", "workflow": "hello", "cron": "every day"}
        )
        assert bad.status_code == 422
        assert [p["path"] for p in bad.json()["problems"]] == ["body.cron"]
        unknown = await client.post(
            "/v1/schedules", json={"name": "nosuch", "workflow": "nosuch", "every": "1m"}
        )
        refused = await wait_for_command(client, unknown.json()["command_id"])
        assert refused["status"] == "rejected"
        assert "nosuch" in refused["reason"]
        created = await client.post(
            "/v1/schedules", json={"name": "quiet", "workflow": "hello", "every": "1s",
                                   "input": {"name": "Ada"}},
        )  # fmt: skip
        await wait_for_command(client, created.json()["command_id"])
        paused = await client.post("/v1/schedules/quiet/pause")
        assert (await wait_for_command(client, paused.json()["command_id"]))["status"] == (
            "accepted"
        )
        await asyncio.sleep(3)  # a second-by-second schedule that fired would show it
        first = await fires_until(client, "quiet", lambda fires: True)
        await asyncio.sleep(2)
        later = await fires_until(client, "quiet", lambda fires: True)
        shown = (await client.get("/v1/schedules/quiet")).json()
    assert later == first, "a paused schedule fires no tick"
    assert shown["status"] == "paused"
    assert shown["next_fire_at"] is None
