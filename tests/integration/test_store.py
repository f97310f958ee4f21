"""The event store on real PostgreSQL: big batches, positions, and their atomicity."""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from domain.definitions import WorkflowDefinition
from handlers.unit_of_work import UnitOfWork
from infra.bootstrap import create_schema
from infra.store import EventStore, store_environment

pytestmark = pytest.mark.integration


@pytest.fixture
def store(settings, database_url):  # type: ignore[no-untyped-def]
    create_schema(settings, database_url)
    store = EventStore(env=store_environment(database_url, 100, create_tables=False))
    yield store
    store.close()


def _definitions(count: int) -> list[WorkflowDefinition]:
    """Aggregates with sizeable events (a definition each), as a busy batch has."""
    padding = "x" * 4000
    return [
        WorkflowDefinition(tenant="t", name=f"w{index}-{uuid.uuid4().hex[:6]}-{padding}")
        for index in range(count)
    ]


def test_a_batch_of_hundreds_of_aggregates_is_saved_with_its_positions(store) -> None:
    # A batch this size (about 2.5 MB) used to hang for good in psycopg's pipeline mode.
    uow = UnitOfWork(store)
    aggregates = _definitions(600)
    for aggregate in aggregates:
        uow.add(aggregate)
    saved = uow.save([Tracking("worker@events:0", 41), Tracking("worker@events:1", 7)])
    assert saved == 600
    assert store.recorder.max_notification_id() == 600
    assert store.positions(["worker@events:0", "worker@events:1"]) == {
        "worker@events:0": 41,
        "worker@events:1": 7,
    }
    assert store.repository.get(aggregates[-1].id).name == aggregates[-1].name


def test_a_position_seen_before_saves_nothing_of_its_batch(store) -> None:
    first = UnitOfWork(store)
    first.add(_definitions(1)[0])
    first.save([Tracking("intake@commands:0", 5)])
    again = UnitOfWork(store)
    lost = _definitions(3)
    for aggregate in lost:
        again.add(aggregate)
    with pytest.raises(IntegrityError):
        again.save([Tracking("intake@commands:0", 5)])
    assert store.recorder.max_notification_id() == 1
    assert store.positions(["intake@commands:0"]) == {"intake@commands:0": 5}
