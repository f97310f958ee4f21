"""Chooses the adapter for a request by its `provider:` prefix, and prices its answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

from domain.llm import LlmDelta, LlmError, LlmRequest, LlmResult
from infra.llm.anthropic import AnthropicProvider
from infra.llm.common import Endpoint
from infra.llm.openai import OpenAiProvider
from infra.llm.pricing import PriceTable
from infra.llm.scripted import ScriptedProvider

KNOWN_PROVIDERS = ("anthropic", "groq", "ollama", "openai", "scripted")
CREDENTIAL_PREFIX = "HEDDLE_CREDENTIAL_"


class ProviderSettings(BaseModel):
    """Where the providers are and how to authenticate (keys never leave this object).

    Read from the environment by `from_env`: OPENAI_API_KEY, OPENAI_BASE_URL,
    ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, GROQ_API_KEY, GROQ_BASE_URL, OLLAMA_BASE_URL,
    HEDDLE_LLM_TIMEOUT_SECONDS, HEDDLE_PRICES and HEDDLE_CREDENTIAL_<NAME> (the key a node
    names with `credential: <name>`).
    """

    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    groq_api_key: SecretStr | None = None
    groq_base_url: str = "https://api.groq.com/openai/v1"
    ollama_base_url: str = "http://localhost:11434/v1"
    timeout_seconds: float = 60.0
    prices: str | None = None
    credentials: dict[str, SecretStr] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProviderSettings:
        names = {
            "openai_api_key": "OPENAI_API_KEY",
            "openai_base_url": "OPENAI_BASE_URL",
            "anthropic_api_key": "ANTHROPIC_API_KEY",
            "anthropic_base_url": "ANTHROPIC_BASE_URL",
            "groq_api_key": "GROQ_API_KEY",
            "groq_base_url": "GROQ_BASE_URL",
            "ollama_base_url": "OLLAMA_BASE_URL",
            "timeout_seconds": "HEDDLE_LLM_TIMEOUT_SECONDS",
            "prices": "HEDDLE_PRICES",
        }
        fields: dict[str, Any] = {
            field: environ[variable] for field, variable in names.items() if environ.get(variable)
        }
        fields["credentials"] = {
            variable: value
            for variable, value in environ.items()
            if variable.startswith(CREDENTIAL_PREFIX) and value
        }
        return cls(**fields)

    def endpoint(self, provider: str) -> Endpoint:
        """Where `provider` answers and which key it wants; None for an unknown provider."""
        credentials = {name: key.get_secret_value() for name, key in self.credentials.items()}
        base_url, key, variable = {
            "openai": (self.openai_base_url, self.openai_api_key, "OPENAI_API_KEY"),
            "groq": (self.groq_base_url, self.groq_api_key, "GROQ_API_KEY"),
            "ollama": (self.ollama_base_url, None, None),
            "anthropic": (self.anthropic_base_url, self.anthropic_api_key, "ANTHROPIC_API_KEY"),
        }[provider]
        return Endpoint(
            provider=provider,
            base_url=base_url,
            api_key=key.get_secret_value() if key else None,
            key_variable=variable,
            timeout_seconds=self.timeout_seconds,
            credentials=credentials,
        )

    def __repr__(self) -> str:
        return "ProviderSettings(...)"

    def __str__(self) -> str:
        return repr(self)


class ProviderRouter:
    """One provider per prefix, created on first use and reused; every answer priced.

    `complete(request)` and `stream(request)` take any `provider:model`; wrap the router
    in `infra.llm.retrying.complete_with_retries` for the one retry layer.
    """

    def __init__(self, settings: ProviderSettings, prices: PriceTable | None = None) -> None:
        self.settings = settings
        self.prices = prices or PriceTable.from_setting(settings.prices)
        self._providers: dict[str, Any] = {"scripted": ScriptedProvider()}

    def provider(self, name: str) -> Any:
        if name not in self._providers:
            self._providers[name] = self._create(name)
        return self._providers[name]

    async def complete(self, request: LlmRequest) -> LlmResult:
        result = await self.provider(_provider_of(request)).complete(request)
        return self.prices.priced(result, request.model_name)

    async def stream(self, request: LlmRequest) -> AsyncIterator[LlmDelta | LlmResult]:
        async for item in self.provider(_provider_of(request)).stream(request):
            if isinstance(item, LlmResult):
                item = self.prices.priced(item, request.model_name)
            yield item

    async def aclose(self) -> None:
        providers, self._providers = self._providers, {"scripted": ScriptedProvider()}
        for provider in providers.values():
            await provider.aclose()

    def _create(self, name: str) -> Any:
        if name in {"openai", "groq"}:
            return OpenAiProvider(self.settings.endpoint(name))
        if name == "ollama":
            return OpenAiProvider(self.settings.endpoint(name), max_tokens_field="max_tokens")
        if name == "anthropic":
            return AnthropicProvider(self.settings.endpoint(name))
        known = ", ".join(KNOWN_PROVIDERS)
        raise LlmError(name, "fatal", f"unknown provider {name!r} (known: {known})")


def _provider_of(request: LlmRequest) -> str:
    try:
        return request.provider
    except ValueError:
        raise LlmError(
            "unknown", "fatal",
            f"model {request.model!r} must be written provider:model, e.g. openai:gpt-4o-mini",
        ) from None
