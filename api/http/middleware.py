"""Request-body limits (bodies over the limit are refused with 413, declared or streamed;
bodies nested too deeply to read with 422) and outages (a route that meets PostgreSQL or
Kafka unavailable answers 503)."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.problems import MEDIA_TYPE, http_problem, problem_bytes, respond
from domain.schemas import MAX_NESTING
from infra.faults import Unavailable, is_outage, which

log = logging.getLogger("heddle.api")
RETRY_AFTER_SECONDS = 5
NAMES = {"postgres": "PostgreSQL", "kafka": "Kafka"}
TOO_DEEP = (
    f"the request nests objects and lists too deeply to read: keep it within {MAX_NESTING} levels"
)


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
            await self._too_large(scope, send, limit, setting)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await self._too_large(scope, send, limit, setting)

    async def _too_large(self, scope: Scope, send: Send, limit: int, setting: str) -> None:
        detail = f"request body larger than {limit} bytes (the limit is {setting})"
        body = problem_bytes(413, detail, scope)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", MEDIA_TYPE.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised inside the app when a streamed body passes the limit."""


class AnswerOutages:
    """Answers 503 with `Retry-After` when a route fails on an outage of PostgreSQL or
    Kafka (connections refused or dropped, the pool's or the broker's wait run out),
    instead of 500; other failures pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            if started or not is_outage(error):
                raise
            dependency = which(error)
            log.warning("%s %s: %s is unavailable (%r)", scope.get("method"), scope["path"],
                        dependency, error)  # fmt: skip
            name = NAMES.get(dependency, dependency)
            detail = f"{name} is unavailable; try again in a few seconds"
            facts: dict[str, str] = {}
            if isinstance(error, Unavailable):
                detail, facts = error.detail, error.facts
            body = problem_bytes(503, detail, scope, unavailable=dependency, **facts)
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", MEDIA_TYPE.encode()),
                        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})


async def too_deep(request: Request, error: Exception) -> Response:
    """422 for a body that nests so deeply that reading it exhausts Python's recursion."""
    return respond(request, 422, TOO_DEEP)


async def unreadable_body(request: Request, error: Exception) -> Response:
    """FastAPI answers 400 for a body it cannot parse; one nested too deeply is a 422
    that says so."""
    if isinstance(error.__cause__, RecursionError):
        return await too_deep(request, error)
    return await http_problem(request, error)
