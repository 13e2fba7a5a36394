"""batch_api: a key's non-streamed requests in bursts or off-hours, at half price through a Batch API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from analytics.recommendations import batch_api
from tests.analytics.recommendation_factories import M, generated, only_openai, rows, window

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
FIRST_DAY = datetime(2026, 2, 17, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def test_bursts_and_night_traffic_are_half_price(owner, owner_key):
    key = owner_key[0]
    rows(owner, key, n=29, every=DAY, prompt=10_000)  # one a day at 13:34: interactive use
    for day in range(5):  # a script: 30 requests in one minute, at 14:00, on five days
        rows(
            owner,
            key,
            n=30,
            first=FIRST_DAY + day * DAY + timedelta(hours=14),
            every=timedelta(seconds=1),
            prompt=10_000,
        )
    night = rows(
        owner, key, n=30, first=FIRST_DAY + timedelta(hours=2), every=DAY, prompt=10_000
    )  # 02:00 UTC
    rows(
        owner,
        key,
        n=100,
        first=FIRST_DAY + timedelta(hours=15),
        every=timedelta(seconds=1),
        stream=True,
        prompt=10_000,
    )  # streamed: someone is watching
    rows(
        owner,
        key,
        n=30,
        first=FIRST_DAY + timedelta(hours=16),
        every=timedelta(seconds=1),
        model="gemini-2.5-pro",
        provider="gemini",
        prompt=10_000,
    )  # no batch discount in the table

    [rec] = generated(owner, "batch_api")

    each = (10_000 * Decimal("2.5") + 100 * Decimal(10)) / M
    assert Decimal("0.5") * 180 * each == Decimal("2.34")
    assert rec.estimated_monthly_savings_usd == Decimal("2.3400")
    assert rec.scope == {"api_key_id": str(key.id), "api_key_ids": [str(key.id)]}
    assert rec.evidence["requests"] == 209
    assert rec.evidence["batchable_requests"] == 180
    assert rec.evidence["burst_requests"] == 150 and rec.evidence["off_hours_requests"] == 30
    assert rec.evidence["peak_requests_per_minute"] == 30
    assert "openai: 50 % × $4.68 = $2.34" in rec.savings_arithmetic
    assert rec.evidence["example_request_ids"] == [night[-1].request_id]  # the last batchable minute


def test_steady_daytime_traffic_is_silent(owner, owner_key):
    rows(
        owner,
        owner_key[0],
        n=150,
        first=FIRST_DAY + timedelta(hours=8),
        every=timedelta(minutes=5),
        prompt=10_000,
    )
    assert batch_api.find(window(owner)) == []


def test_streamed_bursts_are_silent(owner, owner_key):
    for day in range(5):
        rows(
            owner,
            owner_key[0],
            n=30,
            first=FIRST_DAY + day * DAY + timedelta(hours=14),
            every=timedelta(seconds=1),
            stream=True,
            prompt=10_000,
        )
    assert batch_api.find(window(owner)) == []


def test_a_few_batchable_requests_are_silent(owner, owner_key):
    n = batch_api.MIN_BATCHABLE_REQUESTS - 1  # all in bursts, but too few
    rows(
        owner,
        owner_key[0],
        n=n,
        first=FIRST_DAY + timedelta(hours=14),
        every=timedelta(seconds=1),
        prompt=10_000,
    )
    assert batch_api.find(window(owner)) == []
