"""Request-body limits: bodies over the limit are refused with 413, declared or streamed;
bodies nested too deeply to read with 422."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.schemas import MAX_NESTING

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
            await self._too_large(send, limit, setting)
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
            await self._too_large(send, limit, setting)

    async def _too_large(self, send: Send, limit: int, setting: str) -> None:
        detail = f"request body larger than {limit} bytes (the limit is {setting})"
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised inside the app when a streamed body passes the limit."""


async def too_deep(request: Request, error: Exception) -> Response:
    """422 for a body that nests so deeply that reading it exhausts Python's recursion."""
    return JSONResponse({"detail": TOO_DEEP}, 422)


async def unreadable_body(request: Request, error: Exception) -> Response:
    """FastAPI answers 400 for a body it cannot parse; one nested too deeply is a 422
    that says so."""
    if isinstance(error.__cause__, RecursionError):
        return await too_deep(request, error)
    assert isinstance(error, HTTPException)
    return await http_exception_handler(request, error)
