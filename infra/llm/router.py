"""Chooses the adapter for a request by its `provider:` prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import BaseModel

from domain.llm import LlmDelta, LlmError, LlmRequest, LlmResult
from infra.llm.scripted import ScriptedProvider


class ProviderSettings(BaseModel):
    """Where the providers are and how to authenticate (keys never leave this object)."""

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    groq_api_key: str | None = None
    ollama_base_url: str = "http://localhost:11434/v1"
    timeout_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProviderSettings:
        fields = {name: environ.get(name.upper()) for name in cls.model_fields}
        return cls(**{k: v for k, v in fields.items() if v})

    def __repr__(self) -> str:
        return "ProviderSettings(...)"


class ProviderRouter:
    """One provider per prefix, created on first use and reused."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self._providers: dict[str, Any] = {"scripted": ScriptedProvider()}

    def provider(self, name: str) -> Any:
        if name not in self._providers:
            self._providers[name] = self._create(name)
        return self._providers[name]

    async def complete(self, request: LlmRequest) -> LlmResult:
        return await self.provider(request.provider).complete(request)  # type: ignore[no-any-return]

    async def stream(self, request: LlmRequest) -> AsyncIterator[LlmDelta | LlmResult]:
        async for item in self.provider(request.provider).stream(request):
            yield item

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()

    def _create(self, name: str) -> Any:
        known = "scripted"
        raise LlmError(name, "fatal", f"unknown provider {name!r} (known: {known})")
