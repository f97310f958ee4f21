"""`artifacts`: one row per document a run saved (`ArtifactSaved`, from a `document`
action), with its run, tenant, node, name, content type, size, digest and content.

A row takes its tenant and workflow from its run's row (`run_history` projects first).
An artifact's id is fixed by its run, node attempt and action, so an event applied twice
writes nothing new.
"""

from __future__ import annotations

from domain.messages import Event, RunEvent
from projections import Cursor, write_rows

NAME = "artifacts"
TABLES = ["artifacts"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id uuid PRIMARY KEY,
    run_id uuid NOT NULL,
    tenant text NOT NULL,
    workflow text NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    action text NOT NULL,
    name text NOT NULL,
    content_type text NOT NULL,
    size integer NOT NULL,
    sha256 text NOT NULL,
    content text NOT NULL,
    created_at timestamptz NOT NULL,
    position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_by_run ON artifacts (run_id, position);
"""
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
