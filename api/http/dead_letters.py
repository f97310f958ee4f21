"""Dead-letter routes (admin scope): what went to `heddle.dlq`, why, and replaying it.

A key sees the dead letters of its own tenant: commands from its topic or that name it,
and events of its aggregates (looked up in the store). A message that names no tenant
Heddle can find (not JSON, an aggregate that does not exist) belongs to the deployment:
the `default` tenant's admin keys see it.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from api.http.dependencies import DEPLOYMENT_TENANT, Caller, Runtime, caller
from api.http.problems import errors
from infra.dead_letters import DeadLetter, read_dead_letters, replay


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class ReplayIn(BaseModel):
    """Which dead letters to publish again: `entries`, or `all` of the caller's."""

    model_config = ConfigDict(extra="forbid")

    entries: list[Entry] = Field(default_factory=list, max_length=10_000)
    all: bool = False


class DeadLetterAbout(BaseModel):
    """Where a dead letter came from, and why it failed."""

    partition: int
    offset: int
    timestamp_ms: int
    error: str
    topic: str = Field(description="the topic it came from")
    original_partition: int | None
    original_offset: int | None
    type: str | None = Field(description="the command's or event's type")
    aggregate_id: str | None
    bytes: int


class DeadLetters(BaseModel):
    """The caller's dead letters, oldest first."""

    dead_letters: list[DeadLetterAbout]


class DeadLetterShown(DeadLetterAbout):
    """A dead letter with its headers and its value."""

    headers: dict[str, str]
    value: Any = Field(description="the message: JSON, or its text")


class Replayed(BaseModel):
    """How many dead letters were published again."""

    replayed: int


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])

    async def visible(who: Caller) -> list[DeadLetter]:
        letters = await read_dead_letters(runtime.settings, runtime.topics.dlq)
        owners = await asyncio.to_thread(lambda: [owner(runtime, letter) for letter in letters])
        mine = who.tenant
        return [
            letter
            for letter, tenant in zip(letters, owners, strict=True)
            if tenant == mine or (tenant is None and mine == DEPLOYMENT_TENANT)
        ]

    @router.get("", response_model=DeadLetters)
    async def list_dead_letters(who: Caller = Depends(caller)) -> dict[str, Any]:
        """The caller's dead letters, oldest first: where each came from and why it failed."""
        return {"dead_letters": [letter.summary() for letter in await visible(who)]}

    @router.get("/{partition}/{offset}", response_model=DeadLetterShown, responses=errors(404))
    async def get_dead_letter(
        partition: int, offset: int, who: Caller = Depends(caller)
    ) -> dict[str, Any]:
        """One dead letter, with its headers and its value."""
        for letter in await visible(who):
            if (letter.partition, letter.offset) == (partition, offset):
                return letter.detail()
        raise HTTPException(404, f"no dead letter {partition}@{offset} of tenant {who.tenant}")

    @router.post("/replay", response_model=Replayed, responses=errors(404, 422))
    async def replay_dead_letters(body: ReplayIn, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Publish dead letters again to the topics they came from (once fixed: a new
        version of the code, a workflow published again)."""
        if not body.all and not body.entries:
            raise HTTPException(422, "name the dead letters to replay (entries), or all: true")
        letters = await visible(who)
        if not body.all:
            wanted = {(e.partition, e.offset) for e in body.entries}
            letters = [x for x in letters if (x.partition, x.offset) in wanted]
            missing = wanted - {(x.partition, x.offset) for x in letters}
            if missing:
                names = ", ".join(f"{p}@{o}" for p, o in sorted(missing))
                raise HTTPException(404, f"no dead letters {names} of tenant {who.tenant}")
        count = await replay(runtime.settings, letters)
        return {"replayed": count}

    return router


def owner(runtime: Runtime, letter: DeadLetter) -> str | None:
    """The tenant a dead letter belongs to, if Heddle can tell: a tenant topic's, else
    the one a command names, else its aggregate's."""
    if (tenant := runtime.topics.tenant_of(letter.original_topic) or letter.tenant()) is not None:
        return tenant
    aggregate_id = letter.aggregate_id()
    if aggregate_id is None:
        return None
    try:
        aggregate: Any = runtime.store.repository.get(UUID(aggregate_id))
    except (AggregateNotFoundError, ValueError):
        return None
    tenant = getattr(aggregate, "tenant", None)
    return tenant if isinstance(tenant, str) else None
