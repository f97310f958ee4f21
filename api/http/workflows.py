"""Workflow definitions over HTTP: publish a version (the API's one synchronous write, so
that an invalid definition gets its problems back at once: 422, with the path of each),
list the workflows, read one version."""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from api.http.consistency import consistent_reads
from api.http.database import Answer, Timestamp, json_object, read
from api.http.dependencies import Caller, Runtime, caller
from api.http.middleware import TOO_DEEP
from api.http.pagination import Page, after, page
from api.http.problems import errors
from api.http.problems import invalid as invalid_problems
from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid
from projections import definitions

YAML = "application/yaml"
DEFINITION = {"$ref": "#/components/schemas/WorkflowSpec"}
"""A definition's schema (the app puts `WorkflowSpec` in the document's components)."""
DEFINITION_BODY = {
    "requestBody": {
        "required": True,
        "description": "the definition (docs/workflows.md); `name` may be left out",
        "content": {kind: {"schema": DEFINITION} for kind in ("application/json", YAML)},
    }
}


class Published(Answer):
    """A version published."""

    workflow: str
    version: int
    content_hash: str = Field(description="the hash of the definition's canonical JSON")


class WorkflowSummary(Answer):
    """A workflow's latest version."""

    name: str
    version: int
    content_hash: str
    published_by: str
    published_at: Timestamp


class WorkflowVersion(WorkflowSummary):
    """One version of a workflow, with its definition."""

    spec: dict[str, Any] = Field(description="the definition as published (`WorkflowSpec`)")
    versions: list[int] = Field(description="every version of the workflow")


def routes(runtime: Runtime) -> APIRouter:
    """`PUT /v1/workflows/{name}`, `GET /v1/workflows` and `GET /v1/workflows/{name}`."""
    router = APIRouter(tags=["workflows"], dependencies=[Depends(consistent_reads(runtime))])

    @router.put(
        "/v1/workflows/{name}", response_model=Published, responses=errors(400, 422),
        openapi_extra=DEFINITION_BODY,
    )  # fmt: skip
    async def publish_workflow(
        name: str, request: Request, who: Caller = Depends(caller)
    ) -> Response:
        """Publish a definition (JSON, or YAML with a YAML content type) as a new version."""
        try:
            document = await read_document(request)
        except YamlAlias as alias:
            return invalid(request, [{"path": alias.path, "message": str(alias)}])
        if isinstance(document, dict) and document.get("name", name) != name:
            return invalid(
                request, [{"path": "name", "message": f"must be {name!r} (the URL's name)"}]
            )
        if isinstance(document, dict):
            document = {"name": name, **document}
        try:
            parse_definition(document, runtime.settings.allowed_hosts)
        except DefinitionInvalid as error:
            return invalid(
                request, [{"path": p.path, "message": p.message} for p in error.problems]
            )
        result = await runtime.publish_workflow(document, who.tenant, who.actor)
        if result["status"] != "accepted":
            return invalid(request, [{"path": "", "message": result["reason"]}])
        return JSONResponse(result["result"], status_code=200)

    @router.get("/v1/workflows", response_model=Page[WorkflowSummary], responses=errors(400))
    async def list_workflows(
        who: Caller = Depends(caller),
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The workflows with their latest versions, by name, with cursor pagination."""
        [name] = after(cursor, ["name"]) or [None]
        found = await read(runtime, definitions.latest_versions, who.tenant, name, limit + 1)
        return page(found, limit, ["name"])

    @router.get("/v1/workflows/{name}", response_model=WorkflowVersion, responses=errors(404))
    async def get_workflow(
        name: str, who: Caller = Depends(caller), version: int | None = Query(default=None, ge=1)
    ) -> dict[str, Any]:
        """One version of a workflow (the latest by default) and the list of versions."""
        rows = await read(runtime, definitions.versions, who.tenant, name)
        return one_version(rows, "workflow", name, version)

    return router


def one_version(
    rows: list[dict[str, Any]], noun: str, name: str, version: int | None
) -> dict[str, Any]:
    """One of the versions `rows` (the latest when `version` is None) and the list of
    version numbers; 404 naming the `noun` when there is no such version."""
    if not rows:
        raise HTTPException(404, f"no {noun} {name!r}")
    chosen = rows[-1] if version is None else next(
        (r for r in rows if r["version"] == version), None
    )  # fmt: skip
    if chosen is None:
        raise HTTPException(404, f"{noun} {name!r} has no version {version}")
    return {"name": name, **json_object(chosen), "versions": [r["version"] for r in rows]}


async def read_document(request: Request) -> Any:
    """The request's definition: YAML with a YAML content type, JSON otherwise; 400 when
    it does not parse, 422 when it nests too deeply to parse."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        if "yaml" in content_type:
            return load_yaml(raw)
        return json.loads(raw)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"cannot parse the definition: {error}") from None
    except RecursionError:
        raise HTTPException(422, TOO_DEEP) from None


class YamlAlias(ValueError):
    """A YAML document repeats a node by an alias (`*name`): refused, since a few bytes of
    aliases can stand for gigabytes (the "billion laughs")."""

    def __init__(self, path: str) -> None:
        super().__init__("YAML aliases (*name, <<: *name) are not accepted: write the value out")
        self.path = path


def load_yaml(raw: bytes) -> Any:
    """A YAML document without aliases (`YamlAlias` at the first one's path)."""
    loader = yaml.SafeLoader(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node, "", set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_aliases(node: yaml.Node, path: str, seen: set[int]) -> None:
    """The composer gives an alias the very node of its anchor: a node met twice is one."""
    if id(node) in seen:
        raise YamlAlias(path)
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            _refuse_aliases(key, path, seen)
            _refuse_aliases(value, f"{path}.{name}" if path else str(name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_aliases(item, f"{path}[{index}]", seen)


def invalid(request: Request, found: list[dict[str, str]]) -> Response:
    """422 with the problems of a definition, each with its path."""
    return invalid_problems(request, found, "the definition")
