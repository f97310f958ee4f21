"""`artifacts`: one row per document a run saved (`ArtifactSaved`, from a `document`
action), with its run, tenant, node, name, content type, size, digest and content.

A row takes its tenant and workflow from its run's row (`run_history` projects first).
An artifact's id is fixed by its run, node attempt and action, so an event applied twice
writes nothing new.
"""

from __future__ import annotations

from typing import Any

from domain.messages import Event, RunEvent
from projections import Cursor, write_rows
from projections.queries import AsyncCursor, Row, rows, rows_of_run

NAME = "artifacts"
TABLES = ["artifacts"]
VERSION = 1
COLUMNS = [
    "artifact_id",
    "run_id",
    "tenant",
    "workflow",
    "node_id",
    "attempt",
    "action",
    "name",
    "content_type",
    "size",
    "sha256",
    "content",
    "created_at",
    "position",
]


def project(events: list[Event], sql: Cursor) -> None:
    """Insert a row per saved artifact of a known run."""
    saved = [e for e in events if e["type"] == RunEvent.ARTIFACT_SAVED]
    if not saved:
        return
    ids = list(dict.fromkeys(e["aggregate_id"] for e in saved))
    sql.execute("SELECT run_id, tenant, workflow FROM runs WHERE run_id = ANY(%s::uuid[])", [ids])
    runs = {str(run_id): (tenant, workflow) for run_id, tenant, workflow in sql.fetchall()}
    rows = []
    for event in saved:
        run = runs.get(event["aggregate_id"])
        if run is None:
            continue
        data = event["data"]
        row = {
            **{c: data[c] for c in COLUMNS if c in data},
            "run_id": event["aggregate_id"],
            "tenant": run[0],
            "workflow": run[1],
            "created_at": event["timestamp"],
            "position": event["position"],
        }
        rows.append([row[c] for c in COLUMNS])
    write_rows(sql, "artifacts", COLUMNS, rows, "ON CONFLICT (artifact_id) DO NOTHING")


# Queries: what the API reads of `artifacts`.

FIELDS = [c for c in COLUMNS if c not in ("tenant", "content", "position")]
"""An artifact's metadata as the API serves it (its `content` comes with the artifact)."""


async def run_artifacts(
    sql: AsyncCursor, run_id: Any, filters: dict[str, Any], after: int | None, limit: int
) -> list[Row]:
    """Up to `limit` of the run's artifacts in the order they were saved, after the
    position `after`, without their content; `filters`: node_id, name, content_type."""
    return await rows_of_run(sql, "artifacts", FIELDS, "position", run_id, filters, after, limit)


async def get_artifact(sql: AsyncCursor, artifact_id: Any, tenant: str) -> Row | None:
    """The tenant's artifact with its content; None when there is none."""
    found = await rows(
        sql,
        f"SELECT {', '.join(FIELDS)}, content FROM artifacts"
        " WHERE artifact_id = %s AND tenant = %s",
        [artifact_id, tenant],
    )
    return found[0] if found else None
