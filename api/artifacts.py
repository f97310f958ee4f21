"""Reads of the `artifacts` read model: the documents runs saved.

`GET /v1/runs/{run_id}/artifacts` lists a run's artifacts (without their content) in the
order they were saved; `GET /v1/artifacts/{artifact_id}` returns one with its content,
and `GET /v1/artifacts/{artifact_id}/content` the content alone, served with its content
type. They follow `GET /v1/runs/{run_id}/attempts`: the caller's tenant only (another
tenant's run or artifact is 404), cursor pagination with `next_cursor`, 400 for a bad
cursor, 422 for a bad parameter.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from api.app import Caller, caller, fetch_rows
from api.projections_api import consistent_reads
from api.reads import run_rows
from infra.runtime import Heddle
from infra.store import dumps
from projections import artifacts

FIELDS = [c for c in artifacts.COLUMNS if c not in ("tenant", "content", "position")]
"""An artifact's metadata (its `content` comes with `GET /v1/artifacts/{id}`)."""


def artifact_routes(heddle: Heddle) -> APIRouter:
    router = APIRouter(dependencies=[Depends(consistent_reads(heddle))], tags=["artifacts"])

    fetch = partial(fetch_rows, heddle)

    @router.get("/v1/runs/{run_id}/artifacts")
    async def run_artifacts(
        run_id: UUID,
        who: Caller = Depends(caller),
        node_id: str | None = Query(default=None, description="one node's artifacts only"),
        name: str | None = Query(default=None, description="artifacts with this name only"),
        content_type: str | None = None,
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The artifacts the run saved, oldest first, without their content."""
        filters = {"node_id": node_id, "name": name, "content_type": content_type}
        return await run_rows(
            fetch, run_id, who.tenant, "artifacts", FIELDS, "position", filters, limit, cursor
        )

    async def one(artifact_id: UUID, tenant: str) -> dict[str, Any]:
        rows = await fetch(
            f"SELECT {', '.join(FIELDS)}, content FROM artifacts"
            " WHERE artifact_id = %s AND tenant = %s",
            [artifact_id, tenant],
        )
        if not rows:
            raise HTTPException(404, f"no artifact {artifact_id}")
        return rows[0]

    @router.get("/v1/artifacts/{artifact_id}")
    async def get_artifact(artifact_id: UUID, who: Caller = Depends(caller)) -> dict[str, Any]:
        """An artifact's metadata and its content (text, of type `content_type`)."""
        return json.loads(dumps(await one(artifact_id, who.tenant)))  # type: ignore[no-any-return]

    @router.get("/v1/artifacts/{artifact_id}/content")
    async def get_artifact_content(artifact_id: UUID, who: Caller = Depends(caller)) -> Response:
        """The artifact's content alone, served with its content type."""
        row = await one(artifact_id, who.tenant)
        return Response(
            row["content"].encode(),
            media_type=row["content_type"],
            headers={"Content-Disposition": f'inline; filename="{_ascii(row["name"])}"'},
        )

    return router


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
