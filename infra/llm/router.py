"""Chooses the adapter for a request by its `provider:` prefix, and prices its answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from domain.llm import LlmDelta, LlmError, LlmRequest, LlmResult, Message
from infra.credentials import CredentialStoreError
from infra.llm.anthropic import AnthropicProvider
from infra.llm.common import credential_variable
from infra.llm.openai import OpenAiProvider
from infra.llm.pricing import PriceTable
from infra.llm.scripted import ScriptedProvider
from infra.llm.settings import ProviderSettings

KNOWN_PROVIDERS = ("anthropic", "groq", "ollama", "openai", "scripted")
HEALTH_TIMEOUT_SECONDS = 15.0


class CredentialSource(Protocol):
    """Where stored credentials are looked up: (provider, key) or None."""

    async def key(self, tenant: str, credential_id: str) -> tuple[str, str] | None: ...


class ProviderRouter:
    """One provider per prefix, created on first use and reused; every answer priced.

    `complete(request)` and `stream(request)` take any `provider:model`; wrap the router
    in `infra.llm.retrying.complete_with_retries` for the one retry layer. A request's
    `credential` is resolved at call time: `HEDDLE_CREDENTIAL_<ID>` if set, else the
    credential store (for the tenant the call is made for: see `for_tenant`).
    """

    def __init__(
        self,
        settings: ProviderSettings,
        prices: PriceTable | None = None,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.settings = settings
        self.prices = prices or PriceTable.from_setting(settings.prices)
        self.credentials = credentials
        self._providers: dict[str, Any] = {"scripted": ScriptedProvider()}

    def provider(self, name: str) -> Any:
        if name not in self._providers:
            self._providers[name] = self._create(name)
        return self._providers[name]

    def for_tenant(self, tenant: str) -> TenantProviders:
        """The router as one tenant's calls see it (their stored credentials)."""
        return TenantProviders(self, tenant)

    async def complete(self, request: LlmRequest, tenant: str = "default") -> LlmResult:
        name = _provider_of(request)
        provider = self.provider(name)
        key = await self._stored_key(request, tenant, name)
        result = await provider.complete(request, api_key=key)
        return self.prices.priced(result, request.model_name)

    async def stream(
        self, request: LlmRequest, tenant: str = "default"
    ) -> AsyncIterator[LlmDelta | LlmResult]:
        name = _provider_of(request)
        provider = self.provider(name)
        key = await self._stored_key(request, tenant, name)
        async for item in provider.stream(request, api_key=key):
            if isinstance(item, LlmResult):
                item = self.prices.priced(item, request.model_name)
            yield item

    async def check(self, name: str) -> dict[str, Any]:
        """One minimal real call to a provider: `{provider, ok, latency_ms, error?}`."""
        request = LlmRequest(
            model=f"{name}:{self.settings.health_models.get(name, 'unknown')}",
            messages=[Message(role="user", content="ping")],
            max_tokens=1,
        )
        started = time.perf_counter()
        report: dict[str, Any] = {"provider": name, "model": request.model_name, "ok": True}
        try:
            await asyncio.wait_for(self.complete(request), HEALTH_TIMEOUT_SECONDS)
        except LlmError as error:
            report.update(ok=False, error=error.message, retryable=error.retryable)
        except TimeoutError:
            report.update(
                ok=False,
                error=f"{name} did not answer within {HEALTH_TIMEOUT_SECONDS:g} s",
                retryable=True,
            )
        report["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return report

    async def check_all(self) -> list[dict[str, Any]]:
        """A health check of every configured provider, at once."""
        names = sorted(self.settings.configured)
        return list(await asyncio.gather(*(self.check(name) for name in names)))

    async def aclose(self) -> None:
        providers, self._providers = self._providers, {"scripted": ScriptedProvider()}
        for provider in providers.values():
            await provider.aclose()

    async def _stored_key(self, request: LlmRequest, tenant: str, name: str) -> str | None:
        """The key of the request's credential from the store, or None to let the
        adapter use the environment (which also explains a credential found nowhere)."""
        credential = request.credential
        if not credential or name == "scripted" or self.credentials is None:
            return None
        if credential_variable(credential) in self.settings.credentials:
            return None
        try:
            found = await self.credentials.key(tenant, credential)
        except CredentialStoreError as error:
            raise LlmError(
                name,
                "fatal",
                f"{name}: the node's credential {credential!r} cannot be read: {error}",
            ) from None
        if found is None:
            return None
        provider, key = found
        if provider != name:
            raise LlmError(
                name,
                "fatal",
                f"{name}: the node's credential {credential!r} is for {provider}, not {name}: "
                f"store a {name} key under another id, or change the node's model",
            )
        self.provider(name).endpoint.resolved.add(key)
        return key

    def _create(self, name: str) -> Any:
        if name in {"openai", "groq"}:
            return OpenAiProvider(self.settings.endpoint(name))
        if name == "ollama":
            return OpenAiProvider(self.settings.endpoint(name), max_tokens_field="max_tokens")
        if name == "anthropic":
            return AnthropicProvider(self.settings.endpoint(name))
        known = ", ".join(KNOWN_PROVIDERS)
        raise LlmError(name, "fatal", f"unknown provider {name!r} (known: {known})")


class TenantProviders:
    """The `LlmProvider` interface of a router, for one tenant's calls."""

    def __init__(self, router: ProviderRouter, tenant: str) -> None:
        self.router = router
        self.tenant = tenant

    async def complete(self, request: LlmRequest) -> LlmResult:
        return await self.router.complete(request, self.tenant)

    def stream(self, request: LlmRequest) -> AsyncIterator[LlmDelta | LlmResult]:
        return self.router.stream(request, self.tenant)


def _provider_of(request: LlmRequest) -> str:
    try:
        return request.provider
    except ValueError:
        raise LlmError(
            "unknown",
            "fatal",
            f"model {request.model!r} must be written provider:model, e.g. openai:gpt-4o-mini",
        ) from None


__all__ = [
    "KNOWN_PROVIDERS",
    "CredentialSource",
    "ProviderRouter",
    "ProviderSettings",
    "TenantProviders",
]
