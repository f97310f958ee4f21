"""The workflow pages: the tenant's definitions with their versions and content hashes,
one version's YAML and graph, and publishing a new version from pasted YAML with every
validation problem at its path (the checks of `PUT /v1/workflows/{name}`)."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.http.database import jsonable, read
from api.http.dependencies import Runtime
from api.http.ui.graph import layout
from api.http.ui.pages import (
    DECISION_SECONDS,
    PageRoute,
    caught_up,
    form_of,
    render,
    see,
    visitor,
    writer,
)
from api.http.ui.session import Visitor
from api.http.workflows import YamlAlias, load_yaml
from domain.definitions.parsing import parse_definition
from domain.errors import DefinitionInvalid
from projections import definitions


def routes(runtime: Runtime) -> APIRouter:
    """`/ui/workflows`, a workflow's page, and the publish form."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/ui/workflows", response_class=HTMLResponse)
    async def workflow_list(request: Request, you: Visitor = Depends(visitor)) -> Response:
        found = jsonable(await read(runtime, definitions.latest_versions, you.key.tenant))
        return render(request, "workflows.html", you, workflows=found, problems=[], source="")

    @router.get("/ui/workflows/{name}", response_class=HTMLResponse)
    async def workflow(
        request: Request,
        name: str,
        you: Visitor = Depends(visitor),
        version: int | None = Query(default=None, ge=1),
    ) -> Response:
        rows = jsonable(await read(runtime, definitions.versions, you.key.tenant, name))
        if not rows:
            raise HTTPException(404, f"no workflow {name!r}")
        chosen = rows[-1] if version is None else next(
            (r for r in rows if r["version"] == version), None
        )  # fmt: skip
        if chosen is None:
            raise HTTPException(404, f"workflow {name!r} has no version {version}")
        spec = parse_definition(chosen["spec"])
        return render(
            request, "workflow.html", you, name=name, chosen=chosen, versions=rows,
            source=yaml.safe_dump(chosen["spec"], sort_keys=False, allow_unicode=True),
            graph=layout(spec, {}, {}),
        )  # fmt: skip

    @router.post("/ui/workflows", response_class=HTMLResponse)
    async def publish(
        request: Request, you: Visitor = Depends(writer), form: dict[str, str] = Depends(form_of)
    ) -> Response:
        """Publish the pasted YAML as the next version of the workflow it names."""
        source = form.get("source", "")
        problems = []
        document: Any = None
        try:
            document = load_yaml(source.encode())
        except YamlAlias as alias:
            problems = [{"path": alias.path, "message": str(alias)}]
        except yaml.YAMLError as error:
            problems = [{"path": "", "message": f"not YAML: {error}"}]
        if not problems:
            try:
                parse_definition(document, runtime.settings.allowed_hosts)
            except DefinitionInvalid as invalid:
                problems = [{"path": p.path, "message": p.message} for p in invalid.problems]
        if not problems:
            result = await runtime.publish_workflow(document, you.key.tenant, you.key.actor)
            if result["status"] == "accepted":
                published = result["result"]
                await caught_up(runtime, DECISION_SECONDS)
                return see(f"/ui/workflows/{published['workflow']}?version={published['version']}")
            problems = [{"path": "", "message": str(result["reason"])}]
        found = jsonable(await read(runtime, definitions.latest_versions, you.key.tenant))
        return render(
            request, "workflows.html", you, 422, workflows=found, problems=problems, source=source
        )

    return router
