"""Commands over HTTP: publish any command to `heddle.commands`, and read its outcome."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from api.http.consistency import consistent_reads
from api.http.dependencies import Caller, Runtime, api_key, caller, require_scope
from api.http.problems import errors
from api.http.send import Accepted, send_command
from api.http.tasks import TASK_COMMANDS, check_task_access
from domain.commands import ADMIN_COMMANDS, INTERNAL_COMMANDS, receipt_id
from handlers.unit_of_work import UnitOfWork
from infra.keys import ApiKey


class CommandIn(BaseModel):
    """A command envelope; `command_id` is generated when missing."""

    model_config = ConfigDict(extra="forbid")

    command_id: str | None = Field(default=None, min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = Field(default=None, max_length=200)


class CommandOutcome(BaseModel):
    """What became of a command: `pending` until the intake has decided (then only
    `command_id` and `status` are there), else `accepted` or `rejected` with its reason."""

    command_id: str
    status: Literal["pending", "accepted", "rejected"]
    type: str | None = None
    tenant: str | None = None
    correlation_id: str | None = None
    reason: str | None = Field(default=None, description="why it was rejected")
    result: dict[str, Any] | None = Field(default=None, description="what it made (ids)")


def routes(runtime: Runtime) -> APIRouter:
    """`POST /v1/commands` and `GET /v1/commands/{command_id}`."""
    router = APIRouter(tags=["commands"], dependencies=[Depends(consistent_reads(runtime))])

    @router.post("/v1/commands", status_code=202, response_model=Accepted, responses=errors(403))
    async def post_command(
        body: CommandIn, who: Caller = Depends(caller), key_of: ApiKey = Depends(api_key)
    ) -> Accepted:
        """Publish a command to `heddle.commands`; its outcome is at /v1/commands/{id}.
        Commands only Heddle sends are refused (403); admin commands need an admin key."""
        if body.type in INTERNAL_COMMANDS:
            raise HTTPException(
                403,
                f"{body.type} is sent by Heddle itself ({INTERNAL_COMMANDS[body.type]}), "
                "never through the API",
            )
        if body.type in ADMIN_COMMANDS:
            require_scope(key_of, "admin")
        if body.type in {command for command, _ in TASK_COMMANDS.values()}:
            await check_task_access(
                runtime, key_of, body.payload.get("run_id"), body.payload.get("task")
            )
        command_id = body.command_id or str(uuid.uuid4())
        key = str(body.payload.get("run_id") or body.payload.get("thread_id") or command_id)
        sent = await send_command(
            runtime, who, body.type, body.payload, key, command_id, body.correlation_id
        )
        return Accepted(command_id=sent)

    @router.get(
        "/v1/commands/{command_id}", response_model=CommandOutcome,
        response_model_exclude_unset=True,
    )  # fmt: skip
    async def get_command(command_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        """`pending` until the intake has decided; then `accepted` or `rejected` with why."""
        receipt = await runtime.writer.run(
            UnitOfWork(runtime.store).get, receipt_id(who.tenant, command_id)
        )
        if receipt is None:
            return {"command_id": command_id, "status": "pending"}
        return dict(receipt.as_result())

    return router
