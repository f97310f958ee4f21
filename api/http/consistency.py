"""Reads that wait for the caller's own writes.

A read that must see a write the caller just made sends `X-Heddle-Wait-For-Position: N`
(a store position, as in every event's `position`) or `X-Heddle-Wait-For-Command: ID` (a
command it sent), with `X-Heddle-Wait-Timeout` in seconds: the read waits until every
projection holds that position, answers with the position it read at in
`X-Heddle-Position`, or answers 503 when the time is up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fastapi import Depends, Header, HTTPException, Request, Response

from api.http.dependencies import Caller, Runtime, caller
from domain.commands import receipt_id
from infra.live import first_and_last_event
from infra.watermark import ProgressReader

DEFAULT_WAIT = 5.0
MAX_WAIT = 60.0

Wait = Callable[..., Awaitable[None]]


def not_caught_up(position: int, target: int, seconds: float) -> str:
    """Why a read that waited answers 503."""
    return (
        f"the projections hold position {position}, not {target}, after {seconds:g} s: "
        "retry, or allow longer with X-Heddle-Wait-Timeout"
    )


def consistent_reads(runtime: Runtime) -> Wait:
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
        async with ProgressReader(runtime) as reader:
            target = wait_for_position or 0
            if wait_for_command is not None:
                decided = await command_position(runtime, reader, who, wait_for_command, deadline)
                target = max(target, decided)
            progress = await reader.wait_for(target, max(0.0, deadline - time.monotonic()))
        if progress.consistent < target:
            raise HTTPException(
                503, not_caught_up(progress.consistent, target, wait_timeout), {"Retry-After": "1"}
            )
        response.headers["X-Heddle-Position"] = str(progress.consistent)

    return wait


async def command_position(
    runtime: Runtime, reader: ProgressReader, who: Caller, command_id: str, deadline: float
) -> int:
    """A position at or after every event the command recorded (its receipt is stored in
    the same transaction as its events, so the store's newest position once the receipt
    exists will do)."""
    receipt = receipt_id(who.tenant, command_id)
    while await first_and_last_event(runtime.store, runtime.reads, receipt) is None:
        if time.monotonic() >= deadline:
            raise HTTPException(
                503,
                f"command {command_id!r} is not decided yet: retry, or allow longer with "
                "X-Heddle-Wait-Timeout",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(0.02)
    return (await reader.read()).newest
