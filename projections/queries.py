"""What a read-model query needs of a database cursor, and the query shape read models share.

Each read model's module ends with its queries: plain async functions of a cursor whose
rows are dicts (psycopg's `dict_row` cursor satisfies `AsyncCursor`), so that the SQL of
a table lives beside the projection that writes it and the API only runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Row = dict[str, Any]


class AsyncCursor(Protocol):
    """What a query needs of an async database cursor that returns rows as dicts."""

    async def execute(self, query: str, params: Sequence[Any] | None = None) -> Any: ...

    async def fetchall(self) -> list[Row]: ...


async def rows(sql: AsyncCursor, query: str, params: Sequence[Any]) -> list[Row]:
    """The rows `query` answers with `params`."""
    await sql.execute(query, params)
    return list(await sql.fetchall())


def matching(where: list[str], params: list[Any], filters: dict[str, Any]) -> None:
    """Add `column = %s` to `where` for each filter given (None: any value)."""
    for column, value in filters.items():
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)


async def rows_of_run(
    sql: AsyncCursor,
    table: str,
    fields: list[str],
    position: str,
    run_id: Any,
    filters: dict[str, Any],
    after: int | None,
    limit: int,
) -> list[Row]:
    """Up to `limit` of a run's rows of `table` in the order of their `position` column
    (answered as `position`), after the position `after`, with the `filters` given."""
    where: list[str] = ["run_id = %s"]
    params: list[Any] = [run_id]
    matching(where, params, filters)
    if after is not None:
        where.append(f"{position} > %s")
        params.append(after)
    return await rows(
        sql,
        f"SELECT {', '.join(fields)}, {position} AS position FROM {table}"
        f" WHERE {' AND '.join(where)} ORDER BY {position} LIMIT %s",
        [*params, limit],
    )


async def newest_first(
    sql: AsyncCursor,
    table: str,
    fields: list[str],
    keys: tuple[str, str],
    tenant: str,
    filters: dict[str, Any],
    after: Sequence[Any] | None,
    limit: int,
) -> list[Row]:
    """Up to `limit` of the tenant's rows of `table`, newest first by `keys` (a time and
    an id column), after the keys `after`, with the `filters` given."""
    where: list[str] = ["tenant = %s"]
    params: list[Any] = [tenant]
    matching(where, params, filters)
    if after is not None:
        where.append(f"({', '.join(keys)}) < (%s, %s)")
        params += after
    return await rows(
        sql,
        f"SELECT {', '.join(fields)} FROM {table} WHERE {' AND '.join(where)}"
        f" ORDER BY {', '.join(f'{key} DESC' for key in keys)} LIMIT %s",
        [*params, limit],
    )
