"""Read your writes, on real PostgreSQL and Kafka: the projections' positions and lag, and
reads that wait until the projections hold what the caller just wrote."""

from __future__ import annotations

from typing import Any

from infra.projector import PROJECTIONS
from tests.integration.helpers import api_client, example, publish


async def test_a_read_that_waits_for_its_command_sees_the_run_it_just_started(heddle: Any) -> None:
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        for name in ("Ada", "Grace", "Edsger"):
            started = (
                await client.post("/v1/runs", json={"workflow": "hello", "input": {"name": name}})
            ).json()
            response = await client.get(
                f"/v1/runs/{started['run_id']}",
                headers={
                    "X-Heddle-Wait-For-Command": started["command_id"],
                    "X-Heddle-Wait-Timeout": "30",
                },
            )
            assert response.status_code == 200, response.text
            assert response.json()["input"] == {"name": name}
            assert int(response.headers["X-Heddle-Position"]) >= 1


async def test_the_projections_show_their_position_and_lag_and_catch_up(heddle: Any) -> None:
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        await client.post("/v1/runs", json={"workflow": "hello", "input": {"name": "Ada"}})
        before = (await client.get("/v1/projections")).json()
        assert {p["name"] for p in before["projections"]} == set(PROJECTIONS)
        for projection in before["projections"]:
            assert projection["lag"] == before["store_position"] - projection["position"]
        newest = before["store_position"]
        waited = await client.get(
            "/v1/workflows",
            headers={"X-Heddle-Wait-For-Position": str(newest), "X-Heddle-Wait-Timeout": "30"},
        )
        assert waited.status_code == 200, waited.text
        after = (await client.get("/v1/projections")).json()
        assert after["consistent_position"] >= newest
        assert all(p["position"] >= newest for p in after["projections"])


async def test_a_wait_that_cannot_be_met_in_time_answers_503_saying_what_to_do(heddle: Any) -> None:
    async with api_client(heddle) as client:
        far = await client.get(
            "/v1/runs",
            headers={"X-Heddle-Wait-For-Position": "1000000000", "X-Heddle-Wait-Timeout": "0.2"},
        )
        assert far.status_code == 503
        assert far.headers["Retry-After"] == "1"
        assert "not 1000000000" in far.json()["detail"]
        assert "X-Heddle-Wait-Timeout" in far.json()["detail"]
        unknown = await client.get(
            "/v1/runs",
            headers={"X-Heddle-Wait-For-Command": "never-sent", "X-Heddle-Wait-Timeout": "0.2"},
        )
        assert unknown.status_code == 503
        assert "command 'never-sent' is not decided yet" in unknown.json()["detail"]
        too_long = await client.get(
            "/v1/runs", headers={"X-Heddle-Wait-For-Position": "1", "X-Heddle-Wait-Timeout": "600"}
        )
        assert too_long.status_code == 422
        assert "x-heddle-wait-timeout" in str(too_long.json()["detail"]).lower()
