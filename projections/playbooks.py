"""`playbook_versions`: every published version of every playbook."""

from __future__ import annotations

from domain import messages as m
from domain.messages import Event, PlaybookEvent
from projections import Cursor, json_text

NAME = "playbooks"
TABLES = ["playbook_versions"]
VERSION = 1
_INSERT = """
INSERT INTO playbook_versions (tenant, name, version, content_hash, spec, published_by,
                               published_at)
VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""


def project(events: list[Event], sql: Cursor) -> None:
    for event in events:
        if event["type"] != PlaybookEvent.VERSION_PUBLISHED:
            continue
        data: m.PlaybookVersionPublished = event["data"]  # type: ignore[assignment]
        sql.execute(_INSERT, [
            data["tenant"], data["name"], data["number"], data["content_hash"],
            json_text(data["spec"]), data["actor"], event["timestamp"],
        ])  # fmt: skip


# Queries: those of `definitions` (`latest_versions`, `versions`) with `table=TABLES[0]`.
