"""system_prompt: one recurring system prompt is most of its requests' input; savings if trimmed by half."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from analytics.recommendations import system_prompt
from tests.analytics.recommendation_factories import (
    CLAUDE_SONNET,
    MILLION,
    MONTH_AGO,
    generated,
    only_openai,
    rows,
    window,
)

pytestmark = pytest.mark.django_db

SYSTEM = "s" * 64


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def test_trimming_a_dominant_system_prompt_by_half(owner, owner_key):
    key = owner_key[0]
    rows(owner, key, n=100, prompt=16_000, system_hash=SYSTEM, system_tokens=12_000)
    rows(  # on Claude, with the system prompt read from the prompt cache at $0.30
        owner,
        key,
        n=50,
        first=MONTH_AGO + timedelta(minutes=1),
        model="claude-3-5-sonnet-20241022",
        provider="anthropic",
        pricing=CLAUDE_SONNET,
        prompt=16_000,
        cached=12_000,
        system_hash=SYSTEM,
        system_tokens=12_000,
    )

    [rec] = generated(owner, "system_prompt")

    gpt_input = 100 * 16_000 * Decimal("2.5") / MILLION
    claude_input = 50 * (4000 * Decimal(3) + 12_000 * Decimal("0.3")) / MILLION
    half = Decimal("0.5") * Decimal(12_000) / Decimal(16_000)
    assert half * gpt_input + half * claude_input == Decimal("1.7925")
    assert rec.estimated_monthly_savings_usd == Decimal("1.7925")
    assert rec.scope == {"system_prompt_hash": SYSTEM, "api_key_ids": [str(key.id)]}
    assert rec.evidence["requests"] == 150
    assert rec.evidence["system_prompt_tokens"] == 12_000
    assert rec.evidence["system_share_of_input"] == 0.75
    assert rec.evidence["models"] == ["claude-3-5-sonnet-20241022", "gpt-4o"]
    assert "Assumption: the system prompt is trimmed by 50 %." in rec.savings_arithmetic
    assert "gpt-4o: 0.5 × 1,200,000 system-prompt tokens / 1,600,000 input tokens × $4 input cost = $1.5" in (
        rec.savings_arithmetic
    )


def test_a_short_system_prompt_is_silent(owner, owner_key):
    rows(owner, owner_key[0], n=200, prompt=400, system_hash=SYSTEM, system_tokens=300)
    assert system_prompt.find(window(owner)) == []


def test_a_system_prompt_that_is_a_small_share_of_the_input_is_silent(owner, owner_key):
    rows(owner, owner_key[0], n=200, prompt=16_000, system_hash=SYSTEM, system_tokens=2000)
    assert system_prompt.find(window(owner)) == []


def test_a_rare_system_prompt_is_silent(owner, owner_key):
    rows(
        owner,
        owner_key[0],
        n=system_prompt.MIN_REQUESTS - 1,
        prompt=16_000,
        system_hash=SYSTEM,
        system_tokens=12_000,
    )
    assert system_prompt.find(window(owner)) == []
