"""Recommendations: cards with savings, arithmetic, evidence and evaluation; apply, dismiss, undo, evaluate
as CSRF-protected POSTs calling analytics' services."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.services import api_key_create
from analytics.models import Recommendation, ShadowEvaluation
from gateway.models import RoutingRule
from tests.dashboard.conftest import recommendation_for

pytestmark = pytest.mark.django_db


def test_cards_show_savings_arithmetic_evidence_and_the_latest_evaluation(
    web, user, django_assert_max_num_queries
):
    rec = recommendation_for(user)
    ShadowEvaluation.objects.create(
        recommendation=rec,
        status="done",
        budget_usd=Decimal("1"),
        spent_usd=Decimal("0.2"),
        compared=50,
        agreed=47,
        agreement=0.94,
        ci_low=0.84,
        ci_high=0.98,
        method="exact",
    )
    recommendation_for(user, title="Dismissed one", status="dismissed")
    with django_assert_max_num_queries(7):
        response = web.get("/dashboard/recommendations/")
    body = response.content.decode()
    assert "Use gpt-4o-mini for classification" in body and "$123.45" in body
    assert "1,000 requests × $0.002 paid" in body  # the arithmetic, line by line
    assert "P95 completion tokens" in body  # evidence
    assert "94% agreement" in body and "50 replayed requests" in body
    assert "Applied and dismissed" in body and "Dismissed one" in body
    assert response.context["total_savings"] == Decimal("123.45")


def test_apply_routes_the_keys_traffic_through_the_service(web, user):
    key, _ = api_key_create(user=user, name="routed")
    rec = recommendation_for(
        user, scope={"model": "gpt-4o", "task_type": "classification", "api_key_ids": [str(key.id)]}
    )
    response = web.post(f"/dashboard/recommendations/{rec.id}/apply/", follow=True)
    assert "Applied: Use gpt-4o-mini" in response.content.decode()
    rec.refresh_from_db()
    assert rec.status == "applied"
    rule = RoutingRule.objects.get(api_key=key)
    assert (rule.from_model, rule.to_model, rule.task_type, rule.is_active) == (
        "gpt-4o",
        "gpt-4o-mini",
        "classification",
        True,
    )
    undo = web.post(f"/dashboard/recommendations/{rec.id}/undo/", follow=True)
    assert "Undone" in undo.content.decode()
    rule.refresh_from_db()
    assert not rule.is_active


def test_dismiss(web, user):
    rec = recommendation_for(user, kind=Recommendation.Kind.RESPONSE_CACHE, suggested_model="")
    web.post(f"/dashboard/recommendations/{rec.id}/dismiss/")
    rec.refresh_from_db()
    assert rec.status == "dismissed" and rec.dismissed_at is not None


def test_a_refusal_of_the_service_is_shown(web, user):
    rec = recommendation_for(user, kind=Recommendation.Kind.RESPONSE_CACHE, suggested_model="")
    response = web.post(f"/dashboard/recommendations/{rec.id}/apply/", follow=True)
    assert "cannot be applied by the gateway" in response.content.decode()
    rec.refresh_from_db()
    assert rec.status == "new"


def test_only_applicable_kinds_get_an_apply_button(web, user):
    recommendation_for(
        user, kind=Recommendation.Kind.BATCH_API, title="Use the Batch API", suggested_model=""
    )
    body = web.get("/dashboard/recommendations/").content.decode()
    assert "/apply/" not in body and "/dismiss/" in body and "cannot apply it for you" in body


def test_evaluate_queues_a_shadow_evaluation(web, user, monkeypatch, django_capture_on_commit_callbacks):
    rec = recommendation_for(user)
    queued = []
    monkeypatch.setattr("analytics.tasks.run_shadow_evaluation.delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(f"/dashboard/recommendations/{rec.id}/evaluate/", follow=True)
    assert "Shadow evaluation queued" in response.content.decode()
    evaluation = ShadowEvaluation.objects.get(recommendation=rec)
    assert evaluation.status == "queued" and queued == [str(evaluation.id)]
    assert "Shadow evaluation · Queued" in response.content.decode()


def test_evaluate_is_refused_for_advice_without_a_model(web, user):
    rec = recommendation_for(user, kind=Recommendation.Kind.BATCH_API, suggested_model="")
    response = web.post(f"/dashboard/recommendations/{rec.id}/evaluate/", follow=True)
    assert "suggest a model to evaluate" in response.content.decode()
    assert not ShadowEvaluation.objects.exists()


def test_actions_are_posts(web, user):
    rec = recommendation_for(user)
    assert web.get(f"/dashboard/recommendations/{rec.id}/dismiss/").status_code == 405
    assert web.post(f"/dashboard/recommendations/{rec.id}/explode/").status_code == 404


def test_empty(web):
    assert "Nothing to recommend yet" in web.get("/dashboard/recommendations/").content.decode()
