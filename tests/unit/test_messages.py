"""The wire contract in `domain/messages.py` names every event the aggregates store, and
each event's payload shape is the one they record: a consumer typed against it reads
what is really on `heddle.events`."""

from __future__ import annotations

import json
from typing import Any, get_type_hints

from eventsourcing.domain import Aggregate

from domain import messages
from domain.definitions import WorkflowDefinition
from domain.runs import WorkflowRun
from domain.tenants import TenantSettings
from domain.threads import Thread
from tests.golden.update import GOLDEN, histories

ENUMS: dict[type[Aggregate], type[messages.StrEnum]] = {
    WorkflowRun: messages.RunEvent,
    Thread: messages.ThreadEvent,
    WorkflowDefinition: messages.DefinitionEvent,
    TenantSettings: messages.TenantEvent,
}
PREFIXES = {"WorkflowRun": "", "Thread": "Thread", "WorkflowDefinition": "Definition"}
ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


CREATION = {
    WorkflowRun: "Started",
    Thread: "Opened",
    WorkflowDefinition: "Created",
    TenantSettings: "Created",
}
"""The event each aggregate is created by; the library's default `Created` of the others
is never stored."""


def stored_events(aggregate: type[Aggregate]) -> dict[str, type[Aggregate.Event]]:
    """The event classes an aggregate records."""
    return {
        name: cls
        for name, cls in vars(aggregate).items()
        if isinstance(cls, type)
        and issubclass(cls, Aggregate.Event)
        and name != "Event"
        and (name != "Created" or CREATION[aggregate] == "Created")
    }


def fields_of(event_class: type[Aggregate.Event]) -> set[str]:
    return {
        name
        for name in get_type_hints(event_class)
        if name not in ENVELOPE and name != "originator_id_type"
    }


def test_every_stored_event_has_its_type_name_and_no_name_is_left_over() -> None:
    for aggregate, enum in ENUMS.items():
        names = {f"{aggregate.__name__}.{name}" for name in stored_events(aggregate)}
        assert {member.value for member in enum} == names, aggregate.__name__


def test_each_payload_shape_has_exactly_the_fields_its_event_records() -> None:
    for aggregate in (WorkflowRun, Thread, WorkflowDefinition):
        prefix = PREFIXES[aggregate.__name__]
        for name, event_class in stored_events(aggregate).items():
            if name == "Created":
                continue
            shape = getattr(messages, prefix + name, None)
            assert shape is not None, f"domain/messages.py has no {prefix + name}"
            assert set(shape.__annotations__) == fields_of(event_class), prefix + name


def recorded_events() -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of the events kept in tests/golden: run histories and an old store."""
    events = [
        (event["type"], event["data"])
        for history in histories()
        for event in json.loads(history.read_text())["events"]
    ]
    store = json.loads((GOLDEN / "store-before-split.json").read_text())
    for row in store["events"]:
        data = {k: v for k, v in json.loads(row["state"]).items() if k not in ENVELOPE}
        events.append((row["topic"].split(":", 1)[1], data))
    return events


def test_recorded_events_fit_their_payload_shapes() -> None:
    seen: set[str] = set()
    for type_name, data in recorded_events():
        aggregate, name = type_name.split(".")
        if aggregate not in ("WorkflowRun", "Thread", "WorkflowDefinition") or name == "Created":
            continue
        shape: Any = getattr(messages, PREFIXES[aggregate] + name)
        assert set(data) <= set(shape.__annotations__), type_name
        assert shape.__required_keys__ <= set(data), type_name
        seen.add(type_name)
    assert len(seen) >= 30, "the golden histories cover most events"
