"""Generating recommendations: upserts by fingerprint, idempotent, dismissed ones stay dismissed, stale new
ones go; the daily task and `run_analytics` run it for every user with traffic."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts.services import api_key_create, user_get_or_create
from analytics import tasks
from analytics.models import Recommendation, RequestLog
from analytics.recommendations import MIN_MONTHLY_SAVINGS_USD, fingerprint
from analytics.recommendations.services import recommendation_dismiss
from tests.analytics.factories import pin_clock
from tests.analytics.recommendation_factories import NOW, generate, only_openai, rows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _openai_only():
    with only_openai():
        yield


def _classification(user, key, n=100, **fields):
    return rows(user, key, n=n, task_type="classification", prompt=10_000, completion=5, **fields)


def _values(rec: Recommendation) -> tuple:
    return (rec.id, rec.estimated_monthly_savings_usd, rec.savings_arithmetic, rec.evidence, rec.confidence)


def test_generating_twice_updates_the_same_rows(owner, owner_key):
    _classification(owner, owner_key[0])
    first = generate(owner)
    second = generate(owner)
    assert [_values(rec) for rec in first] == [_values(rec) for rec in second]
    assert Recommendation.objects.count() == 1
    rec = Recommendation.objects.get()
    assert rec.fingerprint == fingerprint("cheaper_model", {"model": "gpt-4o", "task_type": "classification"})


def test_new_numbers_update_a_new_recommendation(owner, owner_key):
    _classification(owner, owner_key[0])
    [before] = generate(owner)
    _classification(owner, owner_key[0], first=NOW - timedelta(days=2), every=timedelta(minutes=20))
    [after] = generate(owner)
    assert after.id == before.id
    assert after.estimated_monthly_savings_usd == 2 * before.estimated_monthly_savings_usd


def test_traffic_from_another_key_is_the_same_advice(owner, owner_key):
    _classification(owner, owner_key[0])
    [before] = generate(owner)
    other, _ = api_key_create(user=owner, name="second")
    _classification(owner, other, first=NOW - timedelta(days=2), every=timedelta(minutes=20))
    [after] = generate(owner)
    assert after.id == before.id
    assert after.scope["api_key_ids"] == sorted([str(owner_key[0].id), str(other.id)])


def test_a_dismissed_recommendation_stays_dismissed(owner, owner_key):
    _classification(owner, owner_key[0])
    [rec] = generate(owner)
    recommendation_dismiss(recommendation=rec)
    _classification(owner, owner_key[0], n=40, first=NOW - timedelta(days=2))  # + 40 %: not enough

    [again] = generate(owner)

    assert again.id == rec.id and again.status == "dismissed"
    assert again.estimated_monthly_savings_usd == rec.estimated_monthly_savings_usd  # the dismissed numbers


def test_a_dismissed_recommendation_returns_when_its_savings_grow_by_more_than_half(owner, owner_key):
    _classification(owner, owner_key[0])
    [rec] = generate(owner)
    recommendation_dismiss(recommendation=rec)
    _classification(owner, owner_key[0], n=51, first=NOW - timedelta(days=3))  # + 51 %

    [again] = generate(owner)

    assert again.id == rec.id and again.status == "new" and again.dismissed_at is None
    assert again.estimated_monthly_savings_usd > rec.estimated_monthly_savings_usd * Decimal("1.5")


def test_a_new_recommendation_whose_rule_no_longer_fires_is_removed(owner, owner_key):
    _classification(owner, owner_key[0])
    [rec] = generate(owner)
    RequestLog.objects.all().delete()
    assert generate(owner) == []
    assert not Recommendation.objects.filter(pk=rec.pk).exists()


def test_dismissed_and_applied_ones_are_kept_when_the_rule_stops_firing(owner, owner_key):
    _classification(owner, owner_key[0])
    [rec] = generate(owner)
    recommendation_dismiss(recommendation=rec)
    RequestLog.objects.all().delete()
    generate(owner)
    assert Recommendation.objects.get(pk=rec.pk).status == "dismissed"


def test_small_savings_are_not_worth_a_recommendation(owner, owner_key):
    rows(owner, owner_key[0], n=100, task_type="classification", prompt=1000, completion=5)  # ~$0.24 a month
    assert generate(owner) == []
    assert MIN_MONTHLY_SAVINGS_USD == Decimal("1.00")


def test_confidence_grows_with_the_sample_and_falls_when_the_pattern_stopped(owner, owner_key):
    other, _ = user_get_or_create(email="other@example.com")
    other_key, _ = api_key_create(user=other, name="other")
    _classification(owner, owner_key[0], n=100, every=timedelta(hours=7))  # steady over the 30 days
    _classification(other, other_key, n=100, every=timedelta(minutes=30))  # all in the first two days
    [steady], [stopped] = generate(owner), generate(other)
    assert steady.estimated_monthly_savings_usd == stopped.estimated_monthly_savings_usd
    assert steady.confidence > stopped.confidence
    assert steady.confidence == round(0.7 * 100 / 150 * (0.5 + 0.5 * _stability(steady)), 2)


def _stability(rec: Recommendation) -> float:
    # the last 7 days' projection against the whole window's, as analytics.recommendations.common does
    recent = rec.evidence["recent_requests"] * 30 / 7
    whole = rec.evidence["requests"]
    return min(recent, whole) / max(recent, whole)


def test_the_daily_task_studies_every_user_with_traffic(owner, owner_key, monkeypatch):
    pin_clock(monkeypatch, NOW)
    _classification(owner, owner_key[0])
    quiet, _ = user_get_or_create(email="quiet@example.com")
    assert tasks.generate_recommendations() == {"users": 1, "recommendations": 1}
    assert tasks.generate_recommendations(user_id=owner.pk) == {"users": 1, "recommendations": 1}
    assert Recommendation.objects.filter(user=owner).count() == 1


def test_run_analytics_generates_recommendations(owner, owner_key, monkeypatch):
    pin_clock(monkeypatch, NOW)
    _classification(owner, owner_key[0])
    out = io.StringIO()
    call_command("run_analytics", stdout=out)
    assert "Generated 1 recommendation(s) for 1 user(s)" in out.getvalue()
    assert Recommendation.objects.filter(user=owner, kind="cheaper_model").exists()
