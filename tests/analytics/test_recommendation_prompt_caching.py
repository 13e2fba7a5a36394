"""prompt_caching: a long prefix shared by many requests while the provider's cache reads none of it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from analytics.recommendations import prompt_caching
from tests.analytics.factories import GPT_4O
from tests.analytics.recommendation_factories import (
    CLAUDE_SONNET,
    MONTH_AGO,
    M,
    generated,
    only_openai,
    rows,
    window,
)

pytestmark = pytest.mark.django_db

PREFIX = "p" * 64
SONNET = "claude-3-5-sonnet-20241022"


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def _shared(owner, key, *, n, first=MONTH_AGO, every=timedelta(minutes=2), **fields):
    defaults = dict(model=SONNET, provider="anthropic", pricing=CLAUDE_SONNET, prompt=12_000, completion=50)
    return rows(
        owner,
        key,
        n=n,
        first=first,
        every=every,
        prefix_hash=PREFIX,
        prefix_tokens=10_000,
        **(defaults | fields),
    )


def test_a_shared_uncached_prefix_on_claude_is_worth_caching(owner, owner_key):
    key = owner_key[0]
    _shared(owner, key, n=50)  # 2 minutes apart: one cache write, then 49 hits
    _shared(owner, key, n=10, first=MONTH_AGO + timedelta(days=1))  # an hour later: a write, 9 hits

    [rec] = generated(owner, "prompt_caching")

    gained = 58 * 10_000 * (Decimal(3) - Decimal("0.3")) / M  # hits × prefix × (input − cached price)
    writes = 2 * 10_000 * (Decimal("3.75") - Decimal(3)) / M  # Anthropic's cache-write premium
    assert gained - writes == Decimal("1.551")
    assert rec.estimated_monthly_savings_usd == Decimal("1.5510")
    assert rec.scope == {"model": SONNET, "prefix_hash": PREFIX, "api_key_ids": [str(key.id)]}
    assert rec.evidence["cache_hits"] == 58 and rec.evidence["cache_writes"] == 2
    assert rec.evidence["prefix_tokens"] == 10_000 and rec.evidence["cached_share"] == 0.0
    assert "58 hits × 10,000 prefix tokens × ($3 − $0.3) / 1M = $1.566" in rec.savings_arithmetic
    assert "2 cache writes × 10,000 tokens × ($3.75 − $3) / 1M = $0.015" in rec.savings_arithmetic
    assert "cache_control" in rec.detail


def test_openai_has_no_write_premium_and_what_is_cached_already_counts(owner, owner_key):
    _shared(owner, owner_key[0], n=60, model="gpt-4o", provider="openai", pricing=GPT_4O, cached=500)
    [finding] = prompt_caching.find(window(owner))
    gained = 59 * 10_000 * (Decimal("2.5") - Decimal("1.25")) / M
    already = 60 * 500 * (Decimal("2.5") - Decimal("1.25")) / M
    assert finding.savings == gained - already
    assert "prompt_cache_key" in finding.detail


def test_a_prefix_the_cache_already_reads_is_silent(owner, owner_key):
    _shared(owner, owner_key[0], n=60, cached=9_000)
    assert prompt_caching.find(window(owner)) == []


def test_too_few_requests_share_it_stays_silent(owner, owner_key):
    _shared(owner, owner_key[0], n=prompt_caching.MIN_SHARED_REQUESTS - 1)
    assert prompt_caching.find(window(owner)) == []


def test_requests_too_far_apart_for_a_cache_are_silent(owner, owner_key):
    _shared(owner, owner_key[0], n=60, every=timedelta(minutes=6))  # every request writes, none hits
    assert prompt_caching.find(window(owner)) == []


def test_a_model_without_a_cached_price_is_silent(owner, owner_key):
    gpt4 = {"input_per_mtok": "30", "cached_input_per_mtok": None, "output_per_mtok": "60"}
    _shared(owner, owner_key[0], n=60, model="gpt-4", provider="openai", pricing=gpt4)
    assert prompt_caching.find(window(owner)) == []
