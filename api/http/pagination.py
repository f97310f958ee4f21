"""The one cursor codec of the API's lists: `next_cursor` holds the sort keys of a page's
last row; passing it back asks for the rows after it. A bad cursor is 400."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from fastapi import HTTPException
from pydantic import BaseModel, Field

from api.http.database import jsonable, read
from api.http.dependencies import Caller, Runtime
from projections import run_history
from projections.queries import AsyncCursor, Row

KEY_TYPES: dict[str, Callable[[str], Any]] = {
    "run_id": UUID,
    "thread_id": UUID,
    "day": date.fromisoformat,
    "started_at": datetime.fromisoformat,
    "opened_at": datetime.fromisoformat,
    "created_at": datetime.fromisoformat,
    "updated_at": datetime.fromisoformat,
    "scored_at": datetime.fromisoformat,
    "score": float,
    "position": int,
    "seq": int,
}
"""How a cursor's value of a sort key is read back (as text otherwise)."""
T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list: its items, and the cursor of the next page (`null` on the last)."""

    items: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


RunRows = Callable[[AsyncCursor, UUID, dict[str, Any], int | None, int], Awaitable[list[Row]]]
"""A read model's query of a run's rows: (cursor, run id, filters, after position, limit)."""


def encode_cursor(row: dict[str, Any], keys: list[str]) -> str:
    """The cursor after `row`, sorted by `keys`."""
    values = [_text(row[key]) for key in keys]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def decode_cursor(cursor: str, keys: list[str]) -> list[Any]:
    """The values of `keys` a cursor holds; 400 when it is not one of ours."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError(cursor)
        return [KEY_TYPES.get(k, str)(v) for k, v in zip(keys, values, strict=True)]
    except Exception:
        raise HTTPException(
            400, "invalid cursor: pass next_cursor from the previous page"
        ) from None


def after(cursor: str | None, keys: list[str]) -> list[Any] | None:
    """The sort keys to continue after (None for the first page)."""
    return decode_cursor(cursor, keys) if cursor else None


def page(rows: list[dict[str, Any]], limit: int, keys: list[str]) -> dict[str, Any]:
    """`{items, next_cursor}` of rows fetched with `limit + 1`: the extra row says there is
    another page."""
    shown = rows[:limit]
    next_cursor = encode_cursor(shown[-1], keys) if len(rows) > limit else None
    return {"items": jsonable(shown), "next_cursor": next_cursor}


def run_not_found(run_id: UUID) -> HTTPException:
    """404 for a run the caller's tenant does not have (or whose projection lags)."""
    return HTTPException(404, f"no run {run_id} (it may still be starting: retry shortly)")


async def run_page(
    runtime: Runtime,
    who: Caller,
    run_id: UUID,
    query: RunRows,
    filters: dict[str, Any],
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """A page of a run's rows in the order of their store position, by `query` (a
    read model's rows of a run, as `node_attempts.run_attempts`); 404 when the run is not
    the tenant's."""
    if not await read(runtime, run_history.run_exists, run_id, who.tenant):
        raise run_not_found(run_id)
    [position] = after(cursor, ["position"]) or [None]
    rows = await read(runtime, query, run_id, filters, position, limit + 1)
    return page(rows, limit, ["position"])
