"""One person's work queue over HTTP: what the playbooks recommend for the customers they
own and no run has taken up yet (with the score and the terms that made it), the open
tasks of their runs (by today's task score), and counts; and starting an item, which
starts its workflow with the customer's context as input, bound to the customer, the
person and the item's score (`StartRun` with `customer_id`, `assignee`, `priority`)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid5

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from api.http.consistency import consistent_reads
from api.http.database import jsonable, read
from api.http.dependencies import Caller, Runtime, caller
from api.http.send import Accepted, send_command
from domain.customers import customer_id, facts
from domain.definitions import HEDDLE_NAMESPACE
from projections import customers, queues


class Term(BaseModel):
    name: str
    weight: float
    value: float | None
    points: float
    error: str | None = None


class QueueItem(BaseModel):
    """A recommended workflow for a customer, not started yet."""

    item_id: UUID
    customer_id: str
    customer_name: str
    playbook: str
    rule: str
    workflow: str
    stage: str
    score: float
    terms: list[Term] = Field(description="what the score is made of: weight times value each")
    recommended_at: datetime
    evaluated_at: datetime
    renewal_date: date | None
    arr: float | None
    health: float | None
    risk: float | None


class QueueTask(BaseModel):
    """An open task of one of the person's runs (or given to them)."""

    run_id: UUID
    task_id: str
    type: str
    title: str
    assignee: str | None
    role: str | None
    priority: int
    due_at: datetime | None
    created_at: datetime
    workflow: str
    customer_id: str | None
    score: float
    overdue: bool


class QueueStats(BaseModel):
    total: int = Field(description="recommendations and open tasks")
    recommended: int
    tasks: int
    overdue: int = Field(description="open tasks past their due time")
    by_workflow: dict[str, int]
    by_stage: dict[str, int]


class SnoozeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: str = Field(min_length=1, max_length=64, description="ISO 8601 time or duration (3d)")


class Queue(BaseModel):
    assignee: str
    items: list[QueueItem]
    tasks: list[QueueTask]
    stats: QueueStats


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/queues/{assignee}` and `POST /v1/queues/{assignee}/items/{item_id}/start`."""
    router = APIRouter(tags=["queues"], dependencies=[Depends(consistent_reads(runtime))])

    @router.get("/v1/queues/{assignee}", response_model=Queue, operation_id="get_queue")
    async def get_queue(
        assignee: str,
        who: Caller = Depends(caller),
        limit: int = Query(default=100, ge=1, le=1000, description="items and tasks shown"),
        role: list[str] = Query(default=[], description="roles whose open tasks they may take"),
    ) -> dict[str, Any]:
        """What `assignee` should do next: recommendations by score, then open tasks by
        score, and counts of everything (not only what `limit` shows)."""
        items = await read(runtime, queues.recommended, who.tenant, assignee)
        tasks = await read(runtime, queues.open_tasks, who.tenant, assignee, role)
        stats = {
            "total": len(items) + len(tasks),
            "recommended": len(items),
            "tasks": len(tasks),
            "overdue": sum(1 for t in tasks if t["overdue"]),
            "by_workflow": dict(Counter(i["workflow"] for i in items)
                                + Counter(t["workflow"] for t in tasks)),
            "by_stage": dict(Counter(i["stage"] for i in items)),
        }  # fmt: skip
        return {
            "assignee": assignee,
            "items": jsonable(items[:limit]),
            "tasks": jsonable(tasks[:limit]),
            "stats": stats,
        }

    @router.post(
        "/v1/queues/{assignee}/items/{item_id}/start",
        status_code=202,
        response_model=Accepted,
        operation_id="start_queue_item",
        responses={409: {"description": "a run of this item's workflow is going already"}},
    )
    async def start_item(assignee: str, item_id: UUID, who: Caller = Depends(caller)) -> Accepted:
        """Start the item's workflow for its customer: the input is the customer's context
        (`customer`) and the item (`item`); the run is bound to the customer, the assignee
        and the item's score. Starting it again starts no second run."""
        item = await read(runtime, queues.get_item, who.tenant, assignee, item_id)
        if item is None:
            raise HTTPException(404, f"no item {item_id} in the queue of {assignee!r}")
        going = await read(runtime, customers.customer_runs, who.tenant, item["customer_id"])
        for run in going:
            if run["workflow"] == item["workflow"] and run["status"] not in ("failed", "cancelled"):
                raise HTTPException(
                    409, f"run {run['run_id']} of {item['workflow']!r} is {run['status']} already"
                )
        run_id = str(uuid5(HEDDLE_NAMESPACE, f"queue-run/{item_id}/{item['version']}"))
        customer = facts(item["customer_id"], item["profile"], datetime.now(UTC).date())
        input = {
            "customer": customer,
            "item": jsonable({k: item[k] for k in ("item_id", "playbook", "rule", "stage",
                                                   "score", "terms")}),
        }  # fmt: skip
        payload = {
            "workflow": item["workflow"],
            "run_id": run_id,
            "input": input,
            "customer_id": item["customer_id"],
            "assignee": assignee,
            "priority": item["score"],
        }
        command_id = await send_command(
            runtime, who, "StartRun", payload, run_id, command_id=f"queue-start:{run_id}"
        )
        return Accepted(command_id=command_id, run_id=run_id)

    @router.post(
        "/v1/queues/{assignee}/items/{item_id}/snooze",
        status_code=202,
        response_model=Accepted,
        operation_id="snooze_queue_item",
    )
    async def snooze_item(
        assignee: str, item_id: UUID, body: SnoozeIn, who: Caller = Depends(caller)
    ) -> Accepted:
        """Take the item off the queue until a time or for a while (`SnoozeQueueItem`); it
        comes back then if the playbooks still recommend it."""
        item = await read(runtime, queues.get_item, who.tenant, assignee, item_id)
        if item is None:
            raise HTTPException(404, f"no item {item_id} in the queue of {assignee!r}")
        external = item["customer_id"]
        payload = {"customer_id": external, "item_id": str(item_id), "until": body.until}
        key = str(customer_id(who.tenant, external))
        command_id = await send_command(runtime, who, "SnoozeQueueItem", payload, key)
        return Accepted(command_id=command_id)

    return router
