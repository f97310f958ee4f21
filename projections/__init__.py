"""Read models: one module per model, each owning its tables, rebuildable from the store.

A projection is a module with `NAME`, `TABLES` (the tables it owns: their DDL is in the
numbered migrations of `infra/migrations/`), `VERSION` and `project(events, sql)`, which
applies a batch of event envelopes in order. Raise `VERSION` when a change to the code
makes rows other than the stored ones: the next `heddle migrate` (or `heddle up`)
rebuilds that projection from the store before Heddle serves from it.
Applying an event twice changes nothing: each row remembers the aggregate version it
has seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson

COPY_FROM = 200
"""Batches of at least this many rows are copied (COPY) into a staging table and inserted
from there: about four times faster than one INSERT per row, and slower for a few rows."""


def json_text(value: Any) -> str:
    """`value` as JSON text for a JSON column: orjson, about ten times faster than the
    standard library (a rebuild dumps several values per event); integers beyond 64 bits,
    which orjson refuses, go through `json`."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


class Copy(Protocol):
    def write_row(self, row: Sequence[Any]) -> None: ...


class Cursor(Protocol):
    """What a projection needs of a database cursor (psycopg's satisfies it)."""

    def execute(
        self, query: Any, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Any: ...

    def executemany(self, query: Any, params_seq: Any) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def copy(self, statement: Any) -> AbstractContextManager[Copy]: ...


def write_rows(
    sql: Cursor,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    on_conflict: str,
) -> None:
    """Insert `rows` (values in `columns` order; JSON already dumped to text) into `table`
    with `on_conflict` (an `ON CONFLICT ...` clause)."""
    rows = list(rows)
    if not rows:
        return
    names = ", ".join(columns)
    if len(rows) < COPY_FROM:
        sql.executemany(
            f"INSERT INTO {table} ({names})"
            f" VALUES ({', '.join(['%s'] * len(columns))}) {on_conflict}",
            rows,
        )
        return
    staging = f"{table}_staged"
    sql.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table})")
    with sql.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    sql.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} {on_conflict}")
    sql.execute(f"TRUNCATE {staging}")
