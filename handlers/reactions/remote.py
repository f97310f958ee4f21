"""`remote` nodes: the tasks the worker sends to external workers, and the task topics
that newly published workflows need."""

from __future__ import annotations

from typing import Any

from domain.messages import DefinitionEvent
from handlers.reactions.events import waiting_nodes
from handlers.unit_of_work import UnitOfWork


def capabilities_published(events: list[dict[str, Any]]) -> set[str]:
    """The capabilities of the `remote` nodes of newly published workflow versions: their
    task topics should exist before the first task, so that workers can subscribe."""
    return {
        node["capability"]
        for envelope in events
        if envelope["type"] == DefinitionEvent.VERSION_PUBLISHED
        for node in envelope["data"]["spec"]["nodes"].values()
        if node.get("kind") == "remote"
    }


def remote_tasks_due(events: list[dict[str, Any]], uow: UnitOfWork) -> list[dict[str, Any]]:
    """The tasks of `remote` nodes that started and still wait, as messages for
    `heddle.tasks.<capability>` (docs/remote.md)."""
    return [
        {
            **data["input"],
            "run_id": str(run.id),
            "tenant": run.tenant,
            "workflow": run.workflow,
            "node_id": data["node_id"],
            "attempt": data["attempt"],
        }
        for run, data, _ in waiting_nodes(events, uow, {"remote"})
    ]
