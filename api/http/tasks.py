"""Tasks for people: the work queue and the commands that act on a task.

`GET /v1/tasks` is the work queue (the `tasks` read model, ordered by the score that
`projections/tasks.py` documents); the POST routes send `CompleteTask` and
`ReassignTask` (see docs/commands.md), from the task's assignee or a key in its role only
(docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from pydantic import Field

from api.http.database import Answer, Timestamp, read
from api.http.dependencies import Caller, Runtime, api_key, caller
from api.http.pagination import Page, after, page
from api.http.problems import errors
from api.http.send import Accepted, send_run_command, snake_case
from domain.errors import TaskForbidden
from domain.messages import RunEvent
from handlers.replay import load_run
from infra.keys import ApiKey
from projections import tasks

TASK_COMMANDS = {
    "complete": ("CompleteTask", "`decision` (approve|reject) for an approval, `input` for a "
                 "form; `comment`"),
    "reassign": ("ReassignTask", "any of `assignee`, `role`, `priority`; and a `reason`"),
}  # fmt: skip
"""The commands about a task, by the last segment of their route, with their body's help."""


class Task(Answer):
    """A task for a person, with its score in the work queue."""

    run_id: str
    task_id: str
    tenant: str
    type: str = Field(description="approval | input")
    title: str
    instructions: str
    assignee: str | None
    role: str | None
    priority: int
    value: float | None
    due_at: Timestamp | None
    form: dict[str, Any]
    status: str
    created_at: Timestamp
    updated_at: Timestamp
    completed_by: str | None
    output: Any
    version: int
    score: float = Field(description="the work queue's order (projections/tasks.py)")
    scored_at: Timestamp = Field(description="the time the score is for (a page's first)")


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/tasks` and `POST /v1/runs/{run_id}/tasks/{task}/complete|reassign`."""
    router = APIRouter(tags=["tasks"])

    @router.get("/v1/tasks", response_model=Page[Task], responses=errors(400))
    async def list_tasks(
        who: Caller = Depends(caller),
        status: Literal["open", "completed", "cancelled", "skipped"] = "open",
        assignee: str | None = Query(default=None, description="tasks given to this person"),
        role: str | None = Query(default=None, description="tasks for this role"),
        run_id: UUID | None = None,
        limit: int = Query(default=50, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Tasks of the caller's tenant, highest score first (open ones; the others
        newest first), with their score, with cursor pagination (`next_cursor`): every
        page is scored at the time of the first, so no task moves between pages."""
        filters = {"assignee": assignee, "role": role, "run_id": run_id}
        keys = ["scored_at", *tasks.QUEUE_ORDER["open" if status == "open" else "done"][0]]
        scored_at, *start = after(cursor, keys) or [None]
        found = await read(
            runtime, tasks.work_queue, who.tenant, status, filters, limit + 1,
            scored_at, start or None,
        )  # fmt: skip
        return page(found, limit, keys)

    for action, (command, body_help) in TASK_COMMANDS.items():
        router.add_api_route(
            f"/v1/runs/{{run_id}}/tasks/{{task}}/{action}", _for_task(runtime, command, body_help),
            methods=["POST"], status_code=202, response_model=Accepted, responses=errors(403),
            summary=f"{action.capitalize()} a task ({command})", name=snake_case(command),
        )  # fmt: skip
    return router


async def check_task_access(runtime: Runtime, key: ApiKey, run_id: Any, task: Any) -> None:
    """403 unless `key` may act on the run's task: its assignee (the key's name), a key
    with the task's role, or an admin key. A run or task that is not there is left for
    the intake to reject, with its reason. The run is read from the event store."""
    if key.allows("admin") or not isinstance(task, str):
        return
    try:
        run_uuid = UUID(str(run_id))
    except ValueError:
        return
    events = await asyncio.to_thread(runtime.store.aggregate_events, run_uuid)
    if not events or events[0]["type"] != RunEvent.STARTED:
        return
    # Rebuilt at its latest version from the store, not taken from a cache that may lag.
    last = events[-1]["aggregate_version"]
    run = await asyncio.to_thread(load_run, runtime.store, run_uuid, last)
    if run.tenant != key.tenant:
        return
    try:
        run.check_task_is_for(task, key.actor, key.roles)
    except TaskForbidden as error:
        raise HTTPException(403, str(error)) from None


def _for_task(runtime: Runtime, command: str, body_help: str) -> Callable[..., Awaitable[Accepted]]:
    async def act(
        run_id: UUID,
        task: str,
        body: dict[str, Any] = Body(description=body_help),
        who: Caller = Depends(caller),
        key: ApiKey = Depends(api_key),
    ) -> Accepted:
        await check_task_access(runtime, key, run_id, task)
        payload = {**body, "run_id": str(run_id), "task": task}
        return await send_run_command(runtime, who, command, payload, str(run_id))

    act.__doc__ = f"Publishes `{command}` for the run's task."
    return act
