"""Where the model providers are and how to authenticate: part of the settings, read
once (by `infra.settings.Settings`, or from a given mapping by `ProviderSettings.from_env`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

from infra.llm.common import Endpoint

CREDENTIAL_PREFIX = "HEDDLE_CREDENTIAL_"
HEALTH_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "groq": "llama-3.1-8b-instant",
    "ollama": "llama3.2",
    "scripted": "echo",
}


class ProviderSettings(BaseModel):
    """Where the providers are and how to authenticate (keys never leave this object).

    Read from the environment by `from_env`: OPENAI_API_KEY, OPENAI_BASE_URL,
    ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, GROQ_API_KEY, GROQ_BASE_URL, OLLAMA_BASE_URL,
    HEDDLE_LLM_TIMEOUT_SECONDS, HEDDLE_PRICES, HEDDLE_CREDENTIAL_<NAME> (the key a node
    names with `credential: <name>`, unless the credential store has it) and
    HEDDLE_HEALTH_MODEL_<PROVIDER> (the model a health check calls). `configured` is the
    providers whose key or base URL is set, and `scripted`.
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
    configured: frozenset[str] = frozenset({"scripted"})
    health_models: dict[str, str] = dict(HEALTH_MODELS)

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
        signs = {
            "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
            "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
            "groq": ("GROQ_API_KEY",),
            "ollama": ("OLLAMA_BASE_URL",),
        }
        fields["configured"] = frozenset(
            {"scripted"} | {p for p, names in signs.items() if any(environ.get(n) for n in names)}
        )
        fields["health_models"] = {
            provider: environ.get(f"HEDDLE_HEALTH_MODEL_{provider.upper()}") or model
            for provider, model in HEALTH_MODELS.items()
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

    @classmethod
    def from_process(cls) -> ProviderSettings:
        """Read from this process's environment (once, by `Settings`)."""
        return cls.from_env(os.environ)
