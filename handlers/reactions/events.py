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


def decode_events(
    records: list[Record], types: frozenset[str] = WORKER_EVENTS
) -> list[dict[str, Any]]:
    """The envelopes of events of `types` (the relay names each event's type in a
    header, so the others are never decoded), each decoded once."""
    return [
        json.loads(record.value)
        for record in records
        if record.headers.get("type", RunEvent.NODE_STARTED) in types
    ]


def waiting_nodes(
    events: list[dict[str, Any]], uow: UnitOfWork, kinds: set[str]
) -> list[tuple[WorkflowRun, dict[str, Any], int | None]]:
    """Once each, the started nodes of `kinds` (and the started items of `map` nodes, when
    `kinds` has `map`) whose attempt is still running: (run, data, item or None). The data
    (node id, attempt, kind, input) is the stored run's, never the message's: a message is
    only a hint of where to look, so a forged or stale one changes no request."""
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
        node_id, attempt = data["node_id"], data["attempt"]
        try:
            run.check_node_is_running(node_id, attempt, item)
        except NodeNotRunning:
            continue
        stored = run.nodes[node_id]
        if stored["kind"] not in kinds:
            continue
        started = stored if item is None else stored["item_states"][str(item)]
        key = (envelope["aggregate_id"], node_id, attempt, item)
        facts = {"node_id": node_id, "attempt": attempt, "kind": stored["kind"]}
        waiting[key] = (run, {**facts, "input": started["input"]}, item)
    return list(waiting.values())
