"""The work queue page: the tenant's open tasks by score (the `tasks` read model, as
`GET /v1/tasks`), each with the controls the signed-in key may use on it: approve or
reject an approval, fill in a form generated from the task's schema."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.http.database import jsonable, read
from api.http.dependencies import Runtime
from api.http.send import send_run_command
from api.http.tasks import check_task_access
from api.http.ui.forms import fields_of, values_of
from api.http.ui.pages import (
    DECISION_SECONDS,
    PageRoute,
    form_of,
    outcome,
    render,
    see,
    visitor,
    who,
    writer,
)
from api.http.ui.session import Visitor
from projections import tasks

QUEUE_SIZE = 100


def may_act(you: Visitor, task: dict[str, Any]) -> bool:
    """Whether the page offers the task's controls: to its assignee, a key in its role,
    or an admin (as `api.http.tasks.check_task_access` decides), with the write scope."""
    if not you.can_write:
        return False
    if you.is_admin or task["assignee"] == you.key.actor:
        return True
    return task["assignee"] is None and task["role"] in you.key.roles


def routes(runtime: Runtime) -> APIRouter:
    """`/ui/tasks` and the form that completes a task."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/ui/tasks", response_class=HTMLResponse)
    async def work_queue(
        request: Request,
        you: Visitor = Depends(visitor),
        command: str | None = Query(default=None, max_length=200),
    ) -> Response:
        found = jsonable(await read(runtime, tasks.work_queue, you.key.tenant, "open", {},
                                    QUEUE_SIZE))  # fmt: skip
        shown = [
            {**task, "fields": fields_of(task["form"] or {}), "actions": may_act(you, task)}
            for task in found
        ]
        decided = await outcome(runtime, you.key.tenant, command) if command else None
        return render(request, "tasks.html", you, tasks=shown, command=decided)

    @router.post("/ui/tasks/{run_id}/{task}", response_class=HTMLResponse)
    async def complete(
        run_id: UUID,
        task: str,
        you: Visitor = Depends(writer),
        form: dict[str, str] = Depends(form_of),
    ) -> Response:
        """Complete the task (`CompleteTask`): a decision for an approval, the form's
        values otherwise; the queue then shows the command's outcome."""
        await check_task_access(runtime, you.key, run_id, task)
        payload: dict[str, Any] = {"run_id": str(run_id), "task": task,
                                   "comment": form.get("comment", "")}  # fmt: skip
        if form.get("decision"):
            payload["decision"] = form["decision"]
        else:
            schema = await task_form(run_id, task, you.key.tenant)
            payload["input"], _ = values_of(fields_of(schema), schema, form)
        sent = await send_run_command(runtime, who(you), "CompleteTask", payload, str(run_id))
        await outcome(runtime, you.key.tenant, sent.command_id, DECISION_SECONDS)
        return see(f"/ui/tasks?command={sent.command_id}")

    async def task_form(run_id: UUID, task: str, tenant: str) -> dict[str, Any]:
        found = await read(runtime, tasks.work_queue, tenant, "open", {"run_id": run_id}, 50)
        form: dict[str, Any] = next((t["form"] for t in found if t["task_id"] == task), {})
        return form or {}

    return router
