"""Killed worker processes on real Kafka and PostgreSQL: the roles but the worker run in
the test's process (the `front`), the workers are `heddle serve --role worker`
processes (tests/processes.py), models and HTTP tools are fake servers on localhost."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.messages import RunEvent
from tests.conftest import isolated_settings, running_heddle
from tests.fakes.llm_servers import FakeLlmServer, running_server

FRONT_ROLES = ("intake", "relay", "projector")
PARTITIONS = 3


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    """Three partitions of `heddle.events`, so three workers each hold one; the shortest
    session the broker allows (6 s), so a killed worker's partitions move on soon."""
    return isolated_settings(tmp_path / "heddle").model_copy(
        update={
            "partitions": PARTITIONS,
            "session_timeout_ms": 6000,
            "http_tool_hosts": "127.0.0.1",
        }
    )


@pytest.fixture
async def front(settings: Any, database_url: str, kafka_bootstrap: str) -> AsyncIterator[Any]:
    """Intake, relay and projector (and the API, in process); no worker."""
    async with running_heddle(settings, database_url, kafka_bootstrap, roles=FRONT_ROLES) as heddle:
        yield heddle


@pytest.fixture
async def openai() -> AsyncIterator[FakeLlmServer]:
    async with running_server() as server:
        yield server


@pytest.fixture
async def service() -> AsyncIterator[FakeLlmServer]:
    """A local HTTP service for HTTP tools; it records each request's headers."""
    async with running_server() as server:
        yield server


@pytest.fixture
def provider(openai: FakeLlmServer) -> dict[str, str]:
    """The environment that points a worker's OpenAI provider at the fake server."""
    return {"OPENAI_BASE_URL": f"{openai.url}/v1", "OPENAI_API_KEY": "sk-test-openai"}


async def completions(
    client: httpx.AsyncClient, run_ids: Iterable[str]
) -> Counter[tuple[str, str]]:
    """How often each (run, node) was recorded as completed, from the runs' events."""
    counted: Counter[tuple[str, str]] = Counter()
    for run_id in run_ids:
        events = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
        counted.update(
            (run_id, e["data"]["node_id"]) for e in events if e["type"] == RunEvent.NODE_COMPLETED
        )
    return counted


def once_each(run_ids: Iterable[str], nodes: Iterable[str]) -> Counter[tuple[str, str]]:
    return Counter({(run_id, node): 1 for run_id in run_ids for node in nodes})
