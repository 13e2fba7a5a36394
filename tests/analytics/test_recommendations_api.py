"""GET /v1/recommendations and POST /v1/recommendations/{id}/dismiss|apply|undo|evaluate: the caller's own
recommendations only, in OpenAI's error envelope, described in the OpenAPI schema."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.models import Recommendation, ShadowEvaluation
from gateway.models import RoutingRule

pytestmark = pytest.mark.django_db

FIELDS = {
    "object",
    "id",
    "kind",
    "title",
    "detail",
    "estimated_monthly_savings_usd",
    "savings_arithmetic",
    "confidence",
    "evidence",
    "scope",
    "suggested_model",
    "status",
    "created_at",
    "updated_at",
    "applied_at",
    "evaluation",
    "realised_savings_usd",
    "routing_rules",
}


def _rec(user, key, *, kind="cheaper_model", savings="12.5", n=0, **fields) -> Recommendation:
    values = dict(
        user=user,
        kind=kind,
        fingerprint=f"{kind}-{n}".ljust(64, "0"),
        title=f"Advice {n}",
        detail="Plain words.",
        scope={"model": "gpt-4o", "task_type": "classification", "api_key_ids": [str(key.id)]},
        suggested_model="gpt-4o-mini" if kind == "cheaper_model" else "",
        estimated_monthly_savings_usd=savings,
        savings_arithmetic="1 + 1",
        confidence=0.5,
        evidence={"requests": 100},
    )
    return Recommendation.objects.create(**(values | fields))


def test_the_list_shows_the_callers_recommendations_largest_savings_first(api, owner, owner_key):
    small = _rec(owner, owner_key[0], savings="2.5", n=1)
    large = _rec(owner, owner_key[0], savings="40.1234", n=2, kind="response_cache")
    ShadowEvaluation.objects.create(recommendation=small, budget_usd="1", status="done", compared=3, agreed=3)

    response = api.get("/v1/recommendations")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [item["id"] for item in body["data"]] == [str(large.id), str(small.id)]
    first, second = body["data"]
    assert set(first) == FIELDS
    assert first["estimated_monthly_savings_usd"] == "40.1234"
    assert first["suggested_model"] is None and first["evaluation"] is None and first["routing_rules"] == []
    assert first["realised_savings_usd"] is None and first["status"] == "new"
    assert isinstance(first["created_at"], int)
    assert second["evaluation"]["status"] == "done" and second["evaluation"]["agreed"] == 3
    assert second["evidence"] == {"requests": 100}


def test_the_list_filters_by_status_and_names_a_bad_one(api, owner, owner_key):
    _rec(owner, owner_key[0], n=1)
    dismissed = _rec(owner, owner_key[0], n=2, status="dismissed", dismissed_at=timezone.now())
    assert [r["id"] for r in api.get("/v1/recommendations?status=dismissed").json()["data"]] == [
        str(dismissed.id)
    ]
    bad = api.get("/v1/recommendations?status=gone")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"


def test_the_list_costs_the_same_queries_however_many_recommendations(api, owner, owner_key):
    _rec(owner, owner_key[0], n=1)
    api.get("/v1/recommendations")  # warm: the key's cache entry and last_used_at, set once a minute
    with CaptureQueriesContext(connection) as one:
        api.get("/v1/recommendations")
    for n in range(2, 7):
        rec = _rec(owner, owner_key[0], n=n)
        ShadowEvaluation.objects.create(recommendation=rec, budget_usd="1")
        RoutingRule.objects.create(
            api_key=owner_key[0], from_model="gpt-4o", to_model="gpt-4o-mini", recommendation=rec
        )
    with CaptureQueriesContext(connection) as six:
        assert len(api.get("/v1/recommendations").json()["data"]) == 6
    assert len(six) == len(one)


def test_dismiss(api, owner, owner_key):
    rec = _rec(owner, owner_key[0])
    response = api.post(f"/v1/recommendations/{rec.id}/dismiss")
    assert response.status_code == 200 and response.json()["status"] == "dismissed"
    rec.refresh_from_db()
    assert rec.status == "dismissed" and rec.dismissed_at is not None


def test_apply_answers_with_the_rules_and_is_idempotent(api, owner, owner_key):
    rec = _rec(owner, owner_key[0])
    first = api.post(f"/v1/recommendations/{rec.id}/apply").json()
    again = api.post(f"/v1/recommendations/{rec.id}/apply").json()
    assert first["status"] == again["status"] == "applied" and first["applied_at"]
    [rule] = first["routing_rules"]
    assert rule == {
        **rule,
        "api_key_id": str(owner_key[0].id),
        "from_model": "gpt-4o",
        "task_type": "classification",
        "to_model": "gpt-4o-mini",
        "is_active": True,
        "disabled_at": None,
    }
    assert again["routing_rules"] == first["routing_rules"]


def test_only_model_advice_can_be_applied(api, owner, owner_key):
    rec = _rec(owner, owner_key[0], kind="batch_api")
    response = api.post(f"/v1/recommendations/{rec.id}/apply")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "recommendation_not_applicable"
    assert not RoutingRule.objects.exists()


def test_apply_needs_a_key_that_still_works(api, owner, owner_key):
    from accounts.services import api_key_create

    gone, _ = api_key_create(user=owner, name="gone")
    gone.revoked_at = timezone.now()
    gone.save()
    rec = _rec(owner, owner_key[0], scope={"model": "gpt-4o", "task_type": "", "api_key_ids": [str(gone.id)]})
    response = api.post(f"/v1/recommendations/{rec.id}/apply")
    assert response.status_code == 400 and "active" in response.json()["error"]["message"]


def test_undo_of_a_recommendation_that_is_not_applied_is_a_conflict(api, owner, owner_key):
    rec = _rec(owner, owner_key[0])
    response = api.post(f"/v1/recommendations/{rec.id}/undo")
    assert response.status_code == 409 and response.json()["error"]["code"] == "recommendation_not_applied"


def test_another_users_recommendations_are_invisible(api, owner, owner_key, outsider_api):
    rec = _rec(owner, owner_key[0])
    assert outsider_api.get("/v1/recommendations").json()["data"] == []
    for action in ("dismiss", "apply", "undo", "evaluate"):
        response = outsider_api.post(f"/v1/recommendations/{rec.id}/{action}", {})
        assert response.status_code == 404, action
        assert response.json()["error"]["code"] == "recommendation_not_found"
    rec.refresh_from_db()
    assert rec.status == "new" and not rec.evaluations.exists() and not RoutingRule.objects.exists()


def test_an_unknown_or_malformed_id_is_a_404(api):
    assert api.post("/v1/recommendations/not-a-uuid/dismiss").status_code == 404
    response = api.post("/v1/recommendations/00000000-0000-0000-0000-000000000000/apply")
    assert response.status_code == 404 and response.json()["error"]["param"] == "recommendation_id"


def test_a_key_is_needed(client):
    response = client.get("/v1/recommendations")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_the_routes_are_in_the_openapi_schema(client):
    paths = client.get("/v1/openapi.json").json()["paths"]
    assert paths["/v1/recommendations"]["get"]["operationId"] == "listRecommendations"
    for action, operation in (
        ("dismiss", "dismissRecommendation"),
        ("apply", "applyRecommendation"),
        ("undo", "undoRecommendation"),
        ("evaluate", "evaluateRecommendation"),
    ):
        described = paths[f"/v1/recommendations/{{recommendation_id}}/{action}"]["post"]
        assert described["operationId"] == operation
        assert "404" in described["responses"]
    evaluate = paths["/v1/recommendations/{recommendation_id}/evaluate"]["post"]
    assert "202" in evaluate["responses"]
    request = evaluate["requestBody"]["content"]["application/json"]["schema"]
    assert request["$ref"].endswith("EvaluateRecommendationRequest")


def test_applying_a_rival_rule_supersedes_the_older_recommendation(api, owner, owner_key):
    scope = {"model": "gpt-4o", "task_type": "", "api_key_ids": [str(owner_key[0].id)]}
    older = _rec(owner, owner_key[0], n=1, scope=scope, suggested_model="gpt-4.1")
    newer = _rec(
        owner, owner_key[0], n=2, kind="newer_snapshot", scope=scope, suggested_model="gpt-5-chat-latest"
    )
    api.post(f"/v1/recommendations/{older.id}/apply")
    api.post(f"/v1/recommendations/{newer.id}/apply")
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, newer.status) == ("new", "applied")
    assert list(RoutingRule.objects.filter(is_active=True).values_list("to_model", flat=True)) == [
        "gpt-5-chat-latest"
    ]
