"""What a call cost: the price table, its overrides, and the router filling in the cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.llm import LlmRequest, LlmResult, Message, Usage
from infra.llm.pricing import PriceTable
from infra.llm.router import ProviderRouter, ProviderSettings


def answer(provider: str, model: str, usage: Usage) -> LlmResult:
    return LlmResult(
        text="ok", finish_reason="stop", usage=usage, model=model, provider=provider, latency_ms=1.0
    )


MILLION_IN_MILLION_OUT = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


def test_a_known_model_costs_its_input_cached_and_output_prices() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cached_tokens=400_000)

    result = PriceTable().priced(answer("openai", "gpt-4o", usage), "gpt-4o")

    # 600k fresh at $2.50/M + 400k cached at $1.25/M + 100k out at $10/M
    assert result.cost_usd == pytest.approx(1.50 + 0.50 + 1.00)
    assert result.priced


def test_a_dated_snapshot_costs_what_its_model_costs() -> None:
    table = PriceTable()

    dated = table.priced(
        answer("anthropic", "claude-sonnet-4-20250514", MILLION_IN_MILLION_OUT), "claude-sonnet-4-0"
    )
    mini = table.priced(
        answer("openai", "gpt-4o-mini-2024-07-18", MILLION_IN_MILLION_OUT), "gpt-4o-mini"
    )

    assert dated.cost_usd == pytest.approx(3 + 15)
    assert mini.cost_usd == pytest.approx(0.15 + 0.60)


def test_an_unknown_model_costs_nothing_and_says_its_price_is_unknown() -> None:
    result = PriceTable().priced(
        answer("openai", "gpt-7-turbo", MILLION_IN_MILLION_OUT), "gpt-7-turbo"
    )

    assert (result.cost_usd, result.priced) == (0.0, False)


def test_local_and_scripted_models_are_free_and_priced() -> None:
    table = PriceTable()
    for provider in ("ollama", "scripted"):
        result = table.priced(answer(provider, "anything", MILLION_IN_MILLION_OUT), "anything")
        assert (result.cost_usd, result.priced) == (0.0, True)


def test_heddle_prices_json_overrides_a_price_and_adds_a_provider() -> None:
    table = PriceTable.from_setting(
        json.dumps(
            {
                "openai:gpt-4o": {"input": 1, "output": 2},
                "vllm:*": {"input": 0.1, "output": 0.2, "cached_input": 0.05},
            }
        )
    )

    gpt = table.priced(answer("openai", "gpt-4o", MILLION_IN_MILLION_OUT), "gpt-4o")
    vllm = table.priced(answer("vllm", "qwen", MILLION_IN_MILLION_OUT), "qwen")
    mini = table.priced(answer("openai", "gpt-4o-mini", MILLION_IN_MILLION_OUT), "gpt-4o-mini")

    assert gpt.cost_usd == pytest.approx(3.0)
    assert vllm.cost_usd == pytest.approx(0.3)
    assert vllm.priced
    assert mini.cost_usd == pytest.approx(0.75)  # untouched defaults stay


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_heddle_prices_can_name_a_yaml_or_json_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"prices{suffix}"
    prices = {"groq:my-fine-tune": {"input": 1.0, "output": 1.0}}
    path.write_text(json.dumps(prices))  # JSON is valid YAML too

    table = PriceTable.from_setting(str(path))

    result = table.priced(answer("groq", "my-fine-tune", MILLION_IN_MILLION_OUT), "my-fine-tune")
    assert result.cost_usd == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ('{"gpt-4o": {"input": 1, "output": 1}}', "must be written provider:model"),
        ('{"openai:gpt-4o": {"input": -1, "output": 1}}', "bad price for 'openai:gpt-4o'"),
        ('{"openai:gpt-4o": {"input": 1}}', "bad price for 'openai:gpt-4o'"),
        ("/nowhere/prices.yaml", "could not be read"),
        ("{not json", "could not be read"),
    ],
)
def test_a_bad_heddle_prices_setting_is_refused_with_the_reason(
    setting: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match="HEDDLE_PRICES") as caught:
        PriceTable.from_setting(setting)
    assert complaint in str(caught.value)


async def test_the_router_fills_in_the_cost_of_completions_and_of_streamed_results() -> None:
    settings = ProviderSettings.from_env(
        {"HEDDLE_PRICES": '{"scripted:echo": {"input": 1000000, "output": 2000000}}'}
    )
    router = ProviderRouter(settings)
    request = LlmRequest(model="scripted:echo", messages=[Message(role="user", content="a b c")])

    completed = await router.complete(request)
    streamed = [item async for item in router.stream(request)][-1]
    await router.aclose()

    # the scripted echo counts 3 words in and 3 out: 3 x $1 + 3 x $2
    assert completed.cost_usd == pytest.approx(9.0)
    assert isinstance(streamed, LlmResult)
    assert streamed.cost_usd == pytest.approx(9.0)
