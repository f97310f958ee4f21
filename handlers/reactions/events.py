"""The events the run worker reads, and the node attempts they show waiting for work.

The relay names each event's type in a header, so the worker decodes only these; a node
attempt is worked on only while the run still shows it running, so a redelivered event
repeats nothing.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from domain.errors import NodeNotRunning
from domain.messages import NODE_ABANDONED, DefinitionEvent, RunEvent, ThreadEvent
from domain.runs import WorkflowRun
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork

THREAD_EVENTS = frozenset({ThreadEvent.REPLY_REQUESTED, RunEvent.NODE_COMPLETED, *NODE_ABANDONED})
"""What the worker reads for threads (handlers/reactions/threads.py)."""
WORKER_EVENTS = frozenset(
    {
        RunEvent.NODE_STARTED,
        RunEvent.MAP_ITEM_STARTED,
        DefinitionEvent.VERSION_PUBLISHED,
        RunEvent.LLM_REQUESTED,
        *THREAD_EVENTS,
    }
)
"""The events the run worker decodes; the relay's `type` header skips the others."""


def decode_events(records: list[Record]) -> list[dict[str, Any]]:
    """The envelopes of events the worker may act on (the relay names each event's type
    in a header, so the others are never decoded)."""
    return [
        json.loads(record.value)
        for record in records
        if record.headers.get("type", RunEvent.NODE_STARTED) in WORKER_EVENTS
    ]


def waiting_nodes(
    events: list[dict[str, Any]], uow: UnitOfWork, kinds: set[str]
) -> list[tuple[WorkflowRun, dict[str, Any], int | None]]:
    """Once each, the started nodes of `kinds` (and the started items of `map` nodes, when
    `kinds` has `map`) whose attempt is still running: (run, event data, item or None)."""
    waiting: dict[tuple[str, str, int, int | None], tuple[WorkflowRun, dict[str, Any], int | None]]
    waiting = {}
    for envelope in events:
        data = envelope["data"]
        if envelope["type"] == RunEvent.MAP_ITEM_STARTED and "map" in kinds:
            item = data["index"]
        elif envelope["type"] == RunEvent.NODE_STARTED and data["kind"] in kinds - {"map"}:
            item = None
        else:
            continue
        run = uow.get(UUID(envelope["aggregate_id"]), WorkflowRun, envelope["aggregate_version"])
        if run is None:
            continue
        try:
            run.check_node_is_running(data["node_id"], data["attempt"], item)
        except NodeNotRunning:
            continue
        key = (envelope["aggregate_id"], data["node_id"], data["attempt"], item)
        waiting[key] = (run, data, item)
    return list(waiting.values())
