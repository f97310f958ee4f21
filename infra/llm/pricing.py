"""What a call cost: a price table in USD per million tokens, overridable by settings.

Prices are the providers' published list prices (as of late 2025) for standard, non-batch
calls; check them against your invoice and override any of them with `HEDDLE_PRICES`,
which holds JSON or the path of a JSON or YAML file:

    {"openai:gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25},
     "vllm-box:*": {"input": 0, "output": 0}}

A key is `provider:model`, or `provider:*` for every model of a provider. `cached_input`
(prompt tokens read from the provider's cache) defaults to the input price. A model
without a price costs 0 and its result says `priced: false`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.llm import LlmResult, Usage

MILLION = 1_000_000
# A dated snapshot or `-latest` alias costs what its model costs.
_VERSION_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        total = (
            (usage.input_tokens - cached) * self.input
            + cached * cached_price
            + usage.output_tokens * self.output
        )
        return round(total / MILLION, 10)


def _p(input: float, output: float, cached_input: float | None = None) -> Price:
    return Price(input=input, output=output, cached_input=cached_input)


DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI
    "openai:gpt-4o": _p(2.50, 10.00, 1.25),
    "openai:gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "openai:gpt-4.1": _p(2.00, 8.00, 0.50),
    "openai:gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "openai:gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "openai:o1": _p(15.00, 60.00, 7.50),
    "openai:o1-mini": _p(1.10, 4.40, 0.55),
    "openai:o3": _p(2.00, 8.00, 0.50),
    "openai:o3-mini": _p(1.10, 4.40, 0.55),
    "openai:o4-mini": _p(1.10, 4.40, 0.275),
    # Anthropic (cache reads at a tenth of input; cache writes are billed at the input price
    # here, a quarter below Anthropic's 1.25x)
    "anthropic:claude-3-5-sonnet": _p(3.00, 15.00, 0.30),
    "anthropic:claude-3-7-sonnet": _p(3.00, 15.00, 0.30),
    "anthropic:claude-sonnet-4": _p(3.00, 15.00, 0.30),
    "anthropic:claude-sonnet-4-0": _p(3.00, 15.00, 0.30),
    "anthropic:claude-3-5-haiku": _p(0.80, 4.00, 0.08),
    "anthropic:claude-3-haiku": _p(0.25, 1.25, 0.03),
    "anthropic:claude-opus-4": _p(15.00, 75.00, 1.50),
    "anthropic:claude-opus-4-0": _p(15.00, 75.00, 1.50),
    "anthropic:claude-opus-4-1": _p(15.00, 75.00, 1.50),
    "anthropic:claude-sonnet-4-5": _p(3.00, 15.00, 0.30),
    "anthropic:claude-haiku-4-5": _p(1.00, 5.00, 0.10),
    "anthropic:claude-opus-4-5": _p(5.00, 25.00, 0.50),
    # Groq
    "groq:llama-3.3-70b-versatile": _p(0.59, 0.79),
    "groq:llama-3.1-8b-instant": _p(0.05, 0.08),
    "groq:llama3-70b-8192": _p(0.59, 0.79),
    "groq:llama3-8b-8192": _p(0.05, 0.08),
    # Free: local models and scripts
    "ollama:*": _p(0, 0),
    "scripted:*": _p(0, 0),
}


class PriceTable:
    """Prices by `provider:model`, with `provider:*` as a fallback for a whole provider."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)

    @classmethod
    def from_setting(cls, setting: str | None) -> PriceTable:
        """The default table with `HEDDLE_PRICES` (JSON, or a JSON/YAML file path) on top."""
        table = cls()
        if setting and setting.strip():
            table.prices.update(_parse_overrides(setting.strip()))
        return table

    def price(self, provider: str, model: str) -> Price | None:
        for name in (model, _VERSION_SUFFIX.sub("", model), "*"):
            if (price := self.prices.get(f"{provider}:{name}")) is not None:
                return price
        return None

    def priced(self, result: LlmResult, requested_model: str) -> LlmResult:
        """The result with its cost filled in, or marked unpriced. The answering model
        (often a dated snapshot) is looked up first, then the requested one."""
        price = self.price(result.provider, result.model) or self.price(
            result.provider, requested_model
        )
        if price is None:
            return result.model_copy(update={"cost_usd": 0.0, "priced": False})
        return result.model_copy(update={"cost_usd": price.cost(result.usage), "priced": True})


def _parse_overrides(setting: str) -> dict[str, Price]:
    try:
        if setting.startswith("{"):
            raw: Any = json.loads(setting)
        else:
            path = Path(setting).expanduser()
            text = path.read_text()
            raw = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise ValueError(f"HEDDLE_PRICES could not be read: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError('HEDDLE_PRICES must map "provider:model" to {input, output}')
    prices: dict[str, Price] = {}
    for key, value in raw.items():
        if ":" not in str(key):
            raise ValueError(f"HEDDLE_PRICES: {key!r} must be written provider:model")
        try:
            prices[str(key)] = Price.model_validate(value)
        except ValidationError as error:
            raise ValueError(f"HEDDLE_PRICES: bad price for {key!r}: {error}") from None
    return prices
