"""Reads of the `artifacts` read model: the documents runs saved.

`GET /v1/runs/{run_id}/artifacts` lists a run's artifacts (without their content) in the
order they were saved; `GET /v1/artifacts/{artifact_id}` returns one with its content,
and `GET /v1/artifacts/{artifact_id}/content` the content alone, served with its content
type. Content is what a model or a template made, so a browser must not run it: it comes
with `nosniff` and a sandboxing `Content-Security-Policy`, and anything but plain text,
JSON, CSV and images (HTML, SVG, XML, scripts...) as an attachment. They follow
`GET /v1/runs/{run_id}/attempts`: the caller's tenant only (another tenant's run or
artifact is 404), cursor pagination with `next_cursor`, 400 for a bad cursor, 422 for a
bad parameter.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from api.http.consistency import consistent_reads
from api.http.database import Answer, Timestamp, json_object, read
from api.http.dependencies import Caller, Runtime, caller
from api.http.pagination import Page, run_page
from api.http.problems import errors
from projections import artifacts

INLINE_TYPES = frozenset(
    {"text/plain", "text/markdown", "text/csv", "application/json"}
    | {"image/png", "image/jpeg", "image/gif", "image/webp"}
)
"""Content types shown in the browser; every other type is served as an attachment."""
SANDBOX = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the content, with its content type",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class ArtifactAbout(Answer):
    """What a run saved (an entry or exit action's `document`)."""

    artifact_id: str
    run_id: str
    workflow: str
    node_id: str
    attempt: int
    action: str
    name: str
    content_type: str
    size: int
    sha256: str
    created_at: Timestamp


class ArtifactListed(ArtifactAbout):
    """An artifact in a run's list, without its content."""

    position: int


class Artifact(ArtifactAbout):
    """An artifact with its content."""

    content: str


def routes(runtime: Runtime) -> APIRouter:
    """A run's artifacts, and one artifact with or as its content."""
    router = APIRouter(dependencies=[Depends(consistent_reads(runtime))], tags=["artifacts"])

    @router.get(
        "/v1/runs/{run_id}/artifacts", response_model=Page[ArtifactListed],
        responses=errors(400, 404),
    )  # fmt: skip
    async def list_run_artifacts(
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
        return await run_page(runtime, who, run_id, artifacts.run_artifacts, filters, limit, cursor)

    async def one(artifact_id: UUID, tenant: str) -> dict[str, Any]:
        found = await read(runtime, artifacts.get_artifact, artifact_id, tenant)
        if found is None:
            raise HTTPException(404, f"no artifact {artifact_id}")
        return found

    @router.get("/v1/artifacts/{artifact_id}", response_model=Artifact, responses=errors(404))
    async def get_artifact(artifact_id: UUID, who: Caller = Depends(caller)) -> dict[str, Any]:
        """An artifact's metadata and its content (text, of type `content_type`)."""
        return json_object(await one(artifact_id, who.tenant))

    @router.get(
        "/v1/artifacts/{artifact_id}/content", response_class=Response,
        responses={**CONTENT, **errors(404)},
    )  # fmt: skip
    async def get_artifact_content(artifact_id: UUID, who: Caller = Depends(caller)) -> Response:
        """The artifact's content alone, served with its content type."""
        row = await one(artifact_id, who.tenant)
        media_type = row["content_type"].split(";")[0].strip().lower()
        disposition = "inline" if media_type in INLINE_TYPES else "attachment"
        return Response(
            row["content"].encode(),
            media_type=row["content_type"],
            headers={
                "Content-Disposition": f'{disposition}; filename="{_ascii(row["name"])}"',
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": SANDBOX,
            },
        )

    return router


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
