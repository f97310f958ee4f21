"""`customers`: one row per customer with its profile, the columns lists filter on, and
its latest signals; and the queries of a customer's context (its runs, open tasks and
latest artifacts, from the runs, tasks and artifacts read models).

Rows remember the customer version they have seen, so applying an event twice changes
nothing; a rebuild replays the same events into the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain import messages as m
from domain.customers import MAX_SIGNALS
from domain.messages import CustomerEvent, Event
from projections import Cursor, json_text
from projections.queries import AsyncCursor, Row, matching, rows

NAME = "customers"
TABLES = ["customers"]
VERSION = 1
FIELDS = [
    "customer_id", "name", "domain", "owner", "segment", "arr",
    "renewal_date::text AS renewal_date", "health",
    "risk", "opportunity", "profile", "created_at", "updated_at", "version", "position",
]  # fmt: skip
"""A customer's fields as the API lists them (its signals are in `get_customer`)."""

_CREATE = """
INSERT INTO customers (aggregate_id, tenant, customer_id, name, profile, signals, created_at,
                       updated_at, version, position)
VALUES (%(id)s, %(tenant)s, %(external_id)s, '', '{}', '[]', %(at)s, %(at)s, %(version)s,
        %(position)s)
ON CONFLICT DO NOTHING
"""
_SET = """
UPDATE customers SET name = %(name)s, domain = %(domain)s, owner = %(owner)s,
    segment = %(segment)s, arr = %(arr)s, renewal_date = %(renewal_date)s, health = %(health)s,
    risk = %(risk)s, opportunity = %(opportunity)s, profile = %(profile)s, {signals}
    updated_at = %(at)s, version = %(version)s, position = %(position)s
WHERE aggregate_id = %(id)s AND version < %(version)s
"""
_TOUCH = """
UPDATE customers SET version = %(version)s, position = %(position)s
WHERE aggregate_id = %(id)s AND version < %(version)s
"""
COLUMNS = ("name", "domain", "owner", "segment", "arr", "renewal_date", "health", "risk",
           "opportunity")  # fmt: skip


def project(events: list[Event], sql: Cursor) -> None:
    for event in events:
        if event["aggregate_type"] != "Customer":
            continue
        key = {
            "id": event["aggregate_id"],
            "at": event["timestamp"],
            "version": event["aggregate_version"],
            "position": event["position"],
        }
        data = event["data"]
        if event["type"] == CustomerEvent.CREATED:
            created: m.CustomerCreated = data  # type: ignore[assignment]
            sql.execute(
                _CREATE, {**key, "tenant": created["tenant"], "external_id": created["external_id"]}
            )
        elif event["type"] == CustomerEvent.PROFILE_SET:
            _set(sql, key, data["profile"], None)
        elif event["type"] == CustomerEvent.SIGNAL_RECORDED:
            _set(sql, key, data["profile"], data["signal"])
        else:
            sql.execute(_TOUCH, key)


def _set(
    sql: Cursor, key: dict[str, Any], profile: dict[str, Any], signal: dict[str, Any] | None
) -> None:
    signals = (
        f"signals = (jsonb_build_array(%(signal)s::jsonb) || signals) - {MAX_SIGNALS},"
        if signal is not None
        else ""
    )
    values = {column: profile.get(column) for column in COLUMNS}
    sql.execute(
        _SET.format(signals=signals),
        {**key, **values, "profile": json_text(profile), "signal": json_text(signal)},
    )


# Queries: what the API reads of `customers` (and of a customer's runs, tasks, artifacts).


async def list_customers(
    sql: AsyncCursor,
    tenant: str,
    filters: dict[str, Any],
    ranges: dict[str, Any],
    after: Sequence[Any] | None,
    limit: int,
) -> list[Row]:
    """Up to `limit` of the tenant's customers by name, after the (name, customer_id)
    `after`; `filters` are columns and values (owner, segment), `ranges` bounds
    (`renewal_before`, `min_risk`, `max_health`)."""
    where: list[str] = ["tenant = %s", "name <> ''"]
    params: list[Any] = [tenant]
    matching(where, params, filters)
    for bound, clause in (
        ("renewal_before", "renewal_date <= %s"),
        ("min_risk", "risk >= %s"),
        ("max_health", "health <= %s"),
    ):
        if ranges.get(bound) is not None:
            where.append(clause)
            params.append(ranges[bound])
    if after is not None:
        where.append("(name, customer_id) > (%s, %s)")
        params += after
    return await rows(
        sql,
        f"SELECT {', '.join(FIELDS)} FROM customers WHERE {' AND '.join(where)}"
        " ORDER BY name, customer_id LIMIT %s",
        [*params, limit],
    )


async def get_customer(sql: AsyncCursor, tenant: str, customer_id: str) -> Row | None:
    """The tenant's customer with its latest signals; None when there is none (yet)."""
    found = await rows(
        sql,
        f"SELECT {', '.join(FIELDS)}, signals FROM customers"
        " WHERE tenant = %s AND customer_id = %s AND name <> ''",
        [tenant, customer_id],
    )
    return found[0] if found else None


CONTEXT_RUNS = 50
CONTEXT_ARTIFACTS = 20


async def customer_runs(sql: AsyncCursor, tenant: str, customer_id: str) -> list[Row]:
    """The customer's runs, newest first (the last `CONTEXT_RUNS`)."""
    return await rows(
        sql,
        "SELECT run_id, workflow, workflow_version, status, assignee, priority, output, error,"
        " started_at, finished_at FROM runs WHERE tenant = %s AND customer_id = %s"
        " ORDER BY started_at DESC, run_id DESC LIMIT %s",
        [tenant, customer_id, CONTEXT_RUNS],
    )


async def customer_tasks(sql: AsyncCursor, tenant: str, customer_id: str) -> list[Row]:
    """The open tasks of the customer's runs, oldest first."""
    return await rows(
        sql,
        "SELECT t.run_id, t.task_id, t.type, t.title, t.assignee, t.role, t.priority, t.due_at,"
        " t.created_at, r.workflow FROM tasks t JOIN runs r USING (run_id)"
        " WHERE r.tenant = %s AND r.customer_id = %s AND t.status = 'open'"
        " ORDER BY t.created_at, t.task_id",
        [tenant, customer_id],
    )


async def customer_artifacts(sql: AsyncCursor, tenant: str, customer_id: str) -> list[Row]:
    """The latest artifacts of the customer's runs, newest first."""
    return await rows(
        sql,
        "SELECT a.artifact_id, a.run_id, a.workflow, a.node_id, a.name, a.content_type, a.size,"
        " a.created_at"
        " FROM artifacts a JOIN runs r USING (run_id)"
        " WHERE r.tenant = %s AND r.customer_id = %s"
        " ORDER BY a.created_at DESC, a.artifact_id DESC LIMIT %s",
        [tenant, customer_id, CONTEXT_ARTIFACTS],
    )


async def customer_ids(sql: AsyncCursor, tenant: str) -> list[str]:
    """The ids of every customer of the tenant."""
    found = await rows(sql, "SELECT customer_id FROM customers WHERE tenant = %s", [tenant])
    return [row["customer_id"] for row in found]
