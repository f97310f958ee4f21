"""`GET /v1/usage`: tokens, cost and model calls per run, workflow, model or day, or for
the whole tenant, from the `usage` read model. It follows `GET /v1/runs`: the caller's
tenant only, cursor pagination with `next_cursor`, 400 for a bad cursor, 422 for a bad
parameter."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from api.http.consistency import consistent_reads
from api.http.database import Answer, read
from api.http.dependencies import Caller, Runtime, caller
from api.http.pagination import Page, after, page
from api.http.problems import errors
from projections.usage import GROUPS, usage_totals


class UsageTotals(Answer):
    """Sums of one group (of the whole tenant without `group_by`); the group's own
    columns (`run_id`, `workflow`, `provider` and `model`, or `day`) come first."""

    run_id: str | None = None
    workflow: str | None = None
    provider: str | None = None
    model: str | None = None
    day: str | None = Field(default=None, description="YYYY-MM-DD (UTC)")
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    llm_calls: int
    cost_complete: bool = Field(description="false when a model without a known price was used")
    runs: int


class Usage(Page[UsageTotals]):
    """A page of usage, by group."""

    group_by: Literal["run", "workflow", "model", "day"] | None


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/usage`."""
    router = APIRouter(tags=["usage"], dependencies=[Depends(consistent_reads(runtime))])

    @router.get(
        "/v1/usage", response_model=Usage, response_model_exclude_unset=True,
        responses=errors(400),
    )  # fmt: skip
    async def get_usage(
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
        keys = GROUPS[group_by] if group_by else []
        filters = {"from": from_, "to": to, "workflow": workflow, "run_id": run_id}
        start = after(cursor, keys) if keys else None
        rows = await read(runtime, usage_totals, who.tenant, group_by, filters, start, limit + 1)
        return {"group_by": group_by, **page(rows, limit, keys)}

    return router
