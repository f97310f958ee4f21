"""Documents for `extract` nodes: `POST /v1/documents` stores the request body (its
`Content-Type` says what it is) once per tenant and answers with its id; a node's
`document` names that id; `GET /v1/documents/{id}` says what is stored. See
docs/workflows.md (`extract`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import Field

from api.http.database import Answer, Timestamp
from api.http.dependencies import Caller, Runtime, caller
from api.http.problems import errors
from infra.documents import CONTENT_TYPES, DocumentInvalid

DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "the document's bytes, typed by `Content-Type`",
        "content": {
            kind: {"schema": {"type": "string", "format": "binary"}} for kind in CONTENT_TYPES
        },
    }
}


class DocumentSaved(Answer):
    """A document stored: what nodes name in `document`."""

    document_id: str
    content_type: str
    size: int = Field(description="bytes")
    pages: int | None = Field(description="a PDF's pages")


class Document(DocumentSaved):
    """What Heddle holds of a document (not its content)."""

    uploaded_by: str
    uploaded_at: Timestamp


def routes(runtime: Runtime) -> APIRouter:
    """`POST /v1/documents` and `GET /v1/documents/{document_id}`."""
    router = APIRouter(tags=["documents"])

    @router.post(
        "/v1/documents", status_code=201, response_model=DocumentSaved,
        responses=errors(415, 422), openapi_extra=DOCUMENT_BODY,
    )  # fmt: skip
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

    @router.get("/v1/documents/{document_id}", response_model=Document, responses=errors(404))
    async def get_document(document_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        """What Heddle holds of a document of this tenant (not its content)."""
        found = await runtime.documents.about(who.tenant, document_id)
        if found is None:
            raise HTTPException(404, f"no document {document_id}")
        return found

    return router
