"""Routes that send one command about a run: the payload is checked here (422 with the
path of each problem) and published to `heddle.commands`, keyed by the run id; what
became of it is at `/v1/commands/{command_id}`."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from api.app import Accepted, Caller
from domain.commands import COMMAND_TYPES, CommandEnvelope
from infra.runtime import Heddle


async def send_command(
    heddle: Heddle, type_: str, payload: dict[str, Any], run_id: str, who: Caller
) -> Accepted:
    """Publish a `type_` command for `run_id`; 422 lists every problem of the payload."""
    try:
        COMMAND_TYPES[type_].model_validate(payload)
    except ValidationError as error:
        problems = [
            {"path": ".".join(str(p) for p in item["loc"]), "message": item["msg"]}
            for item in error.errors()
        ]
        raise HTTPException(422, problems) from None
    envelope = CommandEnvelope(
        command_id=str(uuid.uuid4()), type=type_, tenant=who.tenant, actor=who.actor,
        payload=payload,
    )
    await heddle.send_command(envelope, run_id)
    return Accepted(command_id=envelope.command_id, run_id=run_id)
