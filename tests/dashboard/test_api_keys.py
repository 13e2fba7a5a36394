"""API keys on the web: list with spend, create (the key shown once), edit, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey
from accounts.services import api_key_create
from tests.analytics.factories import NOW, log_row, pin_clock
from tests.conftest import ApiClient
from tests.dashboard.factories import rolled_up

pytestmark = pytest.mark.django_db


def test_the_list_shows_each_key_with_its_limits_and_spend_this_month(
    web, user, monkeypatch, django_assert_max_num_queries
):
    pin_clock(monkeypatch)
    key, _ = api_key_create(user=user, name="billing bot", rpm=60, monthly_budget_usd=Decimal("10"))
    rows = [log_row(user, key, at=NOW - timedelta(days=2), prompt=100_000, completion=100_000)]  # $1.25
    rows.append(log_row(user, key, at=datetime(2026, 2, 27, tzinfo=UTC)))  # last month: not counted
    rolled_up(rows)
    with django_assert_max_num_queries(6):
        response = web.get("/keys/")
    body = response.content.decode()
    assert "billing bot" in body and key.prefix in body
    assert "60 rpm" in body and "$1.25" in body and "12% of $10.00" in body
    assert ApiKey.objects.get(pk=key.pk).digest not in body


def test_inherited_policies_are_marked(web, user):
    user.rpm = 300
    user.save()
    api_key_create(user=user, name="inherits")
    assert "300 rpm*" in web.get("/keys/").content.decode()


def test_create_shows_the_full_key_once_with_a_snippet_for_this_server(web, user, settings):
    settings.ALLOWED_HOSTS = ["gw.example.com", "testserver"]
    response = web.post(
        "/keys/new/",
        {
            "name": "ci",
            "rpm": "30",
            "monthly_budget_usd": "5",
            "allowed_models": "gpt-4o-mini*",
            "fallbacks": "gpt-4o",
        },
    )
    api_key = ApiKey.objects.get(user=user, name="ci")
    assert response["Location"] == f"/keys/{api_key.id}/created/"
    page = web.get(response["Location"], HTTP_HOST="gw.example.com")
    body = page.content.decode()
    raw = page.context["raw_key"]
    assert keys.digest(raw) == api_key.digest and raw in body
    assert 'base_url=<span class="s">"http://gw.example.com/v1"</span>' in body
    assert "no-store" in page["Cache-Control"]
    assert (api_key.rpm, api_key.monthly_budget_usd, api_key.allowed_models) == (
        30,
        Decimal("5"),
        ["gpt-4o-mini*"],
    )
    assert api_key.fallbacks == ["gpt-4o"]
    again = web.get(f"/keys/{api_key.id}/created/")
    assert again.status_code == 302 and again["Location"] == "/keys/"
    assert raw not in web.get("/keys/").content.decode()


def test_the_new_key_works_on_the_api(web, user):
    web.post("/keys/new/", {"name": "works"})
    api_key = ApiKey.objects.get(user=user, name="works")
    raw = web.get(f"/keys/{api_key.id}/created/").context["raw_key"]
    assert ApiClient(raw).get("/v1/models").status_code == 200


def test_create_refuses_bad_values(web, user):
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    response = web.post(
        "/keys/new/", {"rpm": "-1", "fallbacks": "no-such-model-xyz", "expires_on": yesterday}
    )
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"rpm", "fallbacks", "expires_on"}
    assert not ApiKey.objects.filter(user=user).exists()


def test_edit_changes_limits_budget_models_fallbacks_and_expiry(web, user):
    api_key, raw = api_key_create(user=user, name="old", rpm=5)
    day = (timezone.now() + timedelta(days=30)).date()
    response = web.post(
        f"/keys/{api_key.id}/edit/",
        {
            "name": "renamed",
            "rpm": "",
            "tpm": "10000",
            "max_parallel": "2",
            "monthly_budget_usd": "12.50",
            "allowed_models": "claude-*",
            "fallbacks": "gpt-4o-mini, gpt-4o",
            "expires_on": day.isoformat(),
            "cache_ttl_seconds": "600",
            "store_bodies": "on",
        },
    )
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert (api_key.name, api_key.rpm, api_key.tpm, api_key.max_parallel) == ("renamed", None, 10000, 2)
    assert api_key.monthly_budget_usd == Decimal("12.50") and api_key.allowed_models == ["claude-*"]
    assert api_key.fallbacks == ["gpt-4o-mini", "gpt-4o"]
    assert api_key.expires_at == datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    assert api_key.cache_ttl_seconds == 600 and api_key.store_bodies
    assert keys.digest(raw) == api_key.digest  # the secret is unchanged


def test_the_edit_form_shows_the_current_values(web, user):
    api_key, _ = api_key_create(user=user, name="shown", rpm=42, allowed_models=["gpt-4o", "o3*"])
    body = web.get(f"/keys/{api_key.id}/edit/").content.decode()
    assert 'value="42"' in body and 'value="gpt-4o, o3*"' in body


def test_revoke_asks_first_then_the_key_stops_working(web, user):
    api_key, raw = api_key_create(user=user, name="doomed")
    confirm = web.get(f"/keys/{api_key.id}/revoke/")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is None  # GET changes nothing
    response = web.post(f"/keys/{api_key.id}/revoke/")
    assert response["Location"] == "/keys/"
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    reply = ApiClient(raw).get("/v1/models")
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    body = web.get("/keys/").content.decode()
    assert "Revoked keys" in body and "doomed" in body


def test_unknown_key_ids_are_404(web):
    assert (
        web.get(reverse("accounts:key-edit", args=["00000000-0000-0000-0000-000000000000"])).status_code
        == 404
    )
