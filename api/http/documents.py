"""Documents for `extract` nodes: `POST /v1/documents` stores the request body (its
`Content-Type` says what it is) once per tenant and answers with its id; a node's
`document` names that id; `GET /v1/documents/{id}` says what is stored. See
docs/workflows.md (`extract`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from api.http.dependencies import Caller, Runtime, caller
from infra.documents import CONTENT_TYPES, DocumentInvalid


def routes(runtime: Runtime) -> APIRouter:
    """`POST /v1/documents` and `GET /v1/documents/{document_id}`."""
    router = APIRouter(tags=["documents"])

    @router.post("/v1/documents", status_code=201)
    async def upload_document(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Store a document (PDF or text: the body, typed by `Content-Type`) for this
        tenant; the same bytes give the same id. 413 over `HEDDLE_DOCUMENT_MAX_BYTES`."""
        content = await request.body()
        if not content:
            raise HTTPException(422, "the document is empty: send its bytes as the body")
        content_type = request.headers.get("content-type", "")
        try:
            return await runtime.documents.save(who.tenant, content_type, content, who.actor)
        except DocumentInvalid as error:
            status = 415 if content_type.split(";")[0].strip() not in CONTENT_TYPES else 422
            raise HTTPException(status, str(error)) from None

    @router.get("/v1/documents/{document_id}")
    async def get_document(document_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        """What Heddle holds of a document of this tenant (not its content)."""
        found = await runtime.documents.about(who.tenant, document_id)
        if found is None:
            raise HTTPException(404, f"no document {document_id}")
        return found

    return router
