"""Declared tools: tools a definition declares (`tools:`), usable from `tool` and `agent`
nodes: an HTTP endpoint (`url`), or, for agents, a published workflow (`workflow`) whose
child run's output is the tool's result.

Only hosts on the deployment's allow-list may be called (`HEDDLE_HTTP_TOOL_HOSTS`): a
definition naming another host is refused when it is published, and the worker checks
again before every call. A definition is recorded in events, so it holds no secrets:
headers that carry credentials are refused here and configured per host in the worker's
environment instead (`HEDDLE_HTTP_TOOL_HEADERS`). This module is pure: it renders the
request; the worker (`infra/http_tools.py`) sends it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from domain.llm import ToolDefinition
from domain.templates import render, render_values

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
SECRET_WORDS = ("token", "secret", "password", "api-key", "apikey", "api_key")
TOOL_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
REDACTED = "[redacted]"
NO_SECRETS = (
    "definitions are recorded in events and hold no secrets: set this header for the host "
    "in HEDDLE_HTTP_TOOL_HEADERS instead"
)


class HttpTool(BaseModel):
    """A declared tool. With `url`, an HTTP endpoint: `url`, header values and `body` string
    values are templates over `args` (the validated arguments); without `body`, POST, PUT
    and PATCH send the arguments as the JSON body. With `workflow`, a published workflow
    (of `version`, the latest by default) run as a child with the arguments as its input:
    for `agent` nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1, max_length=1000)
    url: str | None = Field(
        default=None, max_length=2000, description="http(s); the host written out"
    )
    workflow: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
    version: int | None = Field(default=None, ge=1)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"}, description="JSON schema of the arguments"
    )
    timeout: float = Field(default=10.0, gt=0, le=120, description="seconds")

    def definition(self, name: str) -> ToolDefinition:
        """What a model is offered."""
        return ToolDefinition(name=name, description=self.description, parameters=self.parameters)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A rendered call of an HTTP tool."""

    method: str
    url: str
    headers: dict[str, str]
    json: Any
    timeout: float

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()


def http_request(tool: HttpTool, arguments: dict[str, Any]) -> HttpRequest:
    """The request for a call with `arguments` (raises TemplateError)."""
    context = {"args": arguments}
    body: Any = None
    if tool.body is not None:
        body = render_values(tool.body, context)
    elif tool.method in ("POST", "PUT", "PATCH"):
        body = arguments
    assert tool.url is not None
    return HttpRequest(
        tool.method,
        render(tool.url, context),
        render_values(tool.headers, context),
        body,
        tool.timeout,
    )


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether `host` is on the allow-list: named exactly, or under a `*.domain` entry."""
    host = host.lower()
    return host in allowed or any(
        entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed
    )


def is_secret_header(name: str) -> bool:
    """Whether a header's name says it carries a credential."""
    name = name.lower()
    return name in SECRET_HEADERS or any(word in name for word in SECRET_WORDS)


def without_userinfo(url: str) -> str:
    """`url` without a `user:password@` part, to show in errors and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def url_secrets(url: str) -> list[str]:
    """The credentials a URL's userinfo carries, as they may be echoed back: the password,
    `user:password`, and the Basic authorization made of them."""
    parts = urlsplit(url)
    if parts.password is None:
        return []
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
    return [unquote(parts.password), pair, base64.b64encode(pair.encode()).decode()]


def header_secrets(headers: dict[str, str]) -> list[str]:
    """The secrets in header values: each value and, for `Scheme token`, the token."""
    found = []
    for value in headers.values():
        found += [value, value.rpartition(" ")[2]]
    return found


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret (of 4 characters or more: shorter ones are no secrets and
    would blot out ordinary text) replaced by `[redacted]`, longest first."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def request_secrets(request: HttpRequest, configured: dict[str, str]) -> list[str]:
    """What a call must not let into results, errors and logs: the headers configured
    for its host, its own credential headers (tools of HEDDLE_HTTP_TOOLS may have them)
    and its URL's userinfo."""
    own = {name: value for name, value in request.headers.items() if is_secret_header(name)}
    return header_secrets({**own, **configured}) + url_secrets(request.url)


def tool_problems(
    name: str, tool: HttpTool, allowed: frozenset[str] | None, secrets_allowed: bool = False
) -> list[tuple[str, str]]:
    """Every problem of a declared HTTP tool as (path under the tool, message); its host is
    checked against `allowed` unless that is None. Credentials (in headers or the URL's
    userinfo) are problems unless `secrets_allowed` (the deployment's own tools)."""
    problems: list[tuple[str, str]] = []
    if (tool.url is None) == (tool.workflow is None):
        return [("", "give a url (an HTTP tool) or a workflow (a subworkflow tool), not both")]
    if tool.workflow is not None:
        http = {"method", "headers", "body", "timeout"} & tool.model_fields_set
        problems += [(field, "only HTTP tools (with a url) have this") for field in sorted(http)]
        return problems
    assert tool.url is not None
    parts = urlsplit(tool.url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https"):
        problems.append(("url", "must start with http:// or https://"))
    elif not host or "{" in parts.netloc or "%" in parts.netloc:
        problems.append(("url", "write the host out: only the path and query may be templates"))
    elif allowed is not None and not host_allowed(host, allowed):
        listed = ", ".join(sorted(allowed)) or "empty"
        problems.append(
            ("url", f"host {host!r} is not on the allow-list (HEDDLE_HTTP_TOOL_HOSTS: {listed})")
        )
    if not secrets_allowed:
        if "@" in parts.netloc:
            problems.append(("url", NO_SECRETS.replace("this header", "an Authorization header")))
        problems += [(f"headers.{h}", NO_SECRETS) for h in tool.headers if is_secret_header(h)]
    try:
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
    except jsonschema.SchemaError as error:
        problems.append(("parameters", f"not a valid JSON schema: {error.message}"))
    return problems
