"""Running the read models' queries (`projections/*`) on the runtime's read pool, and
turning what they answer into JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import HTTPException
from psycopg import DataError
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, WithJsonSchema

from api.http.dependencies import Runtime
from infra.store import dumps
from projections.queries import AsyncCursor

P = ParamSpec("P")
T = TypeVar("T")
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""A time as the store writes it (ISO 8601 with its offset), passed through unchanged."""


class Answer(BaseModel):
    """A body the API answers, from a read model: its fields are documented, and a field
    the read model adds is answered too, never dropped (tests/integration/test_openapi.py
    fails until it is documented)."""

    model_config = ConfigDict(extra="allow")


async def read(
    runtime: Runtime,
    query: Callable[Concatenate[AsyncCursor, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """What the read-model `query` answers, on a connection of the read pool; 422 for a
    parameter PostgreSQL cannot compare with any stored text (one holding a NUL)."""
    try:
        async with runtime.reads.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return await query(cur, *args, **kwargs)
    except DataError as error:
        if "NUL" not in str(error):
            raise
        raise HTTPException(
            422, "a parameter holds a NUL character (\\u0000), which no stored text can: remove it"
        ) from None


async def ping(runtime: Runtime) -> None:
    """Raise unless the read models' database answers."""
    async with runtime.reads.connection() as conn:
        await conn.execute("SELECT 1")


def jsonable(value: Any) -> Any:
    """`value` as the JSON the API answers (UUIDs, times and decimals as the store writes
    them)."""
    return json.loads(dumps(value))


def json_object(value: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping as the JSON object the API answers."""
    body: dict[str, Any] = jsonable(value)
    return body
