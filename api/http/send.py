"""The one way the API sends a command: `send_command` builds its envelope (the caller's
tenant and actor, a fresh command id unless one is given) and publishes it to
`heddle.commands` under a key that keeps one aggregate's commands in order; what became
of it is at `/v1/commands/{command_id}`."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, ValidationError

from api.http.dependencies import Caller, Runtime
from domain.commands import COMMAND_TYPES
from domain.messages import CommandEnvelope
from infra.faults import Unavailable
from infra.runtime import MessageTooLarge


class Accepted(BaseModel):
    """The answer to a command sent: its id, `pending` until the intake decides."""

    command_id: str
    status: str = "pending"
    run_id: str | None = None


def snake_case(command: str) -> str:
    """A command's name as an operation id: `PauseRun` is `pause_run`."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in command).lstrip("_")


async def send_command(
    runtime: Runtime,
    who: Caller,
    type_: str,
    payload: dict[str, Any],
    key: str,
    command_id: str | None = None,
    correlation_id: str | None = None,
) -> str:
    """Publish a `type_` command from `who`, keyed by `key`; returns its command id. 422
    for a payload the envelope refuses (one nested too deeply); 503 when the broker does
    not take it in time; 413 for one too large for the broker."""
    try:
        envelope = CommandEnvelope(
            command_id=command_id or str(uuid.uuid4()),
            type=type_,
            tenant=who.tenant,
            actor=who.actor,
            correlation_id=correlation_id,
            payload=payload,
        )
    except ValidationError as error:
        raise HTTPException(422, problems_of(error)) from None
    try:
        async with asyncio.timeout(runtime.settings.publish_timeout_seconds):
            await runtime.send_command(envelope, key)
    except MessageTooLarge as error:
        raise HTTPException(413, str(error)) from None
    except TimeoutError:
        detail = (
            "Kafka did not take the command in time; it may still be delivered when Kafka is"
            f" back: see /v1/commands/{envelope.command_id}, or send it again with the same"
            " command id"
        )
        raise Unavailable("kafka", detail, command_id=envelope.command_id) from None
    return envelope.command_id


async def send_run_command(
    runtime: Runtime, who: Caller, type_: str, payload: dict[str, Any], run_id: str
) -> Accepted:
    """Publish a `type_` command about `run_id`; 422 lists every problem of the payload
    (the path of each), before anything is sent."""
    try:
        COMMAND_TYPES[type_].model_validate(payload)
    except ValidationError as error:
        raise HTTPException(422, problems_of(error)) from None
    command_id = await send_command(runtime, who, type_, payload, run_id)
    return Accepted(command_id=command_id, run_id=run_id)


def problems_of(error: ValidationError) -> list[dict[str, str]]:
    """Each problem of a validation error, with its path."""
    return [
        {"path": ".".join(str(p) for p in item["loc"]), "message": item["msg"]}
        for item in error.errors()
    ]
