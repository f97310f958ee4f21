"""How current the read models are: `GET /v1/projections` shows each projection's
position and lag (reads that wait for a position are `api/http/consistency.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.http.dependencies import Runtime
from infra.watermark import Progress, ProgressReader


class ProjectionProgress(BaseModel):
    """One projection's position and lag."""

    name: str
    position: int = Field(description="every event up to it is in the projection")
    lag: int = Field(description="positions behind the store's newest event")


class ProjectionsProgress(BaseModel):
    """How current the read models are."""

    store_position: int = Field(description="the store's newest event")
    published_position: int = Field(description="every event up to it is on heddle.events")
    consistent_position: int = Field(description="every event up to it is in every projection")
    projections: list[ProjectionProgress]


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


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/projections`."""
    router = APIRouter(tags=["projections"])

    @router.get("/v1/projections", response_model=ProjectionsProgress)
    async def get_projections() -> dict[str, Any]:
        """Each projection's position (every event up to it is in the projection) and lag
        (how many positions behind the store's newest event)."""
        async with ProgressReader(runtime) as reader:
            return progress_view(await reader.read())

    return router
