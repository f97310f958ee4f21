"""Sends the calls of HTTP tools (declared in definitions: `domain/http_tools.py`).

Every call is checked against the allow-list first, follows no redirects (a redirect
could leave the list), stops at the tool's timeout, and reads at most
`max_response_bytes`. Headers configured per host (`HEDDLE_HTTP_TOOL_HEADERS`, for
credentials) are added here and never recorded: events hold the tool's name, its
arguments and what it returned, with every credential of the call (header values, the
URL's userinfo) redacted, in case the service echoes them; errors and logs too.
Failures come back as `error: ...` text, like the other tools: a `tool` node fails with
it, an `agent`'s model reads it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from pydantic import ValidationError

from domain.errors import TemplateError
from domain.http_tools import (
    HttpRequest,
    HttpTool,
    host_allowed,
    http_request,
    redact,
    request_secrets,
    tool_problems,
    without_userinfo,
)
from domain.llm import ToolCall
from handlers.reactions.tools import ToolError, ToolRegistry

log = logging.getLogger("heddle.http_tools")


class HttpTools:
    def __init__(
        self,
        hosts: frozenset[str],
        headers: dict[str, dict[str, str]] | None = None,
        max_response_bytes: int = 256 * 1024,
    ) -> None:
        self.hosts = hosts
        self.headers = {host.lower(): value for host, value in (headers or {}).items()}
        self.max_response_bytes = max_response_bytes
        self.client = httpx.AsyncClient(follow_redirects=False)

    async def call(
        self, name: str, tool: HttpTool, arguments: dict[str, Any], key: str | None = None
    ) -> tuple[bool, str]:
        """(ok, the response text or the error). `key` goes as `Idempotency-Key`, so a
        service can tell a call a worker repeated (after a crash) from a new one."""
        try:
            request = http_request(tool, arguments)
        except TemplateError as error:
            return False, f"error: {name}: {error}"
        if not host_allowed(request.host, self.hosts):
            listed = ", ".join(sorted(self.hosts)) or "empty"
            return False, (
                f"error: {name}: host {request.host!r} is not on the allow-list "
                f"(HEDDLE_HTTP_TOOL_HOSTS: {listed})"
            )
        configured = self.headers.get(request.host, {})
        return await self._send(name, tool, request, configured, key)

    async def _send(
        self,
        name: str,
        tool: HttpTool,
        request: HttpRequest,
        configured: dict[str, str],
        key: str | None,
    ) -> tuple[bool, str]:
        headers = {**request.headers, **configured}
        secrets = request_secrets(request, configured)
        url = without_userinfo(request.url)
        if key is not None:
            headers["Idempotency-Key"] = key
        try:
            async with self.client.stream(
                request.method,
                request.url,
                headers=headers,
                json=request.json,
                timeout=request.timeout,
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        return False, (
                            f"error: {name}: the response is larger than "
                            f"{self.max_response_bytes} bytes (HEDDLE_HTTP_TOOL_MAX_RESPONSE_BYTES)"
                        )
        except httpx.TimeoutException:
            return False, f"error: {name}: no answer within {tool.timeout:g} s"
        except httpx.HTTPError as error:
            detail = redact(str(error), secrets)
            return False, f"error: {name}: {request.method} {url} failed: {detail}"
        text = redact(body.decode(response.encoding or "utf-8", errors="replace"), secrets)
        if response.status_code >= 300:
            return False, f"error: {name}: HTTP {response.status_code}: {text[:500]}"
        log.info("%s: %s %s answered %s", name, request.method, url, response.status_code)
        return True, text

    async def aclose(self) -> None:
        await self.client.aclose()


def parse_headers(raw: str) -> dict[str, dict[str, str]]:
    """`HEDDLE_HTTP_TOOL_HEADERS`: JSON, headers by host."""
    if not raw.strip():
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError(
            "HEDDLE_HTTP_TOOL_HEADERS must be a JSON object of headers by host, e.g. "
            '{"api.example.com": {"Authorization": "Bearer ..."}}'
        )
    return value


def register_http_tools(registry: ToolRegistry, raw: str, tools: HttpTools) -> list[str]:
    """Register the HTTP tools of `HEDDLE_HTTP_TOOLS` (JSON: tools by name, as under a
    definition's `tools:`, headers with credentials allowed) for every workflow; raises
    ValueError naming each problem. Returns their names."""
    if not raw.strip():
        return []
    try:
        declared = {name: HttpTool.model_validate(value) for name, value in json.loads(raw).items()}
    except (json.JSONDecodeError, AttributeError, ValidationError) as error:
        raise ValueError(f"HEDDLE_HTTP_TOOLS: not tools by name: {error}") from None
    problems = [
        f"HEDDLE_HTTP_TOOLS.{name}{'.' + field if field else ''}: {message}"
        for name, tool in declared.items()
        for field, message in tool_problems(name, tool, tools.hosts, secrets_allowed=True)
    ] + [f"HEDDLE_HTTP_TOOLS.{name}: give a url" for name, t in declared.items() if not t.url]
    if problems:
        raise ValueError("; ".join(problems))
    for name, tool in declared.items():
        registry.register(tool.definition(name), _calling(tools, name, tool))
    return sorted(declared)


def _calling(tools: HttpTools, name: str, tool: HttpTool) -> Any:
    async def call(**arguments: Any) -> str:
        ok, content = await tools.call(name, tool, arguments)
        if not ok:
            raise ToolError(content.removeprefix("error: "))
        return content

    return call


class ToolRunner:
    """Runs a tool call of a run: an HTTP tool its definition declares, or a registered
    one (the worker's `run_tool`)."""

    def __init__(self, tools: ToolRegistry, http_tools: HttpTools) -> None:
        self.tools, self.http_tools = tools, http_tools

    async def __call__(
        self, declared: dict[str, HttpTool], call: ToolCall, key: str | None = None
    ) -> tuple[bool, str]:
        tool = declared.get(call.name)
        if tool is not None:
            return await self.http_tools.call(call.name, tool, call.arguments, key)
        return await self.tools.run(call)
