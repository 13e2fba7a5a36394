"""One request's page: usage, cost, latency, attempts, fallbacks, task type, tags and bodies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.analytics.factories import NOW, log_row, pin_clock

pytestmark = pytest.mark.django_db


def test_everything_the_log_knows(web, user, monkeypatch, django_assert_max_num_queries):
    pin_clock(monkeypatch)
    from accounts.services import api_key_create

    key, _ = api_key_create(user=user, name="detail key")
    row = log_row(
        user,
        key,
        at=NOW - timedelta(minutes=5),
        requested_model="mistral-large-latest",
        model="gpt-4o-mini",
        provider="openai",
        fallback_used=True,
        attempts=[
            {
                "model": "mistral-large-latest",
                "provider": "mistral",
                "status": 503,
                "error_code": "overloaded",
                "ms": 812.5,
            },
            {"model": "gpt-4o-mini", "provider": "openai", "status": 200, "error_code": None, "ms": 420.0},
        ],
        task_type="rewriting",
        tags=["checkout", "beta"],
        stream=True,
        ttft_ms=210.0,
        finish_reason="length",
        max_tokens=200,
        request_body={
            "model": "mistral-large-latest",
            "messages": [{"role": "user", "content": "Rewrite <this>"}],
        },
        response_body={"choices": [{"message": {"content": "Done."}}]},
    )
    with django_assert_max_num_queries(5):
        response = web.get(f"/dashboard/logs/{row.request_id}/")
    body = response.content.decode()
    assert response.status_code == 200
    for text in (
        row.request_id,
        "mistral-large-latest",
        "gpt-4o-mini",
        "overloaded",
        "812 ms",
        "rewriting",
        "checkout",
        "detail key",
        key.prefix,
        "210 ms",
        "length",
        "Rewrite &lt;this&gt;",  # bodies are escaped
        "Done.",
        "$2.5 input",
    ):
        assert text in body, text
    assert "<this>" not in body


def test_errors_and_missing_bodies(web, user, monkeypatch):
    pin_clock(monkeypatch)
    row = log_row(user, None, at=NOW, status=502, error_type="api_error", error_message="Upstream said no")
    body = web.get(f"/dashboard/logs/{row.request_id}/").content.decode()
    assert "Upstream said no" in body and "Not stored" in body and "502" in body


def test_unknown_ids_are_404(web):
    assert web.get("/dashboard/logs/req_nope/").status_code == 404


def test_a_routed_request_names_its_rule_and_recommendation(web, user, monkeypatch):
    pin_clock(monkeypatch)
    from accounts.services import api_key_create
    from analytics.models import Recommendation
    from gateway.models import RoutingRule

    key, _ = api_key_create(user=user, name="routed key")
    rec = Recommendation.objects.create(
        user=user,
        kind="cheaper_model",
        fingerprint="r" * 64,
        title="Use gpt-4o-mini instead of gpt-4o for classification",
        detail="...",
        scope={"model": "gpt-4o", "task_type": "classification", "api_key_ids": [str(key.id)]},
        suggested_model="gpt-4o-mini",
        estimated_monthly_savings_usd="12.5",
        savings_arithmetic="...",
        confidence=0.6,
    )
    rule = RoutingRule.objects.create(
        api_key=key,
        from_model="gpt-4o",
        task_type="classification",
        to_model="gpt-4o-mini",
        recommendation=rec,
    )
    row = log_row(user, key, at=NOW, requested_model="gpt-4o", model="gpt-4o-mini", routing_rule_id=rule.id)
    body = web.get(f"/dashboard/logs/{row.request_id}/").content.decode()
    assert f"#{rule.id}: gpt-4o (classification) → gpt-4o-mini" in body
    assert rec.title in body
