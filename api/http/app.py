"""The HTTP API: commands in (published to Kafka), read models out.

Writes go to `heddle.commands` like any other client's; the only synchronous write is
publishing a workflow definition, so that an invalid one gets its problems back at
once (422, with the path of each). Reads come from the projections' tables, except a
run's events, which come straight from the event store. Every route but the health
checks needs an API key, which decides the caller's tenant, actor and scopes
(docs/security.md). The web UI (api/http/ui/) is served at `/ui`.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException

from api.http import (
    artifacts,
    commands,
    credentials,
    dead_letters,
    documents,
    health,
    keys,
    observability,
    projections,
    providers,
    replay,
    runs,
    streams,
    tasks,
    tenant,
    threads,
    ui,
    usage,
    workflows,
)
from api.http.asyncapi import asyncapi_routes
from api.http.dependencies import Runtime, admin_scope, read_or_write_scope
from api.http.middleware import AnswerOutages, BodyLimit, too_deep, unreadable_body
from api.http.observability import RequestLog
from api.http.problems import answer_problems
from api.http.ui.session import Sessions
from infra.keys import ApiKeys


def create_app(runtime: Runtime) -> FastAPI:
    """The API for a running Heddle (its lifespan belongs to whoever started Heddle).

    Every route but the health checks needs an API key (docs/security.md): GETs the
    `read` scope, other methods `write`; keys, credentials, provider checks and the
    tenant's AI mode `admin`."""
    app = FastAPI(
        title="Heddle",
        version="0.1.0",
        description="Event-sourced LLM workflows: commands in, read models out.",
    )
    app.state.keys = ApiKeys(runtime.reads)
    app.state.ui_sessions = Sessions(runtime.settings.data_dir)
    settings = runtime.settings
    uploads = {
        "/v1/documents": (settings.document_max_bytes, "HEDDLE_DOCUMENT_MAX_BYTES"),
        "/v1/runs/import": (settings.import_max_bytes, "HEDDLE_IMPORT_MAX_BYTES"),
    }
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, paths=uploads)
    app.add_middleware(AnswerOutages)
    app.add_middleware(RequestLog)
    answer_problems(app)  # every error as application/problem+json (docs/errors.md)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(HTTPException, unreadable_body)
    app.include_router(health.routes(runtime))
    app.include_router(observability.routes())
    by_method, admin = [Depends(read_or_write_scope)], [Depends(admin_scope)]
    for router in (
        replay.routes(runtime),  # first: /v1/runs/diff is not a run id
        tasks.routes(runtime),
        documents.routes(runtime),
        runs.routes(runtime),
        usage.routes(runtime),
        artifacts.routes(runtime),
        streams.routes(runtime),
        threads.routes(runtime),
        projections.routes(runtime),
        asyncapi_routes(runtime.topics, runtime.bootstrap_servers),
        commands.routes(runtime),
        workflows.routes(runtime),
    ):
        app.include_router(router, dependencies=by_method)
    app.include_router(credentials.routes(runtime), dependencies=admin)
    app.include_router(keys.routes(runtime), dependencies=admin)
    app.include_router(dead_letters.routes(runtime), dependencies=admin)
    app.include_router(providers.routes(runtime), dependencies=admin)  # real calls cost money
    app.include_router(tenant.routes(runtime), dependencies=admin)
    app.include_router(ui.routes(runtime))  # the web UI at /ui (signs in with a key)
    return app
