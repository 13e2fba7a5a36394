"""Retries with backoff that honour retry-after, and fallbacks that rescue a failing provider."""

from __future__ import annotations

import time

import orjson
import pytest
import responses
from django.test import override_settings

from accounts.models import ApiKey
from analytics.models import RequestLog
from tests.gateway.openai_fixtures import UPSTREAM, completion
from tests.gateway.provider_settings import with_providers

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "hi"}]
MISTRAL = "http://mistral.test/v1/chat/completions"


@responses.activate
def test_a_429_is_retried_after_the_retry_after_delay_then_succeeds(api):
    responses.post(
        UPSTREAM,
        status=429,
        headers={"retry-after": "0.3"},
        json={"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
    )
    responses.post(UPSTREAM, json=completion())
    started = time.monotonic()
    response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert len(responses.calls) == 2
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert [a["status"] for a in row.attempts] == [429, 200] and not row.fallback_used


@responses.activate
@override_settings(UPSTREAM_MAX_RETRIES=2)
def test_retries_are_bounded_and_the_last_error_reaches_the_client(api):
    responses.post(UPSTREAM, status=503, json={"error": {"message": "busy", "type": "server_error"}})
    response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})
    assert response.status_code == 503
    assert len(responses.calls) == 3


@responses.activate
def test_quota_errors_and_bad_requests_are_not_retried(api):
    responses.post(
        UPSTREAM,
        status=429,
        json={"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}},
    )
    response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})
    assert response.status_code == 429 and response["x-should-retry"] == "false"
    assert len(responses.calls) == 1


@responses.activate
@override_settings(UPSTREAM_RETRY_MAX_WAIT_SECONDS=1)
def test_a_retry_after_longer_than_allowed_is_passed_to_the_client_instead_of_waited(api):
    responses.post(
        UPSTREAM,
        status=429,
        headers={"retry-after": "30"},
        json={"error": {"message": "later", "type": "requests", "code": "rate_limit_exceeded"}},
    )
    response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})
    assert response.status_code == 429 and response["retry-after"] == "30"
    assert len(responses.calls) == 1


def _mistral_ok(model: str = "mistral-large-latest") -> dict:
    return {
        "id": "m1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "rescued"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


@responses.activate
@override_settings(UPSTREAM_MAX_RETRIES=0)
def test_a_fallback_from_the_header_rescues_a_failing_provider(api):
    responses.post(UPSTREAM, status=500, json={"error": {"message": "down", "type": "server_error"}})
    responses.post(MISTRAL, json=_mistral_ok())
    with with_providers(mistral="http://mistral.test/v1"):
        response = api.post(
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": MESSAGES},
            HTTP_X_NEUROMETRIC_FALLBACKS="mistral-large, gpt-4o-mini",
        )
    assert response.status_code == 200
    assert response["x-neurometric-model"] == "mistral-large"
    body = orjson.loads(response.content)
    assert body["model"] == "mistral-large-latest" and body["choices"][0]["message"]["content"] == "rescued"
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert row.fallback_used and row.provider == "mistral" and row.served_model == "mistral-large-latest"
    assert [(a["model"], a["status"]) for a in row.attempts] == [("gpt-4o", 500), ("mistral-large", 200)]


@responses.activate
@override_settings(UPSTREAM_MAX_RETRIES=0)
def test_the_keys_default_fallbacks_apply_when_the_request_names_none(api, owner_key):
    ApiKey.objects.filter(pk=owner_key[0].pk).update(fallbacks=["mistral-large"])
    responses.post(UPSTREAM, status=503, json={"error": {"message": "down", "type": "server_error"}})
    responses.post(MISTRAL, json=_mistral_ok())
    with with_providers(mistral="http://mistral.test/v1"):
        response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})
    assert response.status_code == 200 and response["x-neurometric-model"] == "mistral-large"


@responses.activate
@override_settings(UPSTREAM_MAX_RETRIES=0)
def test_an_unconfigured_fallback_is_skipped_and_the_last_real_error_is_returned(api):
    responses.post(UPSTREAM, status=500, json={"error": {"message": "down", "type": "server_error"}})
    response = api.post(
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": MESSAGES},
        HTTP_X_NEUROMETRIC_FALLBACKS="mistral-large",
    )
    assert response.status_code == 500
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert [a["model"] for a in row.attempts] == ["gpt-4o", "mistral-large"] and not row.fallback_used


@responses.activate
def test_a_client_error_does_not_fall_back(api):
    responses.post(UPSTREAM, status=400, json={"error": {"message": "bad", "type": "invalid_request_error"}})
    response = api.post(
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": MESSAGES},
        HTTP_X_NEUROMETRIC_FALLBACKS="gpt-4o-mini",
    )
    assert response.status_code == 400 and len(responses.calls) == 1
