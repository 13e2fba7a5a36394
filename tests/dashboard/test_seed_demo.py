"""`manage.py seed_demo`: a demo account with realistic traffic, rolled up, the same for the same seed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from accounts.models import ApiKey, User
from analytics.models import RequestLog, Rollup
from dashboard.management.commands import seed_demo

pytestmark = pytest.mark.django_db

FIXED_NOW = datetime(2026, 3, 18, 12, 34, tzinfo=UTC)


@pytest.fixture
def frozen_now(monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_NOW

    monkeypatch.setattr(seed_demo, "datetime", Frozen)


def fingerprint() -> list[tuple]:
    return list(
        RequestLog.objects.order_by("request_id").values_list(
            "request_id",
            "created_at",
            "model",
            "status_code",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
        )
    )


def test_it_fills_the_demo_account_and_rolls_it_up(frozen_now, capsys, monkeypatch):
    monkeypatch.setattr(seed_demo.Command, "recommend", lambda self, user: None)  # its own tests elsewhere
    call_command("seed_demo", "--days", "1", "--seed", "7", "--password", "demo-pass-123", "--no-rollup")
    user = User.objects.get(email="demo@example.com")
    assert user.check_password("demo-pass-123")
    rows = RequestLog.objects.filter(user=user)
    assert rows.count() > 1500
    assert set(rows.values_list("provider", flat=True)) >= {
        "openai",
        "anthropic",
        "gemini",
        "mistral",
        "groq",
        "cache",
    } - {"cache"}
    statuses = set(rows.values_list("status_code", flat=True))
    assert {200, 429, 499} <= statuses
    assert rows.filter(finish_reason="length").exists()  # truncations
    assert rows.filter(fallback_used=True).exists() or rows.filter(model="mistral-large-latest").exists()
    assert rows.exclude(request_hash=None).exists()  # fingerprinted like the gateway's rows
    triage = rows.filter(task_type="classification", model="gpt-4o")
    assert triage.exists() and max(triage.values_list("completion_tokens", flat=True)) <= 5
    assert ApiKey.objects.filter(user=user).count() == 5
    assert "password: demo-pass-123" in capsys.readouterr().out


def test_the_same_seed_gives_the_same_rows(frozen_now, monkeypatch):
    monkeypatch.setattr(seed_demo.Command, "recommend", lambda self, user: None)
    call_command("seed_demo", "--days", "1", "--seed", "3", "--no-rollup", verbosity=0)
    first = fingerprint()
    call_command("seed_demo", "--days", "1", "--seed", "3", "--no-rollup", verbosity=0)
    assert fingerprint() == first
    call_command("seed_demo", "--days", "1", "--seed", "4", "--no-rollup", verbosity=0)
    assert fingerprint() != first


def test_rollups_are_written_so_the_dashboard_shows_it(monkeypatch, client):
    monkeypatch.setattr(seed_demo.Command, "recommend", lambda self, user: None)
    monkeypatch.setattr(seed_demo, "WORKLOADS", seed_demo.WORKLOADS[:2])  # smaller: the rollup is per minute
    call_command("seed_demo", "--days", "1", "--seed", "1", "--password", "demo-pass-123", verbosity=0)
    user = User.objects.get(email="demo@example.com")
    assert Rollup.objects.filter(user=user, granularity="day").exists()
    client.force_login(user)
    response = client.get("/dashboard/", {"range": "7d"})
    requests = next(card for card in response.context["cards"] if card["label"] == "Requests")
    assert int(requests["value"].replace(",", "")) == RequestLog.objects.filter(user=user).count()


def test_days_are_bounded_by_the_retention():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("seed_demo", "--days", "45")


def test_a_key_made_by_make_demo_key_survives_a_reseed(frozen_now, monkeypatch):
    from accounts.services import api_key_create, user_get_or_create

    monkeypatch.setattr(seed_demo.Command, "recommend", lambda self, user: None)
    user, _ = user_get_or_create(email="demo@example.com")
    printed, _ = api_key_create(user=user, name="demo")
    call_command("seed_demo", "--days", "1", "--seed", "1", "--no-rollup", verbosity=0)
    call_command("seed_demo", "--days", "1", "--seed", "1", "--no-rollup", verbosity=0)
    assert ApiKey.objects.filter(pk=printed.pk, revoked_at=None).exists()
    assert ApiKey.objects.filter(user=user).count() == 6
