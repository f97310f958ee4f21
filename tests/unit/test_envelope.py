"""The event envelope is read from the stored JSON: it must say exactly what the domain
event says, with ids and times in their wire form."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from infra.store import EventStore, dumps


class Parcel(Aggregate):
    """An aggregate whose events hold every transcoded type, nested too."""

    @event("Sent")
    def send(self, to: uuid.UUID, at: datetime, weight: Decimal, stops: list[Any]) -> None:
        pass


def test_an_envelope_from_stored_json_matches_the_domain_event_it_records() -> None:
    store = EventStore(
        env={"PERSISTENCE_MODULE": "eventsourcing.popo", "PROCESS_RECORDER_TOPIC": ""}
    )
    parcel = Parcel()
    to, at = uuid.uuid4(), datetime(2025, 11, 3, 9, 30, 15, 250, tzinfo=UTC)
    parcel.send(to, at, Decimal("1.25"), [{"hub": uuid.UUID(int=7), "at": at}, "door"])
    store.save(parcel)
    created, sent = store.recorder.select_notifications(0, 10)

    envelope = store.envelope(sent)
    domain_event = store.mapper.to_domain_event(sent)
    assert envelope["timestamp"] == domain_event.timestamp.isoformat()
    assert envelope["data"] == {
        "to": str(to),
        "at": at.isoformat(),
        "weight": "1.25",
        "stops": [{"hub": "00000000-0000-0000-0000-000000000007", "at": at.isoformat()}, "door"],
    }
    assert (envelope["type"], envelope["aggregate_id"], envelope["aggregate_version"]) == (
        "Parcel.Sent",
        str(parcel.id),
        2,
    )
    assert json.loads(dumps(envelope)) == envelope
    assert "originator_topic" not in store.envelope(created)["data"]
