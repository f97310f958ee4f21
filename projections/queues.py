"""`queue_items` and `queue_customers`: what the playbooks recommend for each customer
(workflow, stage, score and the terms of the score), by the customer's owner, and the
queue of one person that reads them with the open tasks of their runs.

A recommendation leaves the queue once a run of its workflow for its customer is going
or has completed (a failed or cancelled one puts it back), or while it is snoozed
(`queue_snoozes`); the tasks of a paused (snoozed) run leave it until the run resumes.
`queue_customers` remembers the customer version each customer's items come from, so an
event applied twice, or late, changes nothing. `recommended_at` is when the item first appeared.
"""

from __future__ import annotations

from typing import Any

from domain import messages as m
from domain.messages import CustomerEvent, Event
from projections import Cursor, json_text
from projections.queries import AsyncCursor, Row, rows
from projections.tasks import SCORE

NAME = "queues"
TABLES = ["queue_items", "queue_customers", "queue_snoozes"]
VERSION = 1
_GUARD = """
INSERT INTO queue_customers (aggregate_id, tenant, assignee, playbooks, evaluated_at, version)
SELECT %(id)s, tenant, %(assignee)s, %(playbooks)s, %(at)s, %(version)s
FROM customers WHERE aggregate_id = %(id)s
ON CONFLICT (aggregate_id) DO UPDATE SET assignee = EXCLUDED.assignee,
    playbooks = EXCLUDED.playbooks, evaluated_at = EXCLUDED.evaluated_at,
    version = EXCLUDED.version
WHERE queue_customers.version < EXCLUDED.version
RETURNING tenant
"""
_ITEM = """
INSERT INTO queue_items (item_id, aggregate_id, tenant, customer_id, assignee, playbook, rule,
                         workflow, stage, score, terms, recommended_at, evaluated_at, version)
SELECT %(item_id)s, %(id)s, tenant, customer_id, %(assignee)s, %(playbook)s, %(rule)s,
       %(workflow)s, %(stage)s, %(score)s, %(terms)s, %(at)s, %(at)s, %(version)s
FROM customers WHERE aggregate_id = %(id)s
ON CONFLICT (item_id) DO UPDATE SET assignee = EXCLUDED.assignee, workflow = EXCLUDED.workflow,
    stage = EXCLUDED.stage, score = EXCLUDED.score, terms = EXCLUDED.terms,
    evaluated_at = EXCLUDED.evaluated_at, version = EXCLUDED.version
"""


def project(events: list[Event], sql: Cursor) -> None:
    """Apply a batch (after `customers`, whose rows name each item's tenant and customer)."""
    for event in events:
        if event["type"] == CustomerEvent.ITEM_SNOOZED:
            snoozed(sql, event)
            continue
        if event["type"] != CustomerEvent.RECOMMENDED:
            continue
        data: m.CustomerRecommended = event["data"]  # type: ignore[assignment]
        key = {
            "id": event["aggregate_id"],
            "at": data["at"],
            "version": event["aggregate_version"],
            "assignee": data["assignee"],
        }
        sql.execute(_GUARD, {**key, "playbooks": json_text(data["playbooks"])})
        if not sql.fetchall():
            continue  # seen already, or a later evaluation is in
        kept = [item["item_id"] for item in data["items"]]
        sql.execute(
            "DELETE FROM queue_items WHERE aggregate_id = %s AND NOT (item_id = ANY(%s::uuid[]))",
            [event["aggregate_id"], kept],
        )
        sql.executemany(
            _ITEM,
            [
                {
                    **key,
                    **{k: item[k] for k in ("item_id", "playbook", "rule", "workflow", "stage")},
                    "score": item["score"],
                    "terms": json_text(item["terms"]),
                }
                for item in data["items"]
            ],
        )


def snoozed(sql: Cursor, event: Event) -> None:
    data: m.CustomerItemSnoozed = event["data"]  # type: ignore[assignment]
    sql.execute(
        "INSERT INTO queue_snoozes (item_id, aggregate_id, until, snoozed_by, version)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (item_id) DO UPDATE SET until = EXCLUDED.until,"
        " snoozed_by = EXCLUDED.snoozed_by, version = EXCLUDED.version"
        " WHERE queue_snoozes.version < EXCLUDED.version",
        [data["item_id"], event["aggregate_id"], data["until"], data["actor"],
         event["aggregate_version"]],
    )  # fmt: skip


EVALUATION_DUE = """
SELECT c.tenant, c.customer_id, c.aggregate_id FROM customers c
LEFT JOIN queue_customers q USING (aggregate_id)
WHERE c.name <> ''
  AND (q.evaluated_at IS NULL OR q.evaluated_at < date_trunc('day', now() AT TIME ZONE 'UTC')
       AT TIME ZONE 'UTC')
  AND EXISTS (SELECT 1 FROM playbook_versions p WHERE p.tenant = c.tenant)
ORDER BY q.evaluated_at NULLS FIRST LIMIT 500
"""
"""Customers of tenants with a playbook not evaluated yet today (UTC): the timer role
sends each an `EvaluateCustomer` once a day, as renewals come closer."""


# Queries: one person's queue.

OPEN_RUN = """NOT EXISTS (
    SELECT 1 FROM runs r WHERE r.tenant = q.tenant AND r.customer_id = q.customer_id
    AND r.workflow = q.workflow AND r.status NOT IN ('failed', 'cancelled'))"""
"""A recommendation no run has taken up (or only one that failed or was cancelled)."""
ITEMS = f"""
SELECT q.item_id, q.customer_id, c.name AS customer_name, q.playbook, q.rule, q.workflow,
       q.stage, q.score, q.terms, q.recommended_at, q.evaluated_at,
       c.renewal_date::text AS renewal_date, c.arr, c.health, c.risk
FROM queue_items q JOIN customers c USING (aggregate_id)
WHERE q.tenant = %s AND q.assignee = %s AND {OPEN_RUN}
  AND NOT EXISTS (SELECT 1 FROM queue_snoozes s WHERE s.item_id = q.item_id AND s.until > now())
ORDER BY q.score DESC, q.item_id
"""
TASKS = f"""
SELECT t.run_id, t.task_id, t.type, t.title, t.assignee, t.role, t.priority, t.due_at,
       t.created_at, r.workflow, r.customer_id, t.score,
       COALESCE(t.due_at < now(), false) AS overdue
FROM (SELECT *, {SCORE} AS score FROM tasks, (SELECT now() AS scored_at) AS clock
      WHERE tenant = %s AND status = 'open') t
JOIN runs r USING (run_id)
WHERE (r.assignee = %s OR t.assignee = %s OR (t.assignee IS NULL AND t.role = ANY(%s)))
  AND r.status <> 'paused'
ORDER BY t.score DESC, t.created_at, t.task_id
"""


async def recommended(sql: AsyncCursor, tenant: str, assignee: str) -> list[Row]:
    """The person's recommendations no run has taken up, highest score first."""
    return await rows(sql, ITEMS, [tenant, assignee])


async def open_tasks(sql: AsyncCursor, tenant: str, assignee: str, roles: list[str]) -> list[Row]:
    """The open tasks of the person's runs, those given to them and those of their `roles`
    nobody has taken, by today's score (a paused run's wait until it resumes)."""
    return await rows(sql, TASKS, [tenant, assignee, assignee, roles])


async def get_item(sql: AsyncCursor, tenant: str, assignee: str, item_id: Any) -> Row | None:
    """One recommendation of the person's queue, whether or not a run took it up."""
    found = await rows(
        sql,
        "SELECT q.item_id, q.customer_id, q.playbook, q.rule, q.workflow, q.stage, q.score,"
        " q.terms, q.version, c.profile FROM queue_items q JOIN customers c USING (aggregate_id)"
        " WHERE q.tenant = %s AND q.assignee = %s AND q.item_id = %s",
        [tenant, assignee, item_id],
    )
    return found[0] if found else None


async def customer_items(sql: AsyncCursor, tenant: str, customer_id: str) -> list[Row]:
    """What the playbooks recommend for one customer, highest score first."""
    return await rows(
        sql,
        "SELECT item_id, playbook, rule, workflow, stage, score, terms, assignee,"
        " recommended_at FROM queue_items WHERE tenant = %s AND customer_id = %s"
        " ORDER BY score DESC, item_id",
        [tenant, customer_id],
    )
