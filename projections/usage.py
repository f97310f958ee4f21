"""`usage`: tokens, cost and model calls per run, model and day (UTC), with the run's
tenant and workflow, so that usage per run, workflow, tenant, model or day is a sum.

Counted are the answers a run paid for (`LlmCallCompleted`, `AgentStepCompleted`,
`MapItemCompleted`, `ExtractionCompleted`, `ChatReplyCompleted` for the replies in a chat
node's thread, and `LlmRequestCompleted` for run-level calls such as an `llm` action or an
edge's judge), as in a run's own `usage`; answers a fork re-served from the record
(`LlmCallReplayed`) cost nothing and are not counted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.messages import MODEL_ANSWERS, Event
from domain.runs import add_usage, new_usage
from projections import Cursor, write_rows

NAME = "usage"
TABLES = ["usage"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    run_id uuid NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    day date NOT NULL,
    tenant text NOT NULL,
    workflow text NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cached_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    llm_calls integer NOT NULL,
    cost_complete boolean NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (run_id, provider, model, day)
);
CREATE INDEX IF NOT EXISTS usage_by_tenant_day ON usage (tenant, day);
"""
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
