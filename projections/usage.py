"""`usage`: tokens, cost and model calls per run, model and day (UTC), with the run's
tenant and workflow, so that usage per run, workflow, tenant, model or day is a sum.

Counted are the answers a run paid for (`LlmCallCompleted`, `AgentStepCompleted`,
`MapItemCompleted`, `ExtractionCompleted`, `ChatReplyCompleted` for the replies in a chat
node's thread, and `LlmRequestCompleted` for run-level calls such as an `llm` action or an
edge's judge), as in a run's own `usage`; answers a fork re-served from the record
(`LlmCallReplayed`) cost nothing and are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from domain.messages import MODEL_ANSWERS, Event
from domain.runs import add_usage, new_usage
from projections import Cursor, write_rows
from projections.queries import AsyncCursor, Row, rows

NAME = "usage"
TABLES = ["usage"]
VERSION = 1
TOTALS = [
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
    "llm_calls",
    "cost_complete",
]
COLUMNS = ["run_id", "provider", "model", "day", "tenant", "workflow", *TOTALS, "version"]

Key = tuple[str, str, str, str]  # run, provider, model, day


def project(events: list[Event], sql: Cursor) -> None:
    """Add each paid answer to its (run, model, day) row. A row remembers the run's
    version that last changed it: an event at or below it was counted already. A row
    takes tenant and workflow from its run's row (`run_history` projects first)."""
    paid = [e for e in events if e["type"] in MODEL_ANSWERS]
    if not paid:
        return
    ids = list(dict.fromkeys(e["aggregate_id"] for e in paid))
    sql.execute("SELECT run_id, tenant, workflow FROM runs WHERE run_id = ANY(%s::uuid[])", [ids])
    runs = {str(run_id): (tenant, workflow) for run_id, tenant, workflow in sql.fetchall()}
    sql.execute(f"SELECT {', '.join(COLUMNS)} FROM usage WHERE run_id = ANY(%s::uuid[])", [ids])
    rows: dict[Key, dict[str, Any]] = {}
    for values in sql.fetchall():
        row = dict(zip(COLUMNS, values, strict=True))
        rows[(str(row["run_id"]), row["provider"], row["model"], row["day"].isoformat())] = row
    changed: dict[Key, dict[str, Any]] = {}
    for event in paid:
        run_id, result = event["aggregate_id"], event["data"]["result"]
        if run_id not in runs:
            continue
        key = (run_id, result["provider"], result["model"], _utc_day(event["timestamp"]))
        row = rows.get(key) or {
            "run_id": run_id,
            "provider": key[1],
            "model": key[2],
            "day": key[3],
            "tenant": runs[run_id][0],
            "workflow": runs[run_id][1],
            **new_usage(),
            "version": 0,
        }
        if event["aggregate_version"] <= row["version"]:
            continue
        row.update(add_usage(row, result), version=event["aggregate_version"])
        rows[key] = changed[key] = row
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in [*TOTALS, "version"])
    write_rows(
        sql,
        "usage",
        COLUMNS,
        ([row[c] for c in COLUMNS] for row in changed.values()),
        "ON CONFLICT (run_id, provider, model, day) DO UPDATE SET"
        f" {updates} WHERE usage.version < EXCLUDED.version",
    )


def _utc_day(timestamp: str) -> str:
    return datetime.fromisoformat(timestamp).astimezone(UTC).date().isoformat()


# Queries: what the API reads of `usage`.

GROUPS: dict[str, list[str]] = {
    "run": ["run_id"],
    "workflow": ["workflow"],
    "model": ["provider", "model"],
    "day": ["day"],
}
"""The columns each `group_by` groups (and pages) by."""
SUMS = (
    "COALESCE(sum(input_tokens), 0)::bigint AS input_tokens,"
    " COALESCE(sum(output_tokens), 0)::bigint AS output_tokens,"
    " COALESCE(sum(cached_tokens), 0)::bigint AS cached_tokens,"
    " COALESCE(round(sum(cost_usd)::numeric, 8), 0)::float AS cost_usd,"
    " COALESCE(sum(llm_calls), 0)::bigint AS llm_calls,"
    " COALESCE(bool_and(cost_complete), true) AS cost_complete,"
    " count(DISTINCT run_id) AS runs"
)
"""The totals of a group, in SQL."""


async def usage_totals(
    sql: AsyncCursor,
    tenant: str,
    group_by: str | None,
    filters: dict[str, Any],
    after: Sequence[Any] | None,
    limit: int,
) -> list[Row]:
    """The tenant's totals (one row), or up to `limit` groups of `group_by` after the
    group `after` (days newest first, other groups in order). `filters`: `from` and `to`
    (days, included), `workflow`, `run_id`."""
    where: list[str] = ["tenant = %s"]
    params: list[Any] = [tenant]
    for condition, value in (
        ("day >= %s", filters.get("from")),
        ("day <= %s", filters.get("to")),
        ("workflow = %s", filters.get("workflow")),
        ("run_id = %s", filters.get("run_id")),
    ):
        if value is not None:
            where.append(condition)
            params.append(value)
    keys = GROUPS[group_by] if group_by else []
    order = "DESC" if group_by == "day" else ""
    if after is not None and keys:
        where.append(
            f"({', '.join(keys)}) {'<' if order else '>'} ({', '.join(['%s'] * len(keys))})"
        )
        params += after
    shown = [f"{k}::text AS {k}" for k in keys]
    if group_by == "run":
        shown.append("min(workflow) AS workflow")
    query = f"SELECT {', '.join([*shown, SUMS])} FROM usage WHERE {' AND '.join(where)}"
    if keys:
        query += (
            f" GROUP BY {', '.join(keys)}"
            f" ORDER BY {', '.join(f'usage.{k} {order}' for k in keys)} LIMIT %s"
        )
        params.append(limit)
    return await rows(sql, query, params)
