"""Tasks for people and the commands that steer a running run.

`GET /v1/tasks` is the work queue (the `tasks` read model, ordered by the score that
`projections/tasks.py` documents); the POST routes send `CompleteTask`, `ReassignTask`,
`PauseRun`, `ResumeRun` and `CancelRun` (see docs/commands.md).
"""

from __future__ import annotations

import json
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query
from psycopg.rows import dict_row

from api.app import Accepted, Caller, caller
from api.commands import send_command
from infra.runtime import Heddle
from infra.store import dumps
from projections.tasks import SCORE

TASK_COMMANDS = {
    "complete": ("CompleteTask", "`decision` (approve|reject) for an approval, `input` for a "
                 "form; `comment`"),
    "reassign": ("ReassignTask", "any of `assignee`, `role`, `priority`; and a `reason`"),
}
CONTROLS = {
    "pause": "PauseRun",
    "resume": "ResumeRun",
    "cancel": "CancelRun",
    "variables": "SetVariables",
}


def task_routes(heddle: Heddle) -> APIRouter:
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
        where, params = ["tenant = %s", "status = %s"], [who.tenant, status]
        for column, value in (("assignee", assignee), ("role", role), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        order = "score DESC, created_at" if status == "open" else "updated_at DESC"
        query = (
            f"SELECT *, round({SCORE}::numeric, 2)::float AS score FROM tasks"
            f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s"
        )
        async with heddle.reads.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, [*params, limit])
            rows = await cur.fetchall()
        return {"items": [json.loads(dumps(row)) for row in rows]}

    for action, (command, body_help) in TASK_COMMANDS.items():
        router.add_api_route(
            f"/v1/runs/{{run_id}}/tasks/{{task}}/{action}", _for_task(heddle, command, body_help),
            methods=["POST"], status_code=202, response_model=Accepted,
            summary=f"{action.capitalize()} a task ({command})",
        )
    for control, command in CONTROLS.items():
        router.add_api_route(
            f"/v1/runs/{{run_id}}/{control}", _steer(heddle, command), methods=["POST"],
            status_code=202, response_model=Accepted, tags=["runs"],
            summary=f"{control.capitalize()} a run ({command})",
        )

    return router


def _steer(heddle: Heddle, command: str) -> Any:
    async def steer(
        run_id: UUID,
        body: dict[str, Any] = Body(default={}, description="`reason` (pause and cancel)"),
        who: Caller = Depends(caller),
    ) -> Accepted:
        payload = {**body, "run_id": str(run_id)}
        return await send_command(heddle, command, payload, str(run_id), who)

    steer.__doc__ = f"Publishes `{command}` for the run."
    return steer


def _for_task(heddle: Heddle, command: str, body_help: str) -> Any:
    async def act(
        run_id: UUID,
        task: str,
        body: dict[str, Any] = Body(description=body_help),
        who: Caller = Depends(caller),
    ) -> Accepted:
        payload = {**body, "run_id": str(run_id), "task": task}
        return await send_command(heddle, command, payload, str(run_id), who)

    act.__doc__ = f"Publishes `{command}` for the run's task."
    return act
