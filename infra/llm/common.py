"""What the SDK adapters share: where to call, with which key, and how failures are classified.

Every exception an SDK (or its HTTP transport) raises leaves an adapter as an `LlmError`,
`retryable` or `fatal`, with a message that says what to fix. Keys never appear in one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypeVar

import httpx

from domain.http_tools import redact, url_secrets, without_userinfo
from domain.llm import LlmError, LlmRequest

try:  # the SDKs moved to the httpx2 fork; catch its errors too, whichever is installed
    import httpx2

    TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError)
    TRANSPORT_TIMEOUTS: tuple[type[Exception], ...] = (
        httpx.TimeoutException,
        httpx2.TimeoutException,
    )
except ImportError:  # pragma: no cover - depends on the SDK versions installed
    TRANSPORT_ERRORS = (httpx.HTTPError,)
    TRANSPORT_TIMEOUTS = (httpx.TimeoutException,)

RETRYABLE_STATUSES = frozenset({408, 409, 429})
DETAIL_LIMIT = 300
_CONTEXT_TOO_LONG = re.compile(
    r"context[_ ]length|context window|maximum context|prompt is too long|too many tokens"
    r"|reduce the length",
    re.IGNORECASE,
)
# Anthropic reports a failure inside a 200 stream as an `error` event naming its type.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


@dataclass(frozen=True, repr=False)
class Endpoint:
    """One provider's address and keys. `key_variable` None means no key is needed."""

    provider: str
    base_url: str
    api_key: str | None
    key_variable: str | None
    timeout_seconds: float
    credentials: Mapping[str, str] = field(default_factory=dict)
    resolved: set[str] = field(default_factory=set)
    """Keys read from the credential store for calls here: redacted like the others."""

    def key_for(self, request: LlmRequest) -> str:
        """The key for this request, or a fatal error naming the variable to set."""
        if request.credential:
            variable = credential_variable(request.credential)
            key = self.credentials.get(variable)
            if not key:
                raise LlmError(
                    self.provider,
                    "fatal",
                    f"{self.provider}: the node's credential {request.credential!r} is not "
                    f"configured: store it with `heddle credentials set {request.credential} "
                    f"--provider {self.provider}` or set {variable}",
                )
            return key
        if self.key_variable is None:
            return "unused"  # OpenAI-compatible local servers ignore it, the SDK wants one
        if not self.api_key:
            raise LlmError(
                self.provider,
                "fatal",
                f"{self.provider}: no API key: set {self.key_variable} or the node's credential",
            )
        return self.api_key

    def secrets(self) -> list[str]:
        keys = (self.api_key, *self.credentials.values(), *self.resolved)
        return [key for key in keys if key] + url_secrets(self.base_url)

    @property
    def shown_url(self) -> str:
        """`base_url` as errors and logs show it: without a `user:password@`."""
        return without_userinfo(self.base_url)

    def __repr__(self) -> str:
        return f"Endpoint({self.provider!r}, {self.shown_url!r})"


def credential_variable(name: str) -> str:
    """`team-a` → `HEDDLE_CREDENTIAL_TEAM_A`: where a node's named credential is read from."""
    return "HEDDLE_CREDENTIAL_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


class _Closable(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Closable)


class Clients(Generic[ClientT]):
    """One SDK client per key, created at the first call that needs it. `api_key` is a
    key the router resolved (from the credential store); else the endpoint's is used."""

    def __init__(self, endpoint: Endpoint, create: Callable[[str], ClientT]) -> None:
        self.endpoint = endpoint
        self._create = create
        self._clients: dict[str, ClientT] = {}

    def for_request(self, request: LlmRequest, api_key: str | None = None) -> ClientT:
        key = api_key or self.endpoint.key_for(request)
        if key not in self._clients:
            self._clients[key] = self._create(key)
        return self._clients[key]

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


@dataclass(frozen=True)
class SdkErrors:
    """The exception classes of one SDK that `classify` needs to tell apart."""

    base: type[Exception]
    status: type[Exception]
    timeout: type[Exception]
    connection: type[Exception]


def classify(
    error: Exception, errors: SdkErrors, endpoint: Endpoint, request: LlmRequest
) -> LlmError | None:
    """The `LlmError` for an SDK or transport exception, or None when it is neither."""
    provider = endpoint.provider
    if isinstance(error, errors.status):
        response = error.response  # type: ignore[attr-defined]
        return status_error(
            provider,
            error.status_code,  # type: ignore[attr-defined]  # the SDKs' status errors have it
            _error_body(error.body),  # type: ignore[attr-defined]
            response.headers,
            request.model_name,
            endpoint,
        )
    if isinstance(error, (errors.timeout, *TRANSPORT_TIMEOUTS)):
        return LlmError(
            provider,
            "retryable",
            f"{provider} did not answer within {endpoint.timeout_seconds:g} s",
        )
    if isinstance(error, (errors.connection, *TRANSPORT_ERRORS)):
        cause = error.__cause__ or error
        detail = _redact(str(cause) or type(cause).__name__, endpoint)
        return LlmError(
            provider,
            "retryable",
            f"the connection to {provider} at {endpoint.shown_url} failed ({detail})",
        )
    if isinstance(error, json.JSONDecodeError):
        return malformed_chunk(provider)
    if isinstance(error, errors.base):
        return LlmError(
            provider, "fatal", f"{provider}: {_redact(str(error), endpoint)[:DETAIL_LIMIT]}"
        )
    return None


def status_error(
    provider: str,
    status: int,
    body: tuple[str, str],
    headers: Mapping[str, str],
    model: str,
    endpoint: Endpoint,
) -> LlmError:
    """Classify an HTTP error answer and say what to do about it."""
    kind_of_error, detail = body
    if status < 400:  # an error event inside a stream that began well
        status = _ERROR_TYPE_STATUS.get(kind_of_error, 500)
    detail = _redact(detail, endpoint)[:DETAIL_LIMIT] or "no details given"
    retry_after = retry_after_seconds(headers)
    p = provider
    if status == 429 and kind_of_error == "insufficient_quota":
        return LlmError(
            p,
            "fatal",
            f"{p}: the account is out of quota (429): check the billing "
            f"of the key in {endpoint.key_variable or 'the node credential'}",
            status,
        )
    if status in RETRYABLE_STATUSES or status >= 500:
        what = {
            408: "timed out the request",
            409: "reported a conflict",
            429: "is rate limiting requests",
            529: "is overloaded",
        }.get(status, "had a server error")
        return LlmError(p, "retryable", f"{p} {what} ({status}): {detail}", status, retry_after)
    if status == 400 and (
        _CONTEXT_TOO_LONG.search(detail) or kind_of_error == "context_length_exceeded"
    ):
        message = (
            f"{p}: the prompt is longer than the model's context window (400): shorten "
            f"the input or choose a model with a larger one ({detail})"
        )
    elif status == 401:
        variable = endpoint.key_variable or "the provider's key variable"
        message = f"{p} rejected the API key (401): set {variable} or the node's credential"
    elif status == 403:
        message = (
            f"{p} refused access (403): the key may not use model {model!r} or this API: {detail}"
        )
    elif status == 404:
        message = f"{p}: model {model!r} not found (404): check the node's model"
    else:
        message = f"{p} rejected the request ({status}): {detail}"
    return LlmError(p, "fatal", message, status)


def incomplete_stream(provider: str) -> LlmError:
    return LlmError(
        provider,
        "retryable",
        f"{provider}: stream ended before the model finished (no finish reason)",
    )


def malformed_chunk(provider: str) -> LlmError:
    return LlmError(provider, "retryable", f"{provider} sent a malformed stream chunk")


def unparseable_arguments(provider: str, tool: str) -> LlmError:
    return LlmError(
        provider,
        "retryable",
        f"{provider}: the model called tool {tool!r} with arguments that are not a JSON "
        "object; asking again",
    )


def parse_arguments(provider: str, tool: str, text: str | None) -> dict[str, Any]:
    """A tool call's JSON arguments; retryable when the model wrote something else."""
    if not text:
        return {}
    try:
        arguments = json.loads(text)
    except json.JSONDecodeError:
        raise unparseable_arguments(provider, tool) from None
    if not isinstance(arguments, dict):
        raise unparseable_arguments(provider, tool)
    return arguments


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`retry-after-ms`, else `Retry-After` (seconds or an HTTP date), in seconds."""
    if milliseconds := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def guarded(
    call: Awaitable[Any], errors: SdkErrors, endpoint: Endpoint, request: LlmRequest
) -> Any:
    """Await an SDK call, turning its failures into `LlmError`s."""
    try:
        return await call
    except Exception as error:
        if (classified := classify(error, errors, endpoint, request)) is None:
            raise
        raise classified from error


async def guarded_iter(
    items: AsyncIterator[Any], errors: SdkErrors, endpoint: Endpoint, request: LlmRequest
) -> AsyncIterator[Any]:
    """Iterate an SDK stream, turning its failures into `LlmError`s."""
    iterator = items.__aiter__()
    while True:
        try:
            item = await guarded(iterator.__anext__(), errors, endpoint, request)
        except StopAsyncIteration:
            return
        yield item


def since(started: float) -> float:
    """Milliseconds since `started` (a `time.perf_counter()` reading)."""
    return round((time.perf_counter() - started) * 1000, 3)


def _error_body(body: object) -> tuple[str, str]:
    """(type or code, message) from an error body in the OpenAI or Anthropic shape."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            kind = inner.get("code") or inner.get("type") or ""
            return str(kind), str(inner.get("message") or json.dumps(inner))
        return "", str(inner)
    return "", "" if body is None else str(body)


def _redact(text: str, endpoint: Endpoint) -> str:
    return redact(text, endpoint.secrets())
