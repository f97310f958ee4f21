"""The one shape of every error the API answers: RFC 9457 `application/problem+json`
(docs/errors.md). `type` is `about:blank` (the status and `title` say what kind),
`detail` is the sentence for a person, `instance` the path asked for, and `problems`
lists each problem at its path when there are several (a request or a definition that
does not validate); extension members carry facts a client acts on (`unavailable`,
`command_id`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import Scope

MEDIA_TYPE = "application/problem+json"


def problem(
    status: int,
    detail: str,
    instance: str,
    problems: list[dict[str, str]] | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """The problem+json body of an error answer."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if problems:
        body["problems"] = problems
    return body | extensions


def instance_of(scope: Scope) -> str:
    """The path asked for, as the client wrote it (percent-encoded): a problem's `instance`."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else quote(scope["path"])


def problem_bytes(status: int, detail: str, scope: Scope, **extensions: Any) -> bytes:
    """The body of `problem`, encoded, for middleware that answers outside the app."""
    return json.dumps(problem(status, detail, instance_of(scope), **extensions)).encode()


class ProblemResponse(JSONResponse):
    """An error answer, as `application/problem+json`."""

    media_type = MEDIA_TYPE


def respond(
    request: Request,
    status: int,
    detail: str,
    problems: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The problem answer to `request`."""
    body = problem(status, detail, instance_of(request.scope), problems)
    return ProblemResponse(body, status, headers=headers)


def invalid(request: Request, problems: list[dict[str, str]], what: str) -> Response:
    """422 for `what` (the request, a definition), each of its problems at its path; the
    detail names the problem when there is one."""
    if len(problems) == 1:
        only = problems[0]
        detail = f"{what} is invalid: {only['path'] or '(document)'}: {only['message']}"
    else:
        detail = f"{what} is invalid: {len(problems)} problems"
    return respond(request, 422, detail, problems)


async def http_problem(request: Request, error: Exception) -> Response:
    """An `HTTPException` as a problem (a list as its detail: problems at their paths)."""
    assert isinstance(error, HTTPException)
    if isinstance(error.detail, list):
        return invalid(request, error.detail, "the request")
    return respond(request, error.status_code, str(error.detail), headers=error.headers)


async def validation_problem(request: Request, error: Exception) -> Response:
    """FastAPI's validation errors of a request as problems at their paths
    (`body.input.name`, `query.limit`)."""
    assert isinstance(error, RequestValidationError)
    found = [
        {"path": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors()
    ]
    return invalid(request, found, "the request")


async def server_problem(request: Request, error: Exception) -> Response:
    """500 for a failure nobody foresaw, as a problem that tells nothing of its insides
    (the server logs the failure)."""
    return respond(request, 500, "Heddle failed to answer; the failure is logged")


def answer_problems(app: FastAPI) -> None:
    """Make every error of `app` a problem."""
    app.add_exception_handler(HTTPException, http_problem)
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(Exception, server_problem)
