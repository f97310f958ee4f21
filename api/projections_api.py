"""How current the read models are, and reads that wait for the caller's own writes.

`GET /v1/projections` shows each projection's position and lag. A read that must see a
write the caller just made sends `X-Heddle-Wait-For-Position: N` (a store position, as
in every event's `position`) or `X-Heddle-Wait-For-Command: ID` (a command it sent),
with `X-Heddle-Wait-Timeout` in seconds: the read waits until every projection holds
that position, answers with the position it read at in `X-Heddle-Position`, or answers
503 when the time is up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response

from api.app import Caller, caller
from domain.commands import receipt_id
from infra.runtime import Heddle
from infra.live import first_and_last_event
from infra.watermark import Progress, ProgressReader

DEFAULT_WAIT = 5.0
MAX_WAIT = 60.0


def progress_view(progress: Progress) -> dict[str, Any]:
    """The answer of `GET /v1/projections`."""
    projections = []
    for name, applied in sorted(progress.applied.items()):
        position = min(applied, progress.consistent)
        projections.append({"name": name, "position": position, "lag": progress.newest - position})
    return {
        "store_position": progress.newest,
        "published_position": progress.published,
        "consistent_position": min(progress.consistent, progress.newest),
        "projections": projections,
    }


def not_caught_up(position: int, target: int, seconds: float) -> str:
    return (
        f"the projections hold position {position}, not {target}, after {seconds:g} s: "
        "retry, or allow longer with X-Heddle-Wait-Timeout"
    )


def projection_routes(heddle: Heddle) -> APIRouter:
    router = APIRouter(tags=["projections"])

    @router.get("/v1/projections")
    async def projections() -> dict[str, Any]:
        """Each projection's position (every event up to it is in the projection) and lag
        (how many positions behind the store's newest event)."""
        async with ProgressReader(heddle) as reader:
            return progress_view(await reader.read())

    return router


def consistent_reads(heddle: Heddle) -> Any:
    """A dependency for read routes: waits for the positions the caller asks for."""

    async def wait(
        request: Request,
        response: Response,
        who: Caller = Depends(caller),
        wait_for_position: int | None = Header(
            default=None,
            alias="X-Heddle-Wait-For-Position",
            ge=0,
            description="GET only: answer once every projection holds this store position.",
        ),
        wait_for_command: str | None = Header(
            default=None,
            alias="X-Heddle-Wait-For-Command",
            min_length=1,
            max_length=200,
            description="GET only: answer once this command is decided and in every projection.",
        ),
        wait_timeout: float = Header(
            default=DEFAULT_WAIT,
            alias="X-Heddle-Wait-Timeout",
            gt=0,
            le=MAX_WAIT,
            description="Seconds to wait for the positions above (default 5, at most 60).",
        ),
    ) -> None:
        if request.method != "GET" or (wait_for_position is None and wait_for_command is None):
            return
        deadline = time.monotonic() + wait_timeout
        async with ProgressReader(heddle) as reader:
            target = wait_for_position or 0
            if wait_for_command is not None:
                target = max(
                    target, await _command_position(heddle, reader, who, wait_for_command, deadline)
                )
            progress = await reader.wait_for(target, max(0.0, deadline - time.monotonic()))
        if progress.consistent < target:
            raise HTTPException(
                503, not_caught_up(progress.consistent, target, wait_timeout), {"Retry-After": "1"}
            )
        response.headers["X-Heddle-Position"] = str(progress.consistent)

    return wait


async def _command_position(
    heddle: Heddle, reader: ProgressReader, who: Caller, command_id: str, deadline: float
) -> int:
    """A position at or after every event the command recorded (its receipt is stored in
    the same transaction as its events, so the store's newest position once the receipt
    exists will do)."""
    receipt = receipt_id(who.tenant, command_id)
    while await first_and_last_event(heddle.store, heddle.reads, receipt) is None:
        if time.monotonic() >= deadline:
            raise HTTPException(
                503,
                f"command {command_id!r} is not decided yet: retry, or allow longer with "
                "X-Heddle-Wait-Timeout",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(0.02)
    return (await reader.read()).newest
