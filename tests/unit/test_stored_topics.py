"""Stored events name their classes by topic (`module:qualname`): moving an aggregate or an
event class would make every stored run unreadable. `tests/golden/store-before-split.json`
holds the stored events (topic and state, as PostgreSQL keeps them) that the code before
the package split wrote for a few commands; they must still load to the same state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from domain.commands import CommandReceipt
from domain.definitions import WorkflowDefinition
from domain.runs import WorkflowRun
from domain.tenants import TenantSettings
from domain.threads import Thread
from handlers.replay import run_state

STORE = json.loads((Path(__file__).parents[1] / "golden" / "store-before-split.json").read_text())
AGGREGATES: dict[type[Aggregate], str] = {
    WorkflowRun: "domain.runs:WorkflowRun",
    WorkflowDefinition: "domain.definitions:WorkflowDefinition",
    Thread: "domain.threads:Thread",
    TenantSettings: "domain.tenants:TenantSettings",
    CommandReceipt: "domain.commands:CommandReceipt",
}


def state_of(aggregate: Aggregate) -> dict[str, Any]:
    """A run as the API shows it; any other aggregate as its public attributes."""
    if isinstance(aggregate, WorkflowRun):
        return json.loads(json.dumps(run_state(aggregate), default=str))  # type: ignore[no-any-return]
    public = {k: v for k, v in vars(aggregate).items() if not k.startswith("_")}
    return json.loads(json.dumps(public, default=str, sort_keys=True))  # type: ignore[no-any-return]


@pytest.fixture
def old_store() -> Iterator[Application[UUID]]:
    """An in-memory store holding the events exactly as the earlier code stored them."""
    app: Application[UUID] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=UUID(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"].encode(),
            )
            for row in STORE["events"]
        ]
    )
    yield app
    app.close()


@pytest.mark.parametrize("aggregate", list(AGGREGATES), ids=lambda a: a.__name__)
def test_each_aggregate_keeps_the_topic_its_events_are_stored_under(
    aggregate: type[Aggregate],
) -> None:
    assert get_topic(aggregate) == AGGREGATES[aggregate]


def test_every_stored_event_topic_still_names_an_event_of_its_aggregate() -> None:
    topics = {row["topic"] for row in STORE["events"]}
    assert {t.rsplit(".", 1)[0] for t in topics} == set(AGGREGATES.values())
    for topic in topics:
        assert issubclass(resolve_topic(topic), Aggregate.Event), topic
        assert resolve_topic(topic.rsplit(".", 1)[0]) in AGGREGATES, topic


def test_a_store_written_before_the_split_loads_to_the_same_state(
    old_store: Application[UUID],
) -> None:
    for aggregate_id, expected in STORE["states"].items():
        aggregate = old_store.repository.get(UUID(aggregate_id))
        assert type(aggregate).__name__ == expected["type"]
        assert aggregate.version == expected["version"]
        assert state_of(aggregate) == expected["state"], aggregate_id
