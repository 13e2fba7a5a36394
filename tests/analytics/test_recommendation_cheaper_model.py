"""cheaper_model: an expensive model on short classification / extraction, or a cheaper model of its tier."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from analytics.recommendations import cheaper_model
from gateway.catalog import get_catalog
from tests.analytics.recommendation_factories import (
    GPT_4O_MINI,
    NOW,
    M,
    generate,
    only_openai,
    rows,
    window,
)
from tests.gateway.provider_settings import with_providers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def test_short_classification_on_gpt_4o_is_sent_to_gpt_4o_mini(owner, owner_key):
    key = owner_key[0]
    made = rows(owner, key, n=100, task_type="classification", prompt=10_000, completion=5)

    [rec] = generate(owner)

    # gpt-4o: 10,000 × $2.50 + 5 × $10 per 1M; gpt-4o-mini: 10,000 × $0.15 + 5 × $0.60 per 1M; × 100 requests
    paid = 100 * (10_000 * Decimal("2.5") + 5 * Decimal(10)) / M
    mini = 100 * (10_000 * Decimal("0.15") + 5 * Decimal("0.6")) / M
    assert paid - mini == Decimal("2.3547")
    assert rec.kind == "cheaper_model" and rec.suggested_model == "gpt-4o-mini"
    assert rec.scope == {"model": "gpt-4o", "task_type": "classification", "api_key_ids": [str(key.id)]}
    assert rec.estimated_monthly_savings_usd == Decimal("2.3547")
    assert "1,000,000 input × $0.15" in rec.savings_arithmetic
    assert "500 output × $0.6" in rec.savings_arithmetic
    assert "$2.505 − $0.1503 = $2.3547" in rec.savings_arithmetic
    assert "× 30 / 30 observed day(s)" in rec.savings_arithmetic
    assert rec.evidence["requests"] == 100
    assert rec.evidence["completion_tokens_p95"] == 5
    assert rec.evidence["share_of_requests"] == 1.0
    assert rec.evidence["tier"] == 3 and rec.evidence["suggested_tier"] == 2
    assert rec.evidence["example_request_ids"][0] == made[-1].request_id
    assert 0 < rec.confidence < 1
    assert "classification" in rec.title and "gpt-4o-mini" in rec.detail


def test_savings_are_scaled_to_a_month_from_the_days_observed(owner, owner_key):
    first = NOW - timedelta(days=10, hours=12)
    rows(owner, owner_key[0], n=100, task_type="extraction", prompt=10_000, completion=5, first=first)
    [finding] = cheaper_model.find(w := window(owner))
    assert w.days == 11  # 10½ days: 11 days begun
    assert finding.savings == Decimal("2.3547")
    assert finding.monthly(w) == (Decimal("2.3547") * 30 / 11).quantize(Decimal("0.0001"))


def test_another_task_of_gpt_4o_gets_a_cheaper_model_of_the_same_tier(owner, owner_key):
    rows(owner, owner_key[0], n=60, task_type="chat", prompt=10_000, completion=200)
    [finding] = cheaper_model.find(window(owner))
    assert finding.suggested_model == "gpt-5-chat-latest"  # tier 3, $1.25 / $10: the cheapest as capable
    assert finding.scope["task_type"] == ""
    paid = 60 * (10_000 * Decimal("2.5") + 200 * Decimal(10)) / M
    assert finding.savings == paid - 60 * (10_000 * Decimal("1.25") + 200 * Decimal(10)) / M


def test_both_at_once_do_not_count_the_classification_twice(owner, owner_key):
    rows(owner, owner_key[0], n=100, task_type="classification", prompt=10_000, completion=5)
    rows(owner, owner_key[0], n=60, task_type="chat", prompt=10_000, completion=200)
    findings = {f.scope["task_type"]: f for f in cheaper_model.find(window(owner))}
    assert set(findings) == {"classification", ""}
    assert findings[""].evidence["requests"] == 60
    assert findings[""].evidence["task_types"] == ["chat"]


def test_too_few_requests_stay_silent(owner, owner_key):
    rows(
        owner,
        owner_key[0],
        n=cheaper_model.MIN_REQUESTS - 1,
        task_type="classification",
        prompt=10_000,
        completion=5,
    )
    assert cheaper_model.find(window(owner)) == []
    assert generate(owner) == []


def test_long_classification_answers_on_gpt_4o_mini_stay_silent(owner, owner_key):
    rows(
        owner,
        owner_key[0],
        n=200,
        model="gpt-4o-mini",
        pricing=GPT_4O_MINI,
        task_type="classification",
        prompt=10_000,
        completion=cheaper_model.SHORT_OUTPUT_P95_TOKENS + 1,
    )
    assert cheaper_model.find(window(owner)) == []


def test_the_cheapest_small_model_is_silent(owner, owner_key):
    nano = {"input_per_mtok": "0.1", "cached_input_per_mtok": "0.025", "output_per_mtok": "0.4"}
    rows(owner, owner_key[0], n=200, model="gpt-4.1-nano", pricing=nano, task_type="extraction", completion=5)
    assert cheaper_model.find(window(owner)) == []


def test_rerouted_and_failed_requests_are_not_studied(owner, owner_key):
    rows(
        owner, owner_key[0], n=100, task_type="classification", prompt=10_000, completion=5, routing_rule_id=7
    )
    rows(owner, owner_key[0], n=100, task_type="classification", prompt=10_000, completion=5, status=500)
    assert cheaper_model.find(window(owner)) == []


def test_a_tie_goes_to_the_same_provider(owner, owner_key):
    with with_providers(gemini="http://gemini.test"):
        rows(
            owner,
            owner_key[0],
            n=100,
            model="gpt-4o-mini",
            pricing=GPT_4O_MINI,
            task_type="classification",
            prompt=10_000,
            completion=5,
        )
        [finding] = cheaper_model.find(window(owner))
    # gpt-4.1-nano and gemini-2.5-flash-lite both cost $0.10 / $0.40: the same provider wins
    assert finding.suggested_model == "gpt-4.1-nano"


def test_every_tiered_family_is_in_the_catalogue():
    families = {model.family for model in get_catalog().models}
    assert set(cheaper_model.CAPABILITY_TIERS) <= families
    assert cheaper_model.REASONING_FAMILIES <= set(cheaper_model.CAPABILITY_TIERS)
