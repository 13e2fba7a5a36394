"""Routing rules: an applied recommendation sends a key's requests for one model (of one task type) to the
suggested model; undo sends them back. The response names the rule; the log row records it."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
import responses
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from analytics import tasks
from analytics.models import Recommendation, RequestLog
from analytics.recommendations.services import realised_savings
from gateway import rules as gateway_rules
from gateway.auth import KeyCache
from gateway.models import RoutingRule
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db

CLASSIFY = [
    {"role": "user", "content": "Classify the sentiment of this review as positive or negative: Great!"}
]
POEM = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture
def recommendation(owner, owner_key) -> Recommendation:
    return Recommendation.objects.create(
        user=owner,
        kind="cheaper_model",
        fingerprint="f" * 64,
        title="Use gpt-4o-mini instead of gpt-4o for classification",
        detail="...",
        scope={"model": "gpt-4o", "task_type": "classification", "api_key_ids": [str(owner_key[0].id)]},
        suggested_model="gpt-4o-mini",
        estimated_monthly_savings_usd="12.5",
        savings_arithmetic="...",
        confidence=0.6,
    )


def _chat(api, messages, model="gpt-4o", **headers):
    response = api.post("/v1/chat/completions", {"model": model, "messages": messages}, **headers)
    assert response.status_code == 200, response.content
    return response, RequestLog.objects.get(request_id=response["x-request-id"])


def _upstream_model(call) -> str:
    return orjson.loads(call.request.body)["model"]


@responses.activate
def test_apply_routes_classification_for_gpt_4o_to_gpt_4o_mini(api, recommendation, owner_key):
    responses.post(UPSTREAM, json=completion("positive", model="gpt-4o-mini-2024-07-18", prompt=1000))

    applied = api.post(f"/v1/recommendations/{recommendation.id}/apply")
    assert applied.status_code == 200, applied.content
    [rule] = RoutingRule.objects.filter(recommendation=recommendation)
    assert (rule.api_key_id, rule.from_model, rule.task_type, rule.to_model, rule.is_active) == (
        owner_key[0].id,
        "gpt-4o",
        "classification",
        "gpt-4o-mini",
        True,
    )
    assert applied.json()["status"] == "applied" and applied.json()["routing_rules"][0]["id"] == rule.id

    response, row = _chat(api, CLASSIFY)

    assert _upstream_model(responses.calls[-1]) == "gpt-4o-mini"
    assert response["x-neurometric-rule"] == str(rule.id)
    assert response["x-neurometric-model"] == "gpt-4o-mini"
    assert (row.requested_model, row.model, row.routing_rule_id) == ("gpt-4o", "gpt-4o-mini", rule.id)
    assert row.task_type == "classification"
    assert row.pricing["input_per_mtok"] == "0.15"
    logged = api.get(f"/v1/requests/{row.request_id}").json()  # the log, as the user reads it
    assert (logged["requested_model"], logged["model"], logged["routing_rule_id"]) == (
        "gpt-4o",
        "gpt-4o-mini",
        rule.id,
    )


@responses.activate
def test_other_tasks_and_models_are_not_routed(api, recommendation):
    responses.post(UPSTREAM, json=completion())
    api.post(f"/v1/recommendations/{recommendation.id}/apply")

    poem, poem_row = _chat(api, POEM)
    other, other_row = _chat(api, CLASSIFY, model="gpt-4.1")

    assert [_upstream_model(call) for call in responses.calls] == ["gpt-4o", "gpt-4.1"]
    assert "x-neurometric-rule" not in poem and "x-neurometric-rule" not in other
    assert poem_row.routing_rule_id is None and other_row.routing_rule_id is None


@responses.activate
def test_the_client_task_header_is_trusted_over_the_classifier(api, recommendation):
    responses.post(UPSTREAM, json=completion())
    api.post(f"/v1/recommendations/{recommendation.id}/apply")
    _chat(api, POEM, HTTP_X_NEUROMETRIC_TASK="classification")
    assert _upstream_model(responses.calls[-1]) == "gpt-4o-mini"


@responses.activate
def test_undo_restores_the_requested_model(api, recommendation):
    responses.post(UPSTREAM, json=completion())
    api.post(f"/v1/recommendations/{recommendation.id}/apply")

    undone = api.post(f"/v1/recommendations/{recommendation.id}/undo")

    assert undone.status_code == 200 and undone.json()["status"] == "new"
    assert undone.json()["routing_rules"][0]["is_active"] is False
    response, row = _chat(api, CLASSIFY)
    assert _upstream_model(responses.calls[-1]) == "gpt-4o"
    assert "x-neurometric-rule" not in response and row.routing_rule_id is None
    assert api.post(f"/v1/recommendations/{recommendation.id}/undo").status_code == 409


@responses.activate
def test_dismissing_an_applied_recommendation_undoes_it(api, recommendation):
    responses.post(UPSTREAM, json=completion())
    api.post(f"/v1/recommendations/{recommendation.id}/apply")
    assert api.post(f"/v1/recommendations/{recommendation.id}/dismiss").json()["status"] == "dismissed"
    _chat(api, CLASSIFY)
    assert _upstream_model(responses.calls[-1]) == "gpt-4o"
    assert not RoutingRule.objects.filter(is_active=True).exists()


@responses.activate
def test_the_requested_model_is_the_fallback_when_the_rule_model_fails(api, recommendation):
    responses.post(UPSTREAM, json={"error": {"message": "overloaded", "type": "server_error"}}, status=503)
    responses.post(UPSTREAM, json=completion())
    api.post(f"/v1/recommendations/{recommendation.id}/apply")
    with override_settings(UPSTREAM_MAX_RETRIES=0):
        response, row = _chat(api, CLASSIFY)
    assert [_upstream_model(call) for call in responses.calls] == ["gpt-4o-mini", "gpt-4o"]
    assert response["x-neurometric-model"] == "gpt-4o" and row.fallback_used


@responses.activate
def test_a_rule_for_every_task_type_routes_without_classifying(api, owner_key, monkeypatch):
    responses.post(UPSTREAM, json=completion())
    RoutingRule.objects.create(api_key=owner_key[0], from_model="gpt-4o", to_model="gpt-4.1")
    monkeypatch.setattr(gateway_rules, "classify", _never)
    _chat(api, POEM)
    _chat(api, CLASSIFY, model="gpt-4o-mini")  # no rule for this model
    assert [_upstream_model(call) for call in responses.calls] == ["gpt-4.1", "gpt-4o-mini"]


def _never(*args, **kwargs):
    raise AssertionError("classified without a task-type rule for the model")


def test_a_task_type_rule_wins_over_a_rule_for_every_task(owner_key):
    RoutingRule.objects.create(api_key=owner_key[0], from_model="gpt-4o", to_model="gpt-4.1")
    specific = RoutingRule.objects.create(
        api_key=owner_key[0], from_model="gpt-4o", task_type="classification", to_model="gpt-4o-mini"
    )
    principal = KeyCache(ttl=60).lookup(owner_key[1])
    chat = type("Chat", (), {"model": "gpt-4o", "body": {"messages": CLASSIFY}})()
    match = gateway_rules.apply_routing_rules(principal, chat)
    assert (match.to_model, match.rule_id) == ("gpt-4o-mini", specific.id)


def test_the_rules_come_with_the_key_in_one_extra_query_on_a_cache_miss(owner_key):
    rule = RoutingRule.objects.create(api_key=owner_key[0], from_model="gpt-4o", to_model="gpt-4o-mini")
    RoutingRule.objects.create(api_key=owner_key[0], from_model="o1", to_model="o3", is_active=False)
    cache = KeyCache(ttl=60)
    with CaptureQueriesContext(connection) as miss:
        principal = cache.lookup(owner_key[1])
    with CaptureQueriesContext(connection) as hit:
        assert cache.lookup(owner_key[1]) is principal
    assert len(miss) == 2 and len(hit) == 0
    assert principal.routing_rules == (("gpt-4o", "", "gpt-4o-mini", rule.id),)


@responses.activate
def test_realised_savings_are_the_original_price_minus_what_was_paid(api, recommendation):
    responses.post(
        UPSTREAM, json=completion(model="gpt-4o-mini-2024-07-18", prompt=10_000, completion_tokens=100)
    )
    api.post(f"/v1/recommendations/{recommendation.id}/apply")
    _chat(api, CLASSIFY)
    _chat(api, CLASSIFY)
    _chat(api, POEM)  # not routed: not counted

    # gpt-4o: 10,000 × $2.50 + 100 × $10 per 1M; gpt-4o-mini: 10,000 × $0.15 + 100 × $0.60 per 1M; twice
    assert (
        realised_savings(recommendation)
        == 2
        * ((10_000 * Decimal("2.5") + 100 * Decimal(10)) - (10_000 * Decimal("0.15") + 100 * Decimal("0.6")))
        / 1_000_000
    )
    listed = api.get("/v1/recommendations").json()["data"][0]
    assert listed["realised_savings_usd"] is None  # refreshed by the generation task, not on read


@responses.activate
def test_realised_savings_are_shown_next_to_the_estimate_after_the_daily_run(api, owner, recommendation):
    responses.post(
        UPSTREAM, json=completion(model="gpt-4o-mini-2024-07-18", prompt=10_000, completion_tokens=100)
    )
    api.post(f"/v1/recommendations/{recommendation.id}/apply")
    _chat(api, CLASSIFY)

    tasks.generate_recommendations(user_id=owner.pk)  # what the daily task and run_analytics do

    [listed] = api.get("/v1/recommendations").json()["data"]
    # one routed request: 10,000 × ($2.50 − $0.15) + 100 × ($10 − $0.60) per 1M
    assert listed["status"] == "applied" and listed["estimated_monthly_savings_usd"] == "12.5000"
    assert listed["realised_savings_usd"] == "0.024440"
