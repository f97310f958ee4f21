"""Tasks for people: the work queue and the commands that act on a task.

`GET /v1/tasks` is the work queue (the `tasks` read model, ordered by the score that
`projections/tasks.py` documents); the POST routes send `CompleteTask` and
`ReassignTask` (see docs/commands.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query

from api.http.database import jsonable, read
from api.http.dependencies import Caller, Runtime, caller
from api.http.send import Accepted, send_run_command
from projections import tasks

TASK_COMMANDS = {
    "complete": ("CompleteTask", "`decision` (approve|reject) for an approval, `input` for a "
                 "form; `comment`"),
    "reassign": ("ReassignTask", "any of `assignee`, `role`, `priority`; and a `reason`"),
}  # fmt: skip
"""The commands about a task, by the last segment of their route, with their body's help."""


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/tasks` and `POST /v1/runs/{run_id}/tasks/{task}/complete|reassign`."""
    router = APIRouter(tags=["tasks"])

    @router.get("/v1/tasks")
    async def work_queue(
        who: Caller = Depends(caller),
        status: Literal["open", "completed", "cancelled", "skipped"] = "open",
        assignee: str | None = Query(default=None, description="tasks given to this person"),
        role: str | None = Query(default=None, description="tasks for this role"),
        run_id: UUID | None = None,
        limit: int = Query(default=50, ge=1, le=500),
    ) -> dict[str, Any]:
        """Tasks of the caller's tenant, highest score first (open ones; the others
        newest first), with their score."""
        filters = {"assignee": assignee, "role": role, "run_id": run_id}
        found = await read(runtime, tasks.work_queue, who.tenant, status, filters, limit)
        return {"items": jsonable(found)}

    for action, (command, body_help) in TASK_COMMANDS.items():
        router.add_api_route(
            f"/v1/runs/{{run_id}}/tasks/{{task}}/{action}", _for_task(runtime, command, body_help),
            methods=["POST"], status_code=202, response_model=Accepted,
            summary=f"{action.capitalize()} a task ({command})",
        )  # fmt: skip
    return router


def _for_task(runtime: Runtime, command: str, body_help: str) -> Callable[..., Awaitable[Accepted]]:
    async def act(
        run_id: UUID,
        task: str,
        body: dict[str, Any] = Body(description=body_help),
        who: Caller = Depends(caller),
    ) -> Accepted:
        payload = {**body, "run_id": str(run_id), "task": task}
        return await send_run_command(runtime, who, command, payload, str(run_id))

    act.__doc__ = f"Publishes `{command}` for the run's task."
    return act
