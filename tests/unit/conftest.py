"""Unit tests run the real handlers against the in-memory event store: no network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from eventsourcing.application import Application

from handlers.unit_of_work import UnitOfWork
from tests.fakes.llm_servers import FakeLlmServer, running_server


@pytest.fixture
def uow() -> Iterator[UnitOfWork]:
    app: Application = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield UnitOfWork(app)
    app.close()


@pytest.fixture
async def server() -> AsyncIterator[FakeLlmServer]:
    """A fake OpenAI/Anthropic HTTP server that the real SDKs talk to."""
    async with running_server() as server:
        yield server
