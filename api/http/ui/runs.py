"""The run pages: the list (filters, cursor pages, refreshed while open), the start form
made from a workflow's input schema, and a run's own page (its graph, timeline, nodes
and controls, kept live by the run's event stream).

Reads are the API's own: the `runs` and `node_attempts` read models through the same
queries, a run's events and state straight from the event store (so a run just started
has its page at once), each as the key may see it (api/http/redaction.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sse_starlette import EventSourceResponse

from api.http.database import json_object, jsonable, read
from api.http.dependencies import Runtime
from api.http.pagination import after, page, run_page
from api.http.redaction import shown_to
from api.http.replay import events_of
from api.http.runs import CONTROLS, RUN_STATUSES
from api.http.send import send_run_command
from api.http.streaming import open_stream
from api.http.streams import run_end
from api.http.ui.forms import by_field, fields_of, values_of
from api.http.ui.graph import layout
from api.http.ui.pages import (
    DECISION_SECONDS,
    PageRoute,
    caught_up,
    form_of,
    outcome,
    render,
    see,
    visitor,
    who,
    writer,
)
from api.http.ui.session import Visitor
from domain.definitions.problems import input_problems
from domain.messages import RunEvent
from domain.runs import TERMINAL_STATUSES
from handlers.replay import (
    ReplayError,
    choose_version,
    diff_runs,
    load_run,
    replay_view,
    run_state,
)
from infra.live import Doorbell
from projections import definitions, node_attempts, run_history
from projections.run_timeline import summarize

PAGE_SIZE = 25
PROJECTION_WAIT = 2.0
"""Seconds a run's page waits for the read models to hold the run's latest event."""
STEERING = ("pause", "resume", "cancel")
"""The controls a run's page offers (the commands of `api.http.runs.CONTROLS`)."""


def routes(runtime: Runtime) -> APIRouter:
    """The run pages (the list and the run's page before the routes with a run id)."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)
    _add_list(router, runtime)
    _add_start(router, runtime)
    _add_run_page(router, runtime)
    _add_commands(router, runtime)
    return router


def _add_list(router: APIRouter, runtime: Runtime) -> None:
    """The runs list and its live rows."""

    async def runs_page(
        you: Visitor = Depends(visitor),
        workflow: str = "",
        status: str = Query(default="", pattern="^(|" + "|".join(RUN_STATUSES) + ")$"),
        parent: str = Query(default="", pattern="^(|[0-9a-fA-F-]{36})$"),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """A page of the visitor's runs, as `GET /v1/runs` reads it, and its filters."""
        keys = ["started_at", "run_id"]
        filters = {
            "status": status or None,
            "workflow": workflow or None,
            "parent_run_id": parent or None,
        }
        rows = await read(
            runtime, run_history.list_runs, you.key.tenant, filters, after(cursor, keys),
            PAGE_SIZE + 1,
        )  # fmt: skip
        return {**page(rows, PAGE_SIZE, keys), "workflow": workflow, "status": status,
                "parent": parent, "live": cursor is None}  # fmt: skip

    @router.get("/ui/runs", response_class=HTMLResponse)
    async def runs(
        request: Request,
        you: Visitor = Depends(visitor),
        found: dict[str, Any] = Depends(runs_page),
    ) -> Response:
        workflows = await read(runtime, definitions.latest_versions, you.key.tenant)
        return render(
            request, "runs.html", you, **found, statuses=RUN_STATUSES,
            workflows=[w["name"] for w in workflows],
        )  # fmt: skip

    @router.get("/ui/runs/rows", response_class=HTMLResponse)
    async def rows(
        request: Request,
        you: Visitor = Depends(visitor),
        found: dict[str, Any] = Depends(runs_page),
    ) -> Response:
        """A page's rows, for the list's live refresh."""
        return render(request, "_run_rows.html", you, **found)


def _add_start(router: APIRouter, runtime: Runtime) -> None:
    """The start form, made from the workflow's input schema."""

    @router.get("/ui/start", response_class=HTMLResponse)
    async def start_form(
        request: Request, you: Visitor = Depends(writer), workflow: str | None = None
    ) -> Response:
        return await start_page(request, you, workflow, {}, {}, [])

    async def start_page(
        request: Request,
        you: Visitor,
        workflow: str | None,
        values: dict[str, str],
        problems: dict[str, str],
        general: list[str],
        status_code: int = 200,
    ) -> Response:
        workflows = await read(runtime, definitions.latest_versions, you.key.tenant)
        spec = await latest_spec(you.key.tenant, workflow) if workflow else None
        return render(
            request, "start.html", you, status_code, workflows=workflows, workflow=workflow,
            spec=spec, fields=fields_of(spec["inputs"]) if spec else [], values=values,
            problems=problems, general=general,
        )  # fmt: skip

    async def latest_spec(tenant: str, workflow: str) -> dict[str, Any]:
        versions = await read(runtime, definitions.versions, tenant, workflow)
        if not versions:
            raise HTTPException(404, f"no workflow {workflow!r}")
        spec: dict[str, Any] = jsonable(versions[-1]["spec"])
        spec.setdefault("inputs", {"type": "object"})
        return spec

    @router.post("/ui/start", response_class=HTMLResponse)
    async def start(
        request: Request, you: Visitor = Depends(writer), form: dict[str, str] = Depends(form_of)
    ) -> Response:
        """Start a run from the form: each problem of the input is shown at its field; a
        run the intake refuses shows why; else the run's page."""
        workflow = form.get("workflow", "")
        spec = await latest_spec(you.key.tenant, workflow)
        fields = fields_of(spec["inputs"])
        values, problems = values_of(fields, spec["inputs"], form)
        schema_problems, general = by_field(input_problems(spec["inputs"], values))
        problems = {**schema_problems, **problems}
        if problems or general:
            return await start_page(request, you, workflow, form, problems, general, 422)
        run_id = str(uuid.uuid4())
        payload = {"workflow": workflow, "run_id": run_id, "input": values}
        sent = await send_run_command(runtime, who(you), "StartRun", payload, run_id)
        decided = await outcome(runtime, you.key.tenant, sent.command_id, DECISION_SECONDS)
        if decided["status"] == "rejected":
            reason = [f"the run was refused: {decided['reason']}"]
            return await start_page(request, you, workflow, form, {}, reason, 422)
        return see(f"/ui/runs/{run_id}?command={sent.command_id}")


def _add_run_page(router: APIRouter, runtime: Runtime) -> None:
    """Two runs compared, a run's page, its live part and its stream."""
    doorbell = Doorbell(runtime.store, runtime.database_url)

    @router.get("/ui/runs/diff", response_class=HTMLResponse)
    async def diff(request: Request, a: UUID, b: UUID, you: Visitor = Depends(visitor)) -> Response:
        """Two runs side by side, node by node, the first divergence first (as
        `GET /v1/runs/diff` compares them)."""
        events_a, events_b = await asyncio.gather(
            events_of(runtime, a, you.key.tenant), events_of(runtime, b, you.key.tenant)
        )
        run_a, run_b = await asyncio.gather(
            asyncio.to_thread(load_run, runtime.store, a),
            asyncio.to_thread(load_run, runtime.store, b),
        )
        compared = diff_runs(events_a, run_state(run_a), events_b, run_state(run_b))
        shown = shown_to(you.key, events_a[0], shown_to(you.key, events_b[0], jsonable(compared)))
        variables = shown["run"]["variables"]
        sides = {
            side: {name: values[side] for name, values in variables["changed"].items()}
            | variables[f"only_{side}"]
            for side in ("a", "b")
        }
        return render(request, "diff.html", you, diff=shown, variables=sides)

    @router.get("/ui/runs/{run_id}", response_class=HTMLResponse)
    async def run(
        request: Request,
        run_id: UUID,
        you: Visitor = Depends(visitor),
        at: int | None = Query(default=None, ge=1),
        command: str | None = Query(default=None, max_length=200),
    ) -> Response:
        context = await run_context(you, run_id, at, command)
        return render(request, "run.html", you, **context)

    @router.get("/ui/runs/{run_id}/live", response_class=HTMLResponse)
    async def live(
        request: Request,
        run_id: UUID,
        you: Visitor = Depends(visitor),
        command: str | None = Query(default=None, max_length=200),
    ) -> Response:
        """The run's page without its frame, for the page's live refresh."""
        context = await run_context(you, run_id, None, command)
        return render(request, "_run.html", you, **context)

    async def run_context(
        you: Visitor, run_id: UUID, at: int | None, command: str | None
    ) -> dict[str, Any]:
        events = await events_of(runtime, run_id, you.key.tenant)
        try:
            version = choose_version(events, at=at)
        except ReplayError as error:
            raise HTTPException(422, str(error)) from None
        state = await asyncio.to_thread(load_run, runtime.store, run_id, version)
        await caught_up(runtime, PROJECTION_WAIT, events[-1]["position"])  # attempts as shown
        view = shown_to(you.key, events[0], json_object(replay_view(events, state, summarize)))
        try:
            attempts = await run_page(
                runtime, who(you), run_id, node_attempts.run_attempts, {}, 500, None
            )
        except HTTPException:  # a run just started may not be in the read model yet
            attempts = {"items": []}
        by_node: dict[str, list[dict[str, Any]]] = {}
        for attempt in shown_to(you.key, events[0], attempts["items"]):
            by_node.setdefault(attempt["node_id"], []).append(attempt)
        shown_events = shown_to(you.key, events[0], events)
        return {
            "run_id": str(run_id),
            "view": view,
            "run": view["state"],
            "graph": layout(state.spec, view["state"]["nodes"], view["state"]["edges"]),
            "attempts": by_node,
            "payloads": {e["aggregate_version"]: e["data"] for e in shown_events},
            "finished": events[-1]["type"]
            in {RunEvent.COMPLETED, RunEvent.FAILED, RunEvent.CANCELLED},
            "replaying": at is not None and version < events[-1]["aggregate_version"],
            "command": await outcome(runtime, you.key.tenant, command) if command else None,
            "forked_from": state.forked_from,
            "controls": STEERING if you.can_write else (),
            "terminal": TERMINAL_STATUSES,
        }

    @router.get("/ui/runs/{run_id}/stream")
    async def stream(
        run_id: UUID,
        you: Visitor = Depends(visitor),
        after_version: int = Query(default=0, ge=0, alias="after"),
    ) -> EventSourceResponse:
        """The run's stream (`GET /v1/runs/{id}/stream`) for the signed-in visitor: the
        browser's EventSource sends the session cookie, never a bearer header."""
        return await open_stream(
            runtime, doorbell, run_id, you.key, f"{after_version}:0", RunEvent.STARTED, "run",
            run_end,
        )  # fmt: skip


def _add_commands(router: APIRouter, runtime: Runtime) -> None:
    """Fork, pause, resume and cancel."""

    @router.post("/ui/runs/{run_id}/fork", response_class=HTMLResponse)
    async def fork(
        run_id: UUID,
        you: Visitor = Depends(writer),
        form: dict[str, str] = Depends(form_of),
    ) -> Response:
        """Fork the run from a node (`ForkRun`), with the node's prompt or model changed
        when the form changed them; the new run's page, or this one's with the refusal."""
        events = await events_of(runtime, run_id, you.key.tenant)
        node_id = form.get("from_node", "")
        node = events[0]["data"]["graph"]["nodes"].get(node_id, {})
        payload: dict[str, Any] = {
            "source_run_id": str(run_id), "from_node": node_id, "run_id": str(uuid.uuid4()),
            "mode": form.get("mode") or "live",
        }  # fmt: skip
        for field, overrides in (("prompt", "prompts"), ("model", "models")):
            if form.get(field) and form[field] != node.get(field):
                payload[overrides] = {node_id: form[field]}
        sent = await send_run_command(runtime, who(you), "ForkRun", payload, payload["run_id"])
        decided = await outcome(runtime, you.key.tenant, sent.command_id, DECISION_SECONDS)
        shown = run_id if decided["status"] == "rejected" else payload["run_id"]
        return see(f"/ui/runs/{shown}?command={sent.command_id}")

    @router.post("/ui/runs/{run_id}/{control}", response_class=HTMLResponse)
    async def steer(
        run_id: UUID,
        control: str,
        you: Visitor = Depends(writer),
        form: dict[str, str] = Depends(form_of),
    ) -> Response:
        """Pause, resume or cancel the run; its page then shows what became of it."""
        if control not in STEERING:
            raise HTTPException(404, f"no control {control!r}")
        await events_of(runtime, run_id, you.key.tenant)  # another tenant's run is a 404
        payload: dict[str, Any] = {"run_id": str(run_id)}
        if control != "resume" and form.get("reason"):
            payload["reason"] = form["reason"]
        sent = await send_run_command(runtime, who(you), CONTROLS[control], payload, str(run_id))
        await outcome(runtime, you.key.tenant, sent.command_id, DECISION_SECONDS)
        return see(f"/ui/runs/{run_id}?command={sent.command_id}")
