"""output_length: truncated answers that are asked again; max_tokens far above what answers use."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from analytics.recommendations import output_length
from tests.analytics.recommendation_factories import MONTH_AGO, M, generated, only_openai, rows, window

pytestmark = pytest.mark.django_db

TWO_HOURS = timedelta(hours=2)


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def _truncated_and_retried(owner, key, *, retried: bool = True, truncated: int = 20, normal: int = 60):
    cut = rows(owner, key, n=truncated, every=TWO_HOURS, prompt=5000, completion=4096, finish_reason="length")
    if retried:  # the same prompt again, 2 minutes later
        rows(owner, key, n=truncated, first=MONTH_AGO + timedelta(minutes=2), every=TWO_HOURS, prompt=5000)
    rows(owner, key, n=normal, first=MONTH_AGO + timedelta(minutes=30), every=TWO_HOURS, prompt=3000)
    return cut


def test_truncated_answers_asked_again_are_the_waste(owner, owner_key):
    key = owner_key[0]
    cut = _truncated_and_retried(owner, key)

    [rec] = [r for r in generated(owner, "output_length") if r.scope["signal"] == "truncated"]

    each = (5000 * Decimal("2.5") + 4096 * Decimal(10)) / M
    assert each * 20 == Decimal("1.0692")
    assert rec.estimated_monthly_savings_usd == Decimal("1.0692")
    assert rec.scope == {"model": "gpt-4o", "signal": "truncated", "api_key_ids": [str(key.id)]}
    assert rec.evidence["truncated"] == 20 and rec.evidence["retried"] == 20
    assert rec.evidence["truncated_share"] == 0.2
    assert rec.evidence["example_request_ids"][0] == cut[-1].request_id
    assert "20 truncated answers followed by a retry cost $1.0692" in rec.savings_arithmetic
    assert rec.confidence < 0.4  # inferred retries: an indirect saving


def test_truncated_answers_nobody_retried_are_silent(owner, owner_key):
    _truncated_and_retried(owner, owner_key[0], retried=False)
    assert output_length.find(window(owner)) == []


def test_rare_truncation_is_silent(owner, owner_key):
    _truncated_and_retried(owner, owner_key[0], truncated=10, normal=300)  # 10 of 320: 3 %
    assert output_length.find(window(owner)) == []


def test_max_tokens_far_above_the_answers_saves_the_runaway_tail(owner, owner_key):
    rows(owner, owner_key[0], n=190, completion=100, max_tokens=16_000)
    rows(
        owner,
        owner_key[0],
        n=10,
        first=MONTH_AGO + timedelta(minutes=1),
        completion=15_000,
        max_tokens=16_000,
    )

    [finding] = output_length.find(window(owner))

    # p95 of the answers is 100 tokens: a limit of 1.5 × 100, rounded up to 16, is 160
    assert finding.evidence["completion_tokens_p95"] == 100
    assert finding.evidence["suggested_max_tokens"] == 160
    assert finding.evidence["answers_over_suggested"] == 10
    assert finding.savings == 10 * (15_000 - 160) * Decimal(10) / M == Decimal("1.484")
    assert finding.scope["signal"] == "max_tokens"
    assert "148,400 output tokens beyond 160 × $10 / 1M = $1.484" in finding.arithmetic


def test_max_tokens_close_to_the_answers_is_silent(owner, owner_key):
    rows(owner, owner_key[0], n=190, completion=100, max_tokens=300)
    rows(owner, owner_key[0], n=10, first=MONTH_AGO + timedelta(minutes=1), completion=300, max_tokens=300)
    assert output_length.find(window(owner)) == []
