"""`workflow_versions`: every published version of every workflow."""

from __future__ import annotations

from domain.messages import DefinitionEvent, Event
from projections import Cursor, json_text
from projections.queries import AsyncCursor, Row, rows

NAME = "definitions"
TABLES = ["workflow_versions"]
VERSION = 1


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


async def latest_versions(
    sql: AsyncCursor,
    tenant: str,
    after: str | None = None,
    limit: int | None = None,
    table: str = TABLES[0],
) -> list[Row]:
    """The tenant's workflows with their latest versions, by name: every one, or up to
    `limit` named after `after` (`table`: another table of versions of this shape, as
    `playbook_versions`)."""
    return await rows(
        sql,
        "SELECT DISTINCT ON (name) name, version, content_hash, published_by, published_at"
        f" FROM {table} WHERE tenant = %s AND (%s::text IS NULL OR name > %s)"
        " ORDER BY name, version DESC LIMIT %s",
        [tenant, after, after, limit],
    )


async def versions(sql: AsyncCursor, tenant: str, name: str, table: str = TABLES[0]) -> list[Row]:
    """Every version of one workflow of the tenant, oldest first (none: no such workflow)."""
    return await rows(
        sql,
        f"SELECT version, content_hash, spec, published_by, published_at FROM {table}"
        " WHERE tenant = %s AND name = %s ORDER BY version",
        [tenant, name],
    )
