"""`workflow_versions`: every published version of every workflow."""

from __future__ import annotations

from domain.messages import DefinitionEvent, Event
from projections import Cursor, json_text
from projections.queries import AsyncCursor, Row, rows

NAME = "definitions"
TABLES = ["workflow_versions"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow_versions (
    tenant text NOT NULL,
    name text NOT NULL,
    version integer NOT NULL,
    content_hash text NOT NULL,
    spec jsonb NOT NULL,
    published_by text NOT NULL,
    published_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, name, version)
);
"""


def project(events: list[Event], sql: Cursor) -> None:
    rows = [
        (
            e["data"]["tenant"],
            e["data"]["spec"]["name"],
            e["data"]["number"],
            e["data"]["content_hash"],
            json_text(e["data"]["spec"]),
            e["data"]["actor"],
            e["timestamp"],
        )
        for e in events
        if e["type"] == DefinitionEvent.VERSION_PUBLISHED
    ]
    if rows:
        sql.executemany(
            "INSERT INTO workflow_versions (tenant, name, version, content_hash, spec,"
            " published_by, published_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            rows,
        )


# Queries: what the API reads of `workflow_versions`.


async def latest_versions(sql: AsyncCursor, tenant: str, table: str = TABLES[0]) -> list[Row]:
    """Every workflow of the tenant with its latest version, by name (`table`: another
    table of versions of this shape, as `playbook_versions`)."""
    return await rows(
        sql,
        "SELECT DISTINCT ON (name) name, version, content_hash, published_by, published_at"
        f" FROM {table} WHERE tenant = %s ORDER BY name, version DESC",
        [tenant],
    )


async def versions(sql: AsyncCursor, tenant: str, name: str, table: str = TABLES[0]) -> list[Row]:
    """Every version of one workflow of the tenant, oldest first (none: no such workflow)."""
    return await rows(
        sql,
        f"SELECT version, content_hash, spec, published_by, published_at FROM {table}"
        " WHERE tenant = %s AND name = %s ORDER BY version",
        [tenant, name],
    )
