"""Heddle's tables, as numbered SQL migrations: `NNNN_name.sql` in this folder, applied
once each, in order, and recorded in `schema_migrations`.

`migrate` runs at every start of `heddle up` and with `heddle migrate` (before
`heddle serve`), under an advisory lock, so that processes starting together apply each
migration once: the others wait for the lock, then find nothing left to do. Each
migration runs in a transaction with its record, so a failed one leaves no trace and is
tried again at the next start. The event store's own tables belong to the
`eventsourcing` library, which makes them (`infra/bootstrap.create_schema`).

A change to the schema is a new file after the last (`0003_...sql`); a file that has
been released never changes. `0001_baseline.sql` is the schema as the code before
migrations made it, in statements safe to repeat: a database of that code takes it as a
no-op and is recorded at version 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

SCHEMA_LOCK = 0x68656465
"""The advisory lock that serialises schema changes between processes."""
FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Heddle than this one."""


@dataclass(frozen=True, order=True)
class Migration:
    """One step of the schema: its number, its name and its SQL."""

    version: int
    name: str
    sql: str


def migrations(folder: Path = Path(__file__).parent) -> list[Migration]:
    """The migrations in `folder`, in order; numbered 1, 2, 3 ... without a gap."""
    found = sorted(
        Migration(int(match[1]), match[2], path.read_text())
        for path in folder.glob("*.sql")
        if (match := FILE.match(path.name))
    )
    numbers = [migration.version for migration in found]
    if numbers != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3 ... without a gap: {numbers}")
    return found


def migrate(conn: psycopg.Connection[Any], known: list[Migration] | None = None) -> list[int]:
    """Apply the migrations the database has not had (all of `migrations()` by default),
    under the schema lock; the versions applied now (none when it was up to date). Raises
    `SchemaTooNew` for a database at a version this code does not know."""
    known = migrations() if known is None else known
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", [SCHEMA_LOCK])
    try:
        conn.execute(TABLE)
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        newest = max(applied, default=0)
        if newest > len(known):
            raise SchemaTooNew(
                f"the database's schema is at version {newest}, and this Heddle knows "
                f"versions up to {len(known)}: run a Heddle at least as new as the one that "
                "migrated it"
            )
        done = []
        for migration in known:
            if migration.version in applied:
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    [migration.version, migration.name],
                )
            done.append(migration.version)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [SCHEMA_LOCK])


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The newest migration the database has had (0 for none)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0
