"""analytics.pricing.cost_usd and the cost a log row gets: exact Decimal arithmetic per 1M tokens."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from analytics.pricing import cost_usd, prices_of
from analytics.services import _build
from gateway.catalog import ModelInfo

# gpt-4o style: $2.50 input, $1.25 cached input, $10 output per 1M tokens (strings, as rows record them).
OPENAI = {
    "input_per_mtok": "2.5",
    "cached_input_per_mtok": "1.25",
    "cache_write_per_mtok": None,
    "output_per_mtok": "10",
}
# claude-sonnet style: $3 input, $0.30 cache read, $3.75 cache write, $15 output.
ANTHROPIC = {
    "input_per_mtok": "3",
    "cached_input_per_mtok": "0.3",
    "cache_write_per_mtok": "3.75",
    "output_per_mtok": "15",
}


def cost(prices, prompt=0, cached=0, write=0, completion=0):
    return cost_usd(
        prices,
        prompt_tokens=prompt,
        cached_tokens=cached,
        cache_write_tokens=write,
        completion_tokens=completion,
    )


def test_plain_input_and_output():
    # 1000 × 2.5 + 200 × 10 = 4500 per 1M tokens
    result = cost(OPENAI, prompt=1000, completion=200)
    assert result == Decimal("0.0045")
    assert isinstance(result, Decimal)


def test_one_million_tokens_cost_the_listed_price():
    assert cost(OPENAI, prompt=1_000_000) == Decimal("2.5")
    assert cost(OPENAI, completion=1_000_000) == Decimal("10")


def test_single_token_is_exact_not_rounded_by_float():
    assert cost({"input_per_mtok": "0.1", "output_per_mtok": "0.3"}, prompt=1, completion=1) == Decimal(
        "0.0000004"
    )


def test_cached_tokens_are_billed_once_at_the_cached_price():
    # 600 uncached × 2.5 + 400 cached × 1.25 + 200 × 10 = 1500 + 500 + 2000
    assert cost(OPENAI, prompt=1000, cached=400, completion=200) == Decimal("0.004")


def test_all_cached_prompt_is_billed_entirely_at_the_cached_price():
    assert cost(OPENAI, prompt=1000, cached=1000) == Decimal("0.00125")


@pytest.mark.parametrize(
    "prices",
    [
        pytest.param({"input_per_mtok": "2.5", "output_per_mtok": "10"}, id="key-absent"),
        pytest.param(
            {"input_per_mtok": "2.5", "cached_input_per_mtok": None, "output_per_mtok": "10"}, id="key-null"
        ),
    ],
)
def test_cached_tokens_without_a_cached_price_are_billed_at_the_input_price(prices):
    # 1000 × 2.5 + 200 × 10: the same as if nothing were cached, never less, never twice
    assert cost(prices, prompt=1000, cached=400, completion=200) == Decimal("0.0045")


def test_cache_write_tokens_are_billed_at_the_cache_write_price():
    # Anthropic-style, as normalised: prompt 1000 includes 200 cache reads and 300 cache writes.
    # 500 × 3 + 200 × 0.3 + 300 × 3.75 + 100 × 15 = 1500 + 60 + 1125 + 1500 = 4185
    assert cost(ANTHROPIC, prompt=1000, cached=200, write=300, completion=100) == Decimal("0.004185")


def test_cache_write_tokens_without_a_write_price_are_billed_at_the_input_price():
    # 700 × 2.5 + 300 × 2.5 (no write price) = 2500
    assert cost(OPENAI, prompt=1000, write=300) == Decimal("0.0025")


def test_cached_and_written_tokens_are_never_billed_below_zero_uncached():
    # Inconsistent counts from a provider: uncached input is clamped at 0, not negative.
    assert cost(ANTHROPIC, prompt=100, cached=80, write=80) == (
        80 * Decimal("0.3") + 80 * Decimal("3.75")
    ) / (10**6)


@pytest.mark.parametrize("prices", [None, {}], ids=["none", "empty"])
def test_unknown_prices_give_none_not_zero(prices):
    assert cost(prices, prompt=1000, completion=200) is None


def test_prices_of_records_strings_and_none_for_an_unpriced_model():
    priced = ModelInfo(
        id="m",
        provider="openai",
        upstream="m",
        input_per_mtok=Decimal("2.5"),
        cached_input_per_mtok=Decimal("1.25"),
        output_per_mtok=Decimal("10"),
    )
    assert prices_of(priced) == {
        "input_per_mtok": "2.5",
        "cached_input_per_mtok": "1.25",
        "cache_write_per_mtok": None,
        "output_per_mtok": "10",
        "price_date": None,
    }
    assert prices_of(ModelInfo(id="m", provider="openai", upstream="m", input_per_mtok=Decimal(1))) is None
    assert prices_of(None) is None


# --- the cost a log row gets -----------------------------------------------------------------------------


def row(**fields) -> dict:
    base = {
        "request_id": "req_test",
        "user_id": 1,
        "api_key_id": None,
        "created_ts": time.time(),
        "prompt_tokens": 0,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "completion_tokens": 0,
        "reasoning_tokens": 0,
        "status_code": 200,
        "pricing": OPENAI,
    }
    base.update(fields)
    return base


def test_reasoning_tokens_are_part_of_completion_tokens_not_billed_twice():
    built = _build(row(prompt_tokens=100, completion_tokens=1000, reasoning_tokens=800))
    # 100 × 2.5 + 1000 × 10: the 800 reasoning tokens are inside the 1000
    assert built.cost_usd == Decimal("0.01025")
    assert built.cost_unknown is False
    assert built.reasoning_tokens == 800


def test_row_cost_matches_cost_usd_for_cached_and_written_tokens():
    built = _build(
        row(
            prompt_tokens=1000,
            cached_tokens=200,
            cache_write_tokens=300,
            completion_tokens=100,
            pricing=ANTHROPIC,
        )
    )
    assert built.cost_usd == Decimal("0.004185") and not built.cost_unknown


@pytest.mark.parametrize("pricing", [OPENAI, None], ids=["priced", "unpriced"])
def test_row_with_zero_tokens_costs_zero_not_none(pricing):
    built = _build(row(status_code=400, pricing=pricing))
    assert built.cost_usd == Decimal(0)
    assert built.cost_usd is not None
    assert built.cost_unknown is False


def test_row_with_tokens_but_no_prices_is_flagged_cost_unknown():
    built = _build(row(prompt_tokens=10, completion_tokens=5, pricing=None))
    assert built.cost_usd is None
    assert built.cost_unknown is True


def test_row_with_only_prompt_tokens_is_still_priced():
    built = _build(row(prompt_tokens=10))
    assert built.cost_usd == Decimal("0.000025") and not built.cost_unknown
