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
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import Scope

MEDIA_TYPE = "application/problem+json"
WHEN = {
    400: "a cursor or `Last-Event-ID` that is not one of ours, or a body that does not parse",
    401: "no API key, or a bad, revoked or expired one",
    403: "a key without the scope or the task's role",
    404: "no such thing in the caller's tenant",
    409: "a conflict with what is there",
    413: "a body over its limit (the setting that raises it is named)",
    415: "a document type that is not supported",
    422: "a request (or a definition) that does not validate: each problem at its path",
    503: "PostgreSQL or Kafka is away, or a read could not catch up: retry (`Retry-After`)",
}
"""When the API answers each error status (docs/errors.md)."""


class ProblemAt(BaseModel):
    """One problem of a request or a definition, at its path (`body.input.name`)."""

    path: str
    message: str


class Problem(BaseModel):
    """An error answer (RFC 9457); extension members (`unavailable`, `command_id`) carry
    facts a client acts on."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no run 6f1c1b52-0d4e-4b0e-9a51-3c1b2f1f4a10"])
    instance: str = Field(examples=["/v1/runs/6f1c1b52-0d4e-4b0e-9a51-3c1b2f1f4a10"])
    problems: list[ProblemAt] | None = None


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that may answer these statuses: each a `Problem`."""
    return {status: {"model": Problem, "description": WHEN[status]} for status in statuses}


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


def with_problems(spec: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI document with the content of each 4xx and 5xx response a `Problem`
    (FastAPI's own 422 shape is never answered), and a 413 for each route that takes a
    body (`BodyLimit` refuses any body over its limit)."""
    ref = "#/components/schemas/"
    schemas = with_components(spec, Problem)["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for operations in spec["paths"].values():
        for method, operation in operations.items():
            if method in ("post", "put", "patch"):
                operation["responses"].setdefault("413", {"description": WHEN[413]})
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                shape = schema.get("$ref", ref + "Problem").removeprefix(ref)
                if status[0] in "45" and shape in ("Problem", "HTTPValidationError"):
                    response["content"] = {MEDIA_TYPE: {"schema": {"$ref": ref + "Problem"}}}
    return spec


def with_components(spec: dict[str, Any], *models: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI document with the schemas of `models` (and of the models they use) in its
    components, for a `$ref` to `#/components/schemas/<name>`."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return spec
