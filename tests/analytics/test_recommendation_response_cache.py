"""response_cache: identical requests (same request_hash) within the cache TTL, paid for each time."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.services import api_key_create
from analytics.recommendations import response_cache
from tests.analytics.recommendation_factories import MONTH_AGO, M, generated, only_openai, rows, window

pytestmark = pytest.mark.django_db

SAME = "a" * 64


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def test_repeats_within_the_ttl_are_the_savings(owner, owner_key):
    key = owner_key[0]
    # One request every 10 minutes for 17 hours: each hour, one miss stores the answer and 5 hits follow.
    repeated = rows(owner, key, n=102, every=timedelta(minutes=10), request_hash=SAME, prompt=10_000)
    rows(owner, key, n=200, first=MONTH_AGO + timedelta(minutes=5), prompt=10_000)  # all different

    [rec] = generated(owner, "response_cache")

    each = (10_000 * Decimal("2.5") + 100 * Decimal(10)) / M
    assert each * 85 == Decimal("2.21")
    assert rec.kind == "response_cache"
    assert rec.scope == {"api_key_id": str(key.id), "api_key_ids": [str(key.id)]}
    assert rec.estimated_monthly_savings_usd == Decimal("2.2100")
    assert rec.evidence["repeats"] == 85 and rec.evidence["requests"] == 302
    assert rec.evidence["duplicate_rate"] == round(85 / 302, 4)
    assert rec.evidence["distinct_repeated_requests"] == 1
    assert rec.evidence["example_request_ids"][0] == repeated[-1].request_id
    assert "85 repeats within 3600 s" in rec.savings_arithmetic and "$2.21" in rec.savings_arithmetic


def test_repeats_further_apart_than_the_ttl_are_silent(owner, owner_key):
    rows(owner, owner_key[0], n=100, every=timedelta(minutes=61), request_hash=SAME, prompt=10_000)
    assert response_cache.find(window(owner)) == []


def test_a_low_duplicate_rate_is_silent(owner, owner_key):
    rows(owner, owner_key[0], n=30, every=timedelta(minutes=1), request_hash=SAME, prompt=10_000)
    rows(owner, owner_key[0], n=600, every=timedelta(minutes=30), prompt=10_000)
    assert response_cache.find(window(owner)) == []  # 29 repeats of 630: under 5 %


def test_a_key_whose_cache_is_already_on_is_silent(owner):
    key, _ = api_key_create(user=owner, name="cached")
    key.cache_ttl_seconds = 3600
    key.save()
    rows(owner, key, n=102, every=timedelta(minutes=10), request_hash=SAME, prompt=10_000)
    assert response_cache.find(window(owner)) == []


def test_the_same_request_from_two_keys_is_not_a_repeat(owner, owner_key):
    other, _ = api_key_create(user=owner, name="other")
    rows(owner, owner_key[0], n=50, every=timedelta(hours=2), request_hash=SAME, prompt=10_000)
    rows(
        owner,
        other,
        n=50,
        first=MONTH_AGO + timedelta(minutes=1),
        every=timedelta(hours=2),
        request_hash=SAME,
    )
    assert response_cache.find(window(owner)) == []
