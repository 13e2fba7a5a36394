"""newer_snapshot: a dated snapshot whose family has a newer, cheaper one in the catalogue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from analytics.recommendations import newer_snapshot
from tests.analytics.factories import GPT_4O
from tests.analytics.recommendation_factories import M, generate, only_openai, rows, window

pytestmark = pytest.mark.django_db

GPT_4O_MAY = {"input_per_mtok": "5", "cached_input_per_mtok": None, "output_per_mtok": "15"}


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def test_an_old_gpt_4o_snapshot_moves_to_the_newest_cheaper_one(owner, owner_key):
    rows(
        owner,
        owner_key[0],
        n=20,
        model="gpt-4o-2024-05-13",
        pricing=GPT_4O_MAY,
        prompt=100_000,
        completion=1000,
    )

    [rec] = generate(owner)  # the cheaper_model rule leaves this model to newer_snapshot

    paid = 20 * (100_000 * Decimal(5) + 1000 * Decimal(15)) / M
    newer = 20 * (100_000 * Decimal("2.5") + 1000 * Decimal(10)) / M
    assert (paid, newer) == (Decimal("10.3"), Decimal("5.2"))
    assert rec.kind == "newer_snapshot"
    # 2024-08-06 and 2024-11-20 cost the same: the newest wins
    assert rec.suggested_model == "gpt-4o-2024-11-20"
    assert rec.scope["model"] == "gpt-4o-2024-05-13" and rec.scope["task_type"] == ""
    assert rec.estimated_monthly_savings_usd == Decimal("5.1000")
    assert "$10.3 − $5.2 = $5.1" in rec.savings_arithmetic
    assert "2,000,000 input × $2.5" in rec.savings_arithmetic
    assert rec.evidence["family"] == "gpt-4o"


def test_the_newest_snapshot_is_silent(owner, owner_key):
    rows(owner, owner_key[0], n=50, model="gpt-4o-2024-11-20", prompt=100_000)
    assert newer_snapshot.find(window(owner)) == []


def test_an_undated_alias_is_silent(owner, owner_key):
    rows(owner, owner_key[0], n=50, model="gpt-4o", pricing=GPT_4O, prompt=100_000)
    assert newer_snapshot.find(window(owner)) == []


def test_a_newer_snapshot_at_the_same_price_is_silent(owner, owner_key):
    rows(owner, owner_key[0], n=50, model="gpt-4o-2024-08-06", prompt=100_000)  # 2024-11-20 costs the same
    assert newer_snapshot.find(window(owner)) == []


def test_a_snapshot_without_a_newer_one_is_silent(owner, owner_key):
    gpt4 = {"input_per_mtok": "30", "cached_input_per_mtok": None, "output_per_mtok": "60"}
    rows(owner, owner_key[0], n=50, model="gpt-4-0613", pricing=gpt4, prompt=10_000)
    assert newer_snapshot.find(window(owner)) == []


def test_a_few_requests_are_silent(owner, owner_key):
    rows(
        owner, owner_key[0], n=newer_snapshot.MIN_REQUESTS - 1, model="gpt-4o-2024-05-13", pricing=GPT_4O_MAY
    )
    assert newer_snapshot.find(window(owner)) == []
