"""Fixtures for a module of tests that share one Heddle (starting one costs seconds); each
test starts runs of its own. Import them into the test module:
`from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)`; `openai` is
a fake OpenAI server for a module whose own `heddle` points the provider at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import module_heddle
from tests.fakes.llm_servers import FakeLlmServer, running_server
from tests.integration.helpers import api_client


@pytest.fixture(scope="module")
async def heddle(
    postgres_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    """Every role of one Heddle, with a database and topics of its own, for the module."""
    async with module_heddle(tmp_path_factory, postgres_url, kafka_bootstrap) as instance:
        yield instance


@pytest.fixture
async def client(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(heddle) as api:
        yield api


@pytest.fixture(scope="module")
async def openai() -> AsyncIterator[FakeLlmServer]:
    """A fake OpenAI server for the module; each test queues the answers it needs."""
    async with running_server() as server:
        yield server
