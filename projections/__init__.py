"""Read models: one module per model, each owning its tables, rebuildable from the store.

A projection is a module with `NAME`, `TABLES` (the tables it owns), `SCHEMA` (their
DDL) and `project(events, sql)`, which applies a batch of event envelopes in order.
Applying an event twice changes nothing: each row remembers the aggregate version it
has seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    """What a projection needs of a database cursor (psycopg's satisfies it)."""

    def execute(
        self, query: Any, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Any: ...

    def executemany(self, query: Any, params_seq: Any) -> Any: ...

    def fetchall(self) -> list[Any]: ...
