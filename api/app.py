"""The HTTP API: commands in (published to Kafka), read models out.

Writes go to `heddle.commands` like any other client's; the only synchronous write is
publishing a workflow definition, so that an invalid one gets its problems back at
once (422, with the path of each). Reads come from the projections' tables, except a
run's events, which come straight from the event store. Every route but the health
checks needs an API key, which decides the caller's tenant, actor and scopes
(docs/security.md).
"""

from __future__ import annotations

import base64
import json
import uuid
from functools import partial
from typing import Any
from uuid import UUID

import yaml
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.commands import ADMIN_COMMANDS, CommandEnvelope, receipt_id
from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid
from handlers.unit_of_work import UnitOfWork
from infra.bootstrap import Heddle
from infra.keys import ApiKey, ApiKeys, KeyRefused
from infra.store import dumps
from projections.run_history import in_graph_order

TENANT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RUN_STATUSES = ("pending", "running", "paused", "waiting", "completed", "failed", "cancelled")


class Caller(BaseModel):
    """Who is calling: the tenant whose data they see, and the actor recorded in events."""

    tenant: str
    actor: str


bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`heddle keys create`; `heddle up` writes one to .heddle/admin.key).",
)
SEND_A_KEY = (
    "send an API key as `Authorization: Bearer <key>` (the heddle CLI sends HEDDLE_API_KEY, "
    "or the admin.key that `heddle up` writes to its data directory; make keys with "
    "`heddle keys create`)"
)


async def api_key(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> ApiKey:
    """The caller's key, from `Authorization: Bearer <key>`; 401 saying what to send."""
    if credentials is None:
        raise _unauthorized(f"missing API key: {SEND_A_KEY}")
    try:
        return await request.app.state.keys.verify(credentials.credentials)  # type: ignore[no-any-return]
    except KeyRefused as error:
        raise _unauthorized(f"{error}: {SEND_A_KEY}") from None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def caller(key: ApiKey = Depends(api_key)) -> Caller:
    """The tenant and actor of the caller's key (its name, or `key <id>`)."""
    return Caller(tenant=key.tenant, actor=key.actor)


def _require(key: ApiKey, scope: str) -> None:
    if not key.allows(scope):
        raise HTTPException(
            403, f"this API key lacks the {scope!r} scope (it has: {', '.join(key.scopes)})"
        )


async def read_or_write_scope(request: Request, key: ApiKey = Depends(api_key)) -> None:
    """GET needs the `read` scope, anything else `write`."""
    _require(key, "read" if request.method in ("GET", "HEAD") else "write")


async def admin_scope(key: ApiKey = Depends(api_key)) -> None:
    """Keys and credentials need the `admin` scope."""
    _require(key, "admin")


class CommandIn(BaseModel):
    """A command envelope; `command_id` is generated when missing."""

    model_config = ConfigDict(extra="forbid")

    command_id: str | None = Field(default=None, min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = Field(default=None, max_length=200)


class StartRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=128)
    version: int | None = Field(default=None, ge=1)
    run_id: UUID | None = None
    input: dict[str, Any] = Field(default_factory=dict)


class Accepted(BaseModel):
    command_id: str
    status: str = "pending"
    run_id: str | None = None


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, declared or streamed; `paths`
    gives some paths a limit of their own, with the setting that raises it."""

    def __init__(
        self, app: ASGIApp, limit: int, paths: dict[str, tuple[int, str]] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.paths = paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.paths.get(scope["path"], (self.limit, "HEDDLE_MAX_BODY_BYTES"))
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and int(declared) > limit:
            await self._too_large(send, limit, setting)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send, limit, setting)

    async def _too_large(self, send: Send, limit: int, setting: str) -> None:
        detail = f"request body larger than {limit} bytes (the limit is {setting})"
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(heddle: Heddle) -> FastAPI:
    """The API for a running Heddle (its lifespan belongs to whoever started Heddle).

    Every route but the health checks needs an API key (docs/security.md): GETs the
    `read` scope, other methods `write`; keys, credentials, provider checks and the
    tenant's AI mode `admin`."""
    app = FastAPI(
        title="Heddle",
        version="0.1.0",
        description="Event-sourced LLM workflows: commands in, read models out.",
    )
    app.state.keys = ApiKeys(heddle.reads)
    documents = {"/v1/documents": (heddle.settings.document_max_bytes, "HEDDLE_DOCUMENT_MAX_BYTES")}
    app.add_middleware(BodyLimit, limit=heddle.settings.max_body_bytes, paths=documents)
    from api.artifacts import artifact_routes
    from api.asyncapi import asyncapi_routes  # here: those modules import this one
    from api.credentials import credential_routes
    from api.documents import document_routes
    from api.keys import key_routes
    from api.projections_api import consistent_reads, projection_routes
    from api.providers import provider_routes
    from api.reads import read_routes
    from api.replay import replay_routes
    from api.streams import stream_routes
    from api.tasks import task_routes
    from api.threads import tenant_routes, thread_routes

    app.include_router(_health_routes(heddle))
    by_method, admin = [Depends(read_or_write_scope)], [Depends(admin_scope)]
    for router in (
        replay_routes(heddle),  # first: /v1/runs/diff is not a run id
        task_routes(heddle),
        document_routes(heddle),
        read_routes(heddle),
        artifact_routes(heddle),
        stream_routes(heddle),
        thread_routes(heddle),
        projection_routes(heddle),
        asyncapi_routes(heddle.topics, heddle.bootstrap_servers),
    ):
        app.include_router(router, dependencies=by_method)
    waits = Depends(consistent_reads(heddle))
    app.include_router(_routes(heddle), dependencies=[*by_method, waits])
    app.include_router(credential_routes(heddle), dependencies=admin)
    app.include_router(key_routes(heddle), dependencies=admin)
    app.include_router(provider_routes(heddle), dependencies=admin)  # real calls cost money
    app.include_router(tenant_routes(heddle), dependencies=admin)
    return app


def _health_routes(heddle: Heddle) -> APIRouter:
    """Health checks, open to anyone (load balancers carry no keys)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await fetch_rows(heddle, "SELECT 1", [])
            checks["postgres"] = "ok"
        except Exception as error:
            checks["postgres"] = f"unavailable: {type(error).__name__}"
        try:
            await heddle.broker.ping(timeout=2.0)
            checks["kafka"] = "ok"
        except Exception as error:
            checks["kafka"] = f"unavailable: {type(error).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return router


async def fetch_rows(heddle: Heddle, query: str, params: list[Any]) -> list[dict[str, Any]]:
    """The rows of a read-model query, as dicts."""
    async with heddle.reads.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


def _routes(heddle: Heddle) -> APIRouter:
    router = APIRouter()

    fetch = partial(fetch_rows, heddle)

    @router.post("/v1/commands", status_code=202, response_model=Accepted, tags=["commands"])
    async def post_command(
        body: CommandIn, who: Caller = Depends(caller), key_of: ApiKey = Depends(api_key)
    ) -> Accepted:
        """Publish any command to `heddle.commands`; its outcome is at /v1/commands/{id}."""
        envelope = CommandEnvelope(
            command_id=body.command_id or str(uuid.uuid4()),
            type=body.type,
            tenant=who.tenant,
            actor=who.actor,
            correlation_id=body.correlation_id,
            payload=body.payload,
        )
        if body.type in ADMIN_COMMANDS:
            _require(key_of, "admin")
        key = str(
            body.payload.get("run_id") or body.payload.get("thread_id") or envelope.command_id
        )
        await heddle.send_command(envelope, key)
        return Accepted(command_id=envelope.command_id)

    @router.post("/v1/runs", status_code=202, response_model=Accepted, tags=["runs"])
    async def start_run(body: StartRunIn, who: Caller = Depends(caller)) -> Accepted:
        """Start a run: publishes a `StartRun` command with a fresh run id."""
        run_id = body.run_id or uuid.uuid4()
        envelope = CommandEnvelope(
            command_id=str(uuid.uuid4()),
            type="StartRun",
            tenant=who.tenant,
            actor=who.actor,
            payload={**body.model_dump(mode="json", exclude_none=True), "run_id": str(run_id)},
        )
        await heddle.send_command(envelope, str(run_id))
        return Accepted(command_id=envelope.command_id, run_id=str(run_id))

    @router.get("/v1/commands/{command_id}", tags=["commands"])
    async def get_command(command_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        """`pending` until the intake has decided; then `accepted` or `rejected` with why."""
        receipt = await heddle.writer.run(
            UnitOfWork(heddle.store).get, receipt_id(who.tenant, command_id)
        )
        if receipt is None:
            return {"command_id": command_id, "status": "pending"}
        return dict(receipt.as_result())

    @router.get("/v1/runs", tags=["runs"])
    async def list_runs(
        who: Caller = Depends(caller),
        status: str | None = Query(default=None, pattern="^(" + "|".join(RUN_STATUSES) + ")$"),
        workflow: str | None = None,
        parent: UUID | None = Query(default=None, description="only the child runs of this run"),
        limit: int = Query(default=50, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Runs, newest first, with cursor pagination (`next_cursor`)."""
        where, params = ["tenant = %s"], [who.tenant]
        if status:
            where.append("status = %s")
            params.append(status)
        if workflow:
            where.append("workflow = %s")
            params.append(workflow)
        if parent:
            where.append("parent_run_id = %s")
            params.append(parent)
        if cursor:
            started_at, run_id = _decode_cursor(cursor)
            where.append("(started_at, run_id) < (%s, %s)")
            params += [started_at, run_id]
        rows = await fetch(
            "SELECT run_id, workflow, workflow_version, status, started_at, updated_at,"
            " finished_at, usage, parent_run_id FROM runs WHERE " + " AND ".join(where)
            + " ORDER BY started_at DESC, run_id DESC LIMIT %s",
            [*params, limit + 1],
        )
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
        return {"items": [_jsonable(r) for r in page], "next_cursor": next_cursor}

    @router.get("/v1/runs/{run_id}", tags=["runs"])
    async def get_run(run_id: UUID, who: Caller = Depends(caller)) -> dict[str, Any]:
        """A run's status, node states, variables, output, error and usage."""
        rows = await fetch("SELECT * FROM runs WHERE run_id = %s AND tenant = %s", [run_id, who.tenant])
        if not rows:
            raise HTTPException(404, f"no run {run_id} (it may still be starting: retry shortly)")
        return _jsonable(in_graph_order(rows[0]))

    @router.get("/v1/runs/{run_id}/events", tags=["runs"])
    async def run_events(run_id: UUID, who: Caller = Depends(caller)) -> dict[str, Any]:
        """The run's events as stored: the source of truth, in order."""
        events = await heddle.writer.run(heddle.store.aggregate_events, run_id)
        if not events or events[0]["data"].get("tenant") != who.tenant:
            raise HTTPException(404, f"no run {run_id}")
        return {"run_id": str(run_id), "events": json.loads(dumps(events))}

    @router.put("/v1/workflows/{name}", tags=["workflows"])
    async def put_workflow(name: str, request: Request, who: Caller = Depends(caller)) -> JSONResponse:
        """Publish a definition (JSON, or YAML with a YAML content type) as a new version."""
        document = await _read_document(request)
        if isinstance(document, dict) and document.get("name", name) != name:
            return _problems([{"path": "name", "message": f"must be {name!r} (the URL's name)"}])
        if isinstance(document, dict):
            document = {"name": name, **document}
        try:
            parse_definition(document, heddle.settings.allowed_hosts)
        except DefinitionInvalid as error:
            return _problems([{"path": p.path, "message": p.message} for p in error.problems])
        result = await heddle.publish_workflow(document, who.tenant, who.actor)
        if result["status"] != "accepted":
            return _problems([{"path": "", "message": result["reason"]}])
        return JSONResponse(result["result"], status_code=200)

    @router.get("/v1/workflows", tags=["workflows"])
    async def list_workflows(who: Caller = Depends(caller)) -> dict[str, Any]:
        """Every workflow with its latest version."""
        rows = await fetch(
            "SELECT DISTINCT ON (name) name, version, content_hash, published_by, published_at"
            " FROM workflow_versions WHERE tenant = %s ORDER BY name, version DESC",
            [who.tenant],
        )
        return {"items": [_jsonable(r) for r in rows]}

    @router.get("/v1/workflows/{name}", tags=["workflows"])
    async def get_workflow(
        name: str, who: Caller = Depends(caller), version: int | None = Query(default=None, ge=1)
    ) -> dict[str, Any]:
        """One version of a workflow (the latest by default) and the list of versions."""
        rows = await fetch(
            "SELECT version, content_hash, spec, published_by, published_at FROM workflow_versions"
            " WHERE tenant = %s AND name = %s ORDER BY version",
            [who.tenant, name],
        )
        if not rows:
            raise HTTPException(404, f"no workflow {name!r}")
        chosen = rows[-1] if version is None else next((r for r in rows if r["version"] == version), None)
        if chosen is None:
            raise HTTPException(404, f"workflow {name!r} has no version {version}")
        return {"name": name, **_jsonable(chosen), "versions": [r["version"] for r in rows]}

    return router


async def _read_document(request: Request) -> Any:
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"cannot parse the definition: {error}") from None


def _problems(problems: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"detail": "invalid workflow definition", "problems": problems}, 422)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(dumps(row))  # type: ignore[no-any-return]


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps([row["started_at"].isoformat(), str(row["run_id"])])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        started_at, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(started_at), str(UUID(run_id))
    except Exception:
        raise HTTPException(400, "invalid cursor: pass next_cursor from the previous page") from None

