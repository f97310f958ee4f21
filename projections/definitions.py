"""`workflow_versions`: every published version of every workflow."""

from __future__ import annotations

from domain.messages import DefinitionEvent, Event
from projections import Cursor, json_text

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
