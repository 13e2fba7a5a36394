"""waste: requests that failed after the provider billed them (499s with tokens, broken streams)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from analytics.recommendations import waste
from tests.analytics.recommendation_factories import MILLION, MONTH_AGO, generated, only_openai, rows, window

pytestmark = pytest.mark.django_db

RETRIED = [
    {"model": "gpt-4o", "provider": "openai", "status": 503, "error_code": "upstream_error", "ms": 120.0},
    {"model": "gpt-4o", "provider": "openai", "status": 200, "error_code": None, "ms": 800.0},
]


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def test_billed_failures_are_the_waste_and_retries_are_evidence(owner, owner_key):
    key = owner_key[0]
    rows(owner, key, n=12, status=499, prompt=10_000, completion=2000)  # the client went away
    rows(owner, key, n=12, first=MONTH_AGO + timedelta(minutes=1), status=502, prompt=10_000, completion=2000)
    rows(owner, key, n=5, first=MONTH_AGO + timedelta(minutes=2), status=429, prompt=0, completion=0)  # free
    rows(owner, key, n=3, first=MONTH_AGO + timedelta(minutes=3), attempts=RETRIED)
    rows(owner, key, n=20, first=MONTH_AGO + timedelta(minutes=4))

    [rec] = generated(owner, "waste")

    each = (10_000 * Decimal("2.5") + 2000 * Decimal(10)) / MILLION
    assert 24 * each == Decimal("1.08")
    assert rec.estimated_monthly_savings_usd == Decimal("1.0800")
    assert rec.scope == {"api_key_id": str(key.id), "api_key_ids": [str(key.id)]}
    assert rec.evidence["billed_failures"] == 24 and rec.evidence["requests"] == 52
    assert rec.evidence["by_status_class"] == {
        "cancelled": {"requests": 12, "cost_usd": "0.54"},
        "server": {"requests": 12, "cost_usd": "0.54"},
    }
    assert rec.evidence["retried_requests"] == 3 and rec.evidence["failed_attempts"] == 3
    assert rec.evidence["failed_attempt_statuses"] == {"503": 3}
    assert rec.evidence["failed_attempt_ms"] == 360.0
    assert "cancelled: 12 requests, $0.54" in rec.savings_arithmetic
    assert "Saved in the window: $1.08." in rec.savings_arithmetic


def test_failures_nobody_paid_for_are_silent(owner, owner_key):
    rows(owner, owner_key[0], n=50, status=429, prompt=0, completion=0)
    rows(owner, owner_key[0], n=50, status=503, prompt=0, completion=0, attempts=RETRIED)
    assert waste.find(window(owner)) == []


def test_a_few_billed_failures_are_silent(owner, owner_key):
    rows(owner, owner_key[0], n=waste.MIN_BILLED_FAILURES - 1, status=499, prompt=100_000, completion=2000)
    assert waste.find(window(owner)) == []
