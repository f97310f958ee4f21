"""`GET /metrics` (Prometheus' text format, for an admin key of the deployment's tenant:
its labels name every tenant; see docs/security.md) and the request log: one line per
request, with its method, route template, status, duration and the caller's key id
(never the key). Each request is a span too (infra/tracing.py): the commands it sends
carry its trace."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Depends, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.dependencies import operator_scope
from api.http.problems import errors
from infra import metrics, tracing

log = logging.getLogger("heddle.api.requests")


def routes() -> APIRouter:
    """`/metrics`: every metric of this process (and the read models' gauges)."""
    router = APIRouter(tags=["health"], dependencies=[Depends(operator_scope)])

    @router.get(
        "/metrics", response_class=Response, responses={
            200: {"description": "Prometheus' text format",
                  "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}}},
            **errors(401, 403),
        },
    )  # fmt: skip
    async def prometheus_metrics() -> Response:
        body = await asyncio.to_thread(metrics.exposition)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return router


class RequestLog:
    """Logs each HTTP request once it is answered (or fails)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        parent = dict(scope["headers"]).get(b"traceparent", b"").decode("latin-1") or None
        try:
            method, path = scope["method"], scope["path"]
            with tracing.span(f"HTTP {method}", parent, **{"http.request.method": method,
                                                          "url.path": path}):  # fmt: skip
                await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            fields = {
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round((time.perf_counter() - began) * 1000, 2),
                "key_id": scope.get("state", {}).get("key_id"),
            }
            log.info("%s %s %s", scope["method"], route, status, extra=fields)
