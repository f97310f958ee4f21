"""The HTTP API: commands in (published to Kafka), read models out.

Writes go to `heddle.commands` like any other client's; the only synchronous write is
publishing a workflow definition, so that an invalid one gets its problems back at
once (422, with the path of each). Reads come from the projections' tables, except a
run's events, which come straight from the event store. Every route but the health
checks and the API's own description (`/openapi.json`, `/docs`, `/redoc`) needs an API
key, which decides the caller's tenant, actor and scopes (docs/security.md). The web UI
(api/http/ui/) is served at `/ui`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.http import (
    artifacts,
    commands,
    credentials,
    customers,
    dead_letters,
    documents,
    health,
    keys,
    observability,
    playbooks,
    projections,
    providers,
    queues,
    replay,
    runs,
    schedules,
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
from api.http.problems import answer_problems, errors, with_components, with_problems
from api.http.ui.session import Sessions
from domain.definitions.spec import WorkflowSpec
from infra.keys import ApiKeys


def create_app(runtime: Runtime) -> FastAPI:
    """The API for a running Heddle (its lifespan belongs to whoever started Heddle).

    Every route but the health checks and the API's description needs an API key
    (docs/security.md): GETs the `read` scope, other methods `write`; keys, credentials,
    provider checks and the tenant's AI mode `admin`."""
    app = FastAPI(
        title="Heddle",
        version="0.1.0",
        description="Event-sourced LLM workflows: commands in, read models out. Every "
        "error is an `application/problem+json` problem (docs/errors.md).",
        generate_unique_id_function=operation_id,
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
    describe(app)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(HTTPException, unreadable_body)
    app.include_router(health.routes(runtime))
    app.include_router(observability.routes())
    by_method, admin = [Depends(read_or_write_scope)], [Depends(admin_scope)]
    keyed = errors(401, 403, 503)
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
        schedules.routes(runtime),
        customers.routes(runtime),
        playbooks.routes(runtime),
        queues.routes(runtime),
    ):
        app.include_router(router, dependencies=by_method, responses=keyed)
    app.include_router(credentials.routes(runtime), dependencies=admin, responses=keyed)
    app.include_router(keys.routes(runtime), dependencies=admin, responses=keyed)
    app.include_router(dead_letters.routes(runtime), dependencies=admin, responses=keyed)
    # real calls cost money
    app.include_router(providers.routes(runtime), dependencies=admin, responses=keyed)
    app.include_router(tenant.routes(runtime), dependencies=admin, responses=keyed)
    app.include_router(ui.routes(runtime))  # the web UI at /ui (signs in with a key)
    return app


def describe(app: FastAPI) -> None:
    """Make `app.openapi()` answer the document with every error a `Problem`, and with the
    schemas of the bodies that routes read themselves (a definition, JSON or YAML)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_components(with_problems(generate()), WorkflowSpec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def operation_id(route: APIRoute) -> str:
    """A route's operation id: its name (`list_runs`), not one FastAPI makes of its path."""
    return route.name
