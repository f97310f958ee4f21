"""Unit tests run the real handlers against the in-memory event store: no network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eventsourcing.application import Application

from handlers.unit_of_work import UnitOfWork


@pytest.fixture
def uow() -> Iterator[UnitOfWork]:
    app: Application = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield UnitOfWork(app)
    app.close()
