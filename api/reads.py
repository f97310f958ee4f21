"""Reads of the `node_attempts` and `usage` read models.

`GET /v1/runs/{run_id}/attempts` lists what each node of a run did, attempt by attempt
(with a row per map item and per agent step); `GET /v1/usage` sums tokens, cost and
model calls per run, workflow, model or day, or for the whole tenant. Both follow
`GET /v1/runs`: the caller's tenant only (another tenant's run is 404), cursor
pagination with `next_cursor`, 400 for a bad cursor, 422 for a bad parameter.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from functools import partial
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query

from api.app import Caller, caller, fetch_rows
from api.projections_api import consistent_reads
from infra.runtime import Heddle
from infra.store import dumps
from projections import node_attempts

ATTEMPT_STATUSES = Literal["running", "completed", "failed", "retried", "skipped", "cancelled"]
ATTEMPT_FIELDS = [
    c for c in node_attempts.COLUMNS if c not in ("run_id", "started_position", "version")
]
"""An attempt's fields (and `position`, the store position of the event that opened it)."""
GROUPS: dict[str, list[str]] = {
    "run": ["run_id"],
    "workflow": ["workflow"],
    "model": ["provider", "model"],
    "day": ["day"],
}
"""The columns each `group_by` groups (and pages) by."""
CURSOR_VALUES: dict[str, Any] = {
    "run_id": UUID,
    "day": date.fromisoformat,
    "position": int,
    "seq": int,
    "thread_id": UUID,
    "opened_at": datetime.fromisoformat,
}
"""How a cursor's value of a column is read back (as text otherwise)."""
TOTALS = (
    "COALESCE(sum(input_tokens), 0)::bigint AS input_tokens,"
    " COALESCE(sum(output_tokens), 0)::bigint AS output_tokens,"
    " COALESCE(sum(cached_tokens), 0)::bigint AS cached_tokens,"
    " COALESCE(round(sum(cost_usd)::numeric, 8), 0)::float AS cost_usd,"
    " COALESCE(sum(llm_calls), 0)::bigint AS llm_calls,"
    " COALESCE(bool_and(cost_complete), true) AS cost_complete,"
    " count(DISTINCT run_id) AS runs"
)


def read_routes(heddle: Heddle) -> APIRouter:
    router = APIRouter(dependencies=[Depends(consistent_reads(heddle))])

    fetch = partial(fetch_rows, heddle)

    @router.get("/v1/runs/{run_id}/attempts", tags=["runs"])
    async def run_attempts(
        run_id: UUID,
        who: Caller = Depends(caller),
        node_id: str | None = Query(default=None, description="one node's attempts only"),
        status: ATTEMPT_STATUSES | None = None,
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Each attempt of each node of the run, in the order they started: the recorded
        request, the answer, tool calls, usage, latency, status and error. A map item or
        an agent step has a row of its own after its attempt's (`item` or `step` set)."""
        filters = {"node_id": node_id, "status": status}
        return await run_rows(
            fetch,
            run_id,
            who.tenant,
            "node_attempts",
            ATTEMPT_FIELDS,
            "started_position",
            filters,
            limit,
            cursor,
        )

    @router.get("/v1/usage", tags=["usage"])
    async def usage(
        who: Caller = Depends(caller),
        group_by: Literal["run", "workflow", "model", "day"] | None = Query(
            default=None, description="without it: the tenant's totals, as one item"
        ),
        from_: date | None = Query(default=None, alias="from", description="first day (UTC)"),
        to: date | None = Query(default=None, description="last day (UTC), included"),
        workflow: str | None = None,
        run_id: UUID | None = None,
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Tokens, cost, model calls and runs of the caller's tenant, summed per group
        (days newest first, other groups in order), with cursor pagination.
        `cost_complete` is false when a model without a known price was used."""
        where, params = ["tenant = %s"], [who.tenant]
        for condition, value in (
            ("day >= %s", from_),
            ("day <= %s", to),
            ("workflow = %s", workflow),
            ("run_id = %s", run_id),
        ):
            if value is not None:
                where.append(condition)
                params.append(value)
        keys = GROUPS[group_by] if group_by else []
        order = "DESC" if group_by == "day" else ""
        if cursor and keys:
            where.append(
                f"({', '.join(keys)}) {'<' if order else '>'} ({', '.join(['%s'] * len(keys))})"
            )
            params += _decode(cursor, keys)
        shown = [f"{k}::text AS {k}" for k in keys]
        if group_by == "run":
            shown.append("min(workflow) AS workflow")
        query = f"SELECT {', '.join([*shown, TOTALS])} FROM usage WHERE {' AND '.join(where)}"
        if keys:
            query += (
                f" GROUP BY {', '.join(keys)}"
                f" ORDER BY {', '.join(f'usage.{k} {order}' for k in keys)} LIMIT %s"
            )
            params.append(limit + 1)
        rows = await fetch(query, params)
        return {"group_by": group_by, **_page(rows, limit, keys)}

    return router


Fetch = Callable[[str, list[Any]], Awaitable[list[dict[str, Any]]]]


async def run_rows(
    fetch: Fetch,
    run_id: UUID,
    tenant: str,
    table: str,
    fields: list[str],
    position: str,
    filters: dict[str, Any],
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """A page of a run's rows of `table` in the order of their `position` column, with the
    `filters` given (column: value, None for any); 404 when the run is not the tenant's."""
    if not await fetch("SELECT 1 FROM runs WHERE run_id = %s AND tenant = %s", [run_id, tenant]):
        raise HTTPException(404, f"no run {run_id} (it may still be starting: retry shortly)")
    where, params = ["run_id = %s"], [run_id]
    for column, value in filters.items():
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if cursor:
        where.append(f"{position} > %s")
        params += _decode(cursor, ["position"])
    rows = await fetch(
        f"SELECT {', '.join(fields)}, {position} AS position FROM {table}"
        f" WHERE {' AND '.join(where)} ORDER BY {position} LIMIT %s",
        [*params, limit + 1],
    )
    return _page(rows, limit, ["position"])


def _page(rows: list[dict[str, Any]], limit: int, keys: list[str]) -> dict[str, Any]:
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        raw = json.dumps([str(page[-1][k]) for k in keys])
        next_cursor = base64.urlsafe_b64encode(raw.encode()).decode()
    return {"items": json.loads(dumps(page)), "next_cursor": next_cursor}


def _decode(cursor: str, keys: list[str]) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError(cursor)
        return [CURSOR_VALUES.get(k, str)(v) for k, v in zip(keys, values, strict=True)]
    except Exception:
        raise HTTPException(
            400, "invalid cursor: pass next_cursor from the previous page"
        ) from None
