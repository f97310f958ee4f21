"""Playbooks over HTTP: publish a version (synchronous, like a workflow, so that every
problem comes back at once at its path: 422), list them, read one version. Once a
version is published every customer of the tenant is evaluated again (`EvaluateCustomer`
each, through Kafka like any command)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.http.consistency import consistent_reads
from api.http.database import jsonable, read
from api.http.dependencies import Caller, Runtime, caller
from api.http.problems import errors
from api.http.send import send_command
from api.http.workflows import YAML, YamlAlias, invalid, one_version, read_document
from domain.customers import customer_id
from domain.errors import DefinitionInvalid
from domain.playbooks import parse_playbook
from handlers.commands.customers import published_workflows
from handlers.unit_of_work import UnitOfWork
from projections import customers, definitions, playbooks


class PlaybookPublished(BaseModel):
    playbook: str
    version: int
    evaluating: int = 0
    """Customers sent to be evaluated again."""


class PlaybookSummary(BaseModel):
    name: str
    version: int
    content_hash: str
    published_by: str
    published_at: datetime


class PlaybookList(BaseModel):
    items: list[PlaybookSummary]


class PlaybookVersion(PlaybookSummary):
    spec: dict[str, Any]
    versions: list[int]


PLAYBOOK_BODY = {
    "requestBody": {
        "required": True,
        "description": "the playbook (docs/customers.md), JSON or YAML; `name` may be left out",
        "content": {kind: {"schema": {"type": "object"}} for kind in ("application/json", YAML)},
    }
}


def routes(runtime: Runtime) -> APIRouter:
    """`PUT /v1/playbooks/{name}`, `GET /v1/playbooks` and `GET /v1/playbooks/{name}`."""
    router = APIRouter(tags=["playbooks"], dependencies=[Depends(consistent_reads(runtime))])

    @router.put(
        "/v1/playbooks/{name}",
        response_model=PlaybookPublished,
        operation_id="put_playbook",
        responses=errors(400, 422),
        openapi_extra=PLAYBOOK_BODY,
    )
    async def put_playbook(name: str, request: Request, who: Caller = Depends(caller)) -> Response:
        """Publish a playbook (JSON, or YAML with a YAML content type) as a new version;
        its workflows must be published. Every customer is evaluated again."""
        try:
            document = await read_document(request)
        except YamlAlias as alias:
            return invalid(request, [{"path": alias.path, "message": str(alias)}])
        if isinstance(document, dict):
            if document.get("name", name) != name:
                problem = {"path": "name", "message": f"must be {name!r} (the URL's name)"}
                return invalid(request, [problem])
            document = {"name": name, **document}
        published = await runtime.writer.run(
            published_workflows, UnitOfWork(runtime.store), who.tenant, document
        )
        try:
            parse_playbook(document, published)
        except DefinitionInvalid as error:
            found = [{"path": p.path, "message": p.message} for p in error.problems]
            return invalid(request, found)
        result = await runtime.decide("PublishPlaybook", {"playbook": document}, who.tenant,
                                      who.actor)  # fmt: skip
        if result["status"] != "accepted":
            return invalid(request, [{"path": "", "message": result["reason"]}])
        everyone = await read(runtime, customers.customer_ids, who.tenant)
        for external in everyone:
            key = str(customer_id(who.tenant, external))
            await send_command(runtime, who, "EvaluateCustomer", {"customer_id": external}, key)
        answer = PlaybookPublished(**result["result"], evaluating=len(everyone))
        return JSONResponse(answer.model_dump(), status_code=200)

    @router.get("/v1/playbooks", response_model=PlaybookList, operation_id="list_playbooks")
    async def list_playbooks(who: Caller = Depends(caller)) -> dict[str, Any]:
        """Every playbook with its latest version."""
        latest = await read(
            runtime, definitions.latest_versions, who.tenant, table=playbooks.TABLES[0]
        )
        return {"items": jsonable(latest)}

    @router.get("/v1/playbooks/{name}", response_model=PlaybookVersion, operation_id="get_playbook")
    async def get_playbook(
        name: str, who: Caller = Depends(caller), version: int | None = Query(default=None, ge=1)
    ) -> dict[str, Any]:
        """One version of a playbook (the latest by default) and the list of versions."""
        table = playbooks.TABLES[0]
        found = await read(runtime, definitions.versions, who.tenant, name, table)
        return one_version(found, "playbook", name, version)

    return router
