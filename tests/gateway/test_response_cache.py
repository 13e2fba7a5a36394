"""The response cache through the Django stack, on both backends: the database (the default) and Redis."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
import responses
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import RequestFactory, override_settings
from django.utils import timezone

from accounts.models import ApiKey
from analytics.models import RequestLog
from gateway.errors import InvalidRequest
from gateway.middleware import ApiEdgeMiddleware
from gateway.response_cache import cache_ttl, request_digest, response_cache_purge
from gateway.views import ChatCompletionsView
from tests.gateway.openai_fixtures import UPSTREAM, completion, stream_body
from tests.redis_util import fresh_redis_url

pytestmark = pytest.mark.django_db

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
ON = {"HTTP_X_NEUROMETRIC_CACHE": "true"}
INCLUDE_USAGE = {"stream": True, "stream_options": {"include_usage": True}}
WEATHER_CALL = {
    "id": "call_w1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


@pytest.fixture(params=["database", "redis"])
def backend(request):
    url = fresh_redis_url() if request.param == "redis" else ""
    with override_settings(REDIS_URL=url):
        yield request.param


def _key(owner_key, **fields) -> None:
    ApiKey.objects.filter(pk=owner_key[0].pk).update(**fields)


def _events(response) -> list[bytes]:
    raw = b"".join(response.streaming_content)
    return [part[6:] for part in raw.split(b"\n\n") if part.startswith(b"data: ")]


def _chunks(response) -> list[dict]:
    events = _events(response)
    assert events[-1] == b"[DONE]"
    return [orjson.loads(event) for event in events[:-1]]


def _tool_call_completion() -> dict:
    body = completion(finish_reason="tool_calls", completion_tokens=10)
    body["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [WEATHER_CALL],
    }
    return body


# --- hits and misses ----------------------------------------------------------------------------------------
@responses.activate
def test_an_identical_request_is_answered_from_the_cache_without_calling_the_provider(api, backend):
    responses.post(UPSTREAM, json=completion("Paris."))
    miss = api.post("/v1/chat/completions", BODY, **ON)
    hit = api.post("/v1/chat/completions", BODY, **ON)

    assert miss.status_code == hit.status_code == 200
    assert miss["x-neurometric-cache"] == "miss" and miss["x-neurometric-provider"] == "openai"
    assert hit["x-neurometric-cache"] == "hit" and hit["x-neurometric-provider"] == "cache"
    assert hit["x-neurometric-model"] == "gpt-4o"
    assert hit.content == miss.content  # the same answer, original usage included
    assert orjson.loads(hit.content)["usage"]["prompt_tokens"] == 12
    assert len(responses.calls) == 1


@responses.activate
def test_key_order_stream_and_user_fields_do_not_change_the_answer_but_parameters_do(api, backend):
    responses.post(UPSTREAM, json=completion())
    api.post("/v1/chat/completions", {**BODY, "temperature": 0, "user": "alice"}, **ON)
    reordered = {"temperature": 0, "messages": BODY["messages"], "model": "gpt-4o", "user": "bob"}
    assert api.post("/v1/chat/completions", reordered, **ON)["x-neurometric-cache"] == "hit"
    hotter = api.post("/v1/chat/completions", {**BODY, "temperature": 1}, **ON)
    other_model = api.post("/v1/chat/completions", {**BODY, "temperature": 0, "model": "gpt-4o-mini"}, **ON)
    assert hotter["x-neurometric-cache"] == other_model["x-neurometric-cache"] == "miss"
    assert len(responses.calls) == 3


def test_the_digest_is_canonical_json_without_stream_fields():
    a = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"b": 1, "a": 2}]}
    b = {
        "tools": [{"a": 2, "b": 1}],
        "stream": True,
        "messages": [{"content": "x", "role": "user"}],
        "model": "m",
    }
    assert request_digest(a) == request_digest({**b, "stream_options": {"include_usage": True}, "user": "u"})
    assert request_digest(a) != request_digest({**a, "n": 2})


@responses.activate
def test_an_answer_expires_after_its_ttl(api, backend):
    responses.post(UPSTREAM, json=completion())
    short = {**ON, "HTTP_X_NEUROMETRIC_CACHE_TTL": "1"}
    api.post("/v1/chat/completions", BODY, **short)
    assert api.post("/v1/chat/completions", BODY, **short)["x-neurometric-cache"] == "hit"
    time.sleep(1.1)
    assert api.post("/v1/chat/completions", BODY, **short)["x-neurometric-cache"] == "miss"
    assert len(responses.calls) == 2


@responses.activate
def test_a_cached_answer_never_reaches_another_user(api, outsider_api, backend):
    responses.post(UPSTREAM, json=completion("Owner's answer."))
    api.post("/v1/chat/completions", BODY, **ON)
    responses.replace(responses.POST, UPSTREAM, json=completion("Outsider's answer."))
    outsider = outsider_api.post("/v1/chat/completions", BODY, **ON)
    assert outsider["x-neurometric-cache"] == "miss"
    assert orjson.loads(outsider.content)["choices"][0]["message"]["content"] == "Outsider's answer."
    again = api.post("/v1/chat/completions", BODY, **ON)
    assert orjson.loads(again.content)["choices"][0]["message"]["content"] == "Owner's answer."
    assert len(responses.calls) == 2


@responses.activate
def test_two_keys_of_one_user_share_the_cache(api, owner, backend):
    from accounts.services import api_key_create
    from tests.conftest import ApiClient

    responses.post(UPSTREAM, json=completion())
    api.post("/v1/chat/completions", BODY, **ON)
    second_key = ApiClient(api_key_create(user=owner, name="second")[1])
    assert second_key.post("/v1/chat/completions", BODY, **ON)["x-neurometric-cache"] == "hit"


# --- opting in and out ------------------------------------------------------------------------------------
@responses.activate
def test_without_opt_in_nothing_is_cached(api, backend):
    responses.post(UPSTREAM, json=completion())
    first, second = (api.post("/v1/chat/completions", BODY) for _ in range(2))
    assert "x-neurometric-cache" not in first and "x-neurometric-cache" not in second
    assert len(responses.calls) == 2


@responses.activate
def test_a_key_with_a_cache_ttl_caches_without_any_header(api, owner_key, backend):
    _key(owner_key, cache_ttl_seconds=60)
    responses.post(UPSTREAM, json=completion())
    assert api.post("/v1/chat/completions", BODY)["x-neurometric-cache"] == "miss"
    assert api.post("/v1/chat/completions", BODY)["x-neurometric-cache"] == "hit"
    assert len(responses.calls) == 1


@responses.activate
def test_the_false_header_turns_the_keys_cache_off_for_one_request(api, owner_key, backend):
    _key(owner_key, cache_ttl_seconds=60)
    responses.post(UPSTREAM, json=completion())
    api.post("/v1/chat/completions", BODY)
    off = api.post("/v1/chat/completions", BODY, HTTP_X_NEUROMETRIC_CACHE="false")
    assert off.status_code == 200 and "x-neurometric-cache" not in off
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    "headers, key_ttl, expected",
    [
        ({}, None, None),
        ({}, 0, None),
        ({}, 120, 120),
        ({"HTTP_X_NEUROMETRIC_CACHE": "true"}, None, 3600),
        ({"HTTP_X_NEUROMETRIC_CACHE": "TRUE"}, 120, 120),
        ({"HTTP_X_NEUROMETRIC_CACHE": "false"}, 120, None),
        ({"HTTP_X_NEUROMETRIC_CACHE": "false", "HTTP_X_NEUROMETRIC_CACHE_TTL": "60"}, None, None),
        ({"HTTP_X_NEUROMETRIC_CACHE_TTL": "30"}, None, 30),
        ({"HTTP_X_NEUROMETRIC_CACHE": "true", "HTTP_X_NEUROMETRIC_CACHE_TTL": "30"}, 120, 30),
        ({"HTTP_X_NEUROMETRIC_CACHE": "true", "HTTP_X_NEUROMETRIC_CACHE_TTL": "999999"}, None, 86400),
        ({}, 999999, 86400),
    ],
)
def test_the_ttl_comes_from_the_headers_then_the_key_then_the_default_capped_by_the_maximum(
    headers, key_ttl, expected
):
    assert cache_ttl(headers, key_ttl) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_NEUROMETRIC_CACHE": "yes please"},
        {"HTTP_X_NEUROMETRIC_CACHE_TTL": "0"},
        {"HTTP_X_NEUROMETRIC_CACHE_TTL": "soon"},
    ],
)
def test_a_malformed_cache_header_is_refused(api, headers):
    with pytest.raises(InvalidRequest):
        cache_ttl(headers, None)
    response = api.post("/v1/chat/completions", BODY, **headers)
    assert response.status_code == 400
    assert orjson.loads(response.content)["error"]["code"] == "invalid_header"


@responses.activate
def test_errors_are_never_cached(api, backend):
    error = {"error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}}
    responses.post(UPSTREAM, status=400, json=error)
    assert api.post("/v1/chat/completions", BODY, **ON).status_code == 400
    responses.replace(responses.POST, UPSTREAM, json=completion())
    assert api.post("/v1/chat/completions", BODY, **ON)["x-neurometric-cache"] == "miss"
    assert api.post("/v1/chat/completions", BODY, **ON)["x-neurometric-cache"] == "hit"


@responses.activate
def test_any_200_answer_is_cached_even_one_cut_at_max_tokens(api, backend):
    responses.post(UPSTREAM, json=completion(finish_reason="length"))
    api.post("/v1/chat/completions", {**BODY, "max_tokens": 3}, **ON)
    hit = api.post("/v1/chat/completions", {**BODY, "max_tokens": 3}, **ON)
    assert hit["x-neurometric-cache"] == "hit"
    assert orjson.loads(hit.content)["choices"][0]["finish_reason"] == "length"


# --- streams ----------------------------------------------------------------------------------------------
@responses.activate
@pytest.mark.parametrize("include_usage", [False, True])
def test_a_streamed_hit_is_replayed_in_openais_framing(api, backend, include_usage):
    responses.post(UPSTREAM, json=completion("Paris is the capital.", prompt=14, completion_tokens=5))
    api.post("/v1/chat/completions", BODY, **ON)
    stream = {**BODY, **INCLUDE_USAGE} if include_usage else {**BODY, "stream": True}
    hit = api.post("/v1/chat/completions", stream, **ON)

    assert hit["x-neurometric-cache"] == "hit" and hit["Content-Type"].startswith("text/event-stream")
    chunks = _chunks(hit)
    assert {c["id"] for c in chunks} == {"chatcmpl-abc123"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Paris is the capital."
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 19
        assert all(c["usage"] is None for c in chunks[:-1])
        finish = chunks[-2]
    else:
        assert all("usage" not in c for c in chunks)
        finish = chunks[-1]
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert len(responses.calls) == 1


@responses.activate
def test_a_streamed_miss_populates_the_cache_with_the_assembled_completion(api, backend):
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    responses.post(UPSTREAM, body=stream_body(["Pa", "ris"], usage=usage), content_type="text/event-stream")
    miss = api.post("/v1/chat/completions", {**BODY, "stream": True}, **ON)
    assert miss["x-neurometric-cache"] == "miss"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in _chunks(miss)) == "Paris"

    hit = api.post("/v1/chat/completions", BODY, **ON)
    assert hit["x-neurometric-cache"] == "hit"
    body = orjson.loads(hit.content)
    assert body["object"] == "chat.completion" and body["id"] == "chatcmpl-s1"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == usage
    assert len(responses.calls) == 1


@responses.activate
def test_a_stream_cut_by_the_client_is_not_cached(api, owner_key, backend):
    responses.post(UPSTREAM, body=stream_body(["Pa", "ris"]), content_type="text/event-stream")
    # Straight through the view, without the test client's wrappers, so that closing early is a hang-up.
    request = RequestFactory().post(
        "/v1/chat/completions",
        data=orjson.dumps({**BODY, "stream": True}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {owner_key[1]}",
        **ON,
    )
    cut = ApiEdgeMiddleware(ChatCompletionsView.as_view())(request)
    next(iter(cut.streaming_content))
    request_finished.disconnect(close_old_connections)  # keep the test's database connection open
    try:
        cut.close()
    finally:
        request_finished.connect(close_old_connections)
    assert RequestLog.objects.get(request_id=cut["x-request-id"]).status_code == 499
    assert api.post("/v1/chat/completions", {**BODY, "stream": True}, **ON)["x-neurometric-cache"] == "miss"


@responses.activate
def test_a_tool_call_answer_is_replayed_as_fragments_that_assemble_back(api, backend):
    responses.post(UPSTREAM, json=_tool_call_completion())
    api.post("/v1/chat/completions", BODY, **ON)
    chunks = _chunks(api.post("/v1/chat/completions", {**BODY, "stream": True}, **ON))

    fragments = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"][0]["delta"].get("tool_calls")
    ]
    assert fragments[0] == {
        "index": 0,
        "id": "call_w1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(f["index"] == 0 for f in fragments)
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"city": "Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@responses.activate
def test_a_streamed_tool_call_miss_is_cached_as_a_complete_tool_call(api, backend):
    def chunk(delta, finish=None):
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "id": "chatcmpl-t",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [choice],
        }

    head = {
        "index": 0,
        "id": "call_w1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    events = [
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [head]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    responses.post(UPSTREAM, body=raw, content_type="text/event-stream")
    _chunks(api.post("/v1/chat/completions", {**BODY, "stream": True}, **ON))

    body = orjson.loads(api.post("/v1/chat/completions", BODY, **ON).content)
    message = body["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"] == [WEATHER_CALL]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"]["completion_tokens"] > 0  # counted with tiktoken: the provider sent none


# --- the log and the limits -------------------------------------------------------------------------------
@responses.activate
def test_a_hit_is_logged_free_with_the_cost_it_saved(api, owner, backend):
    responses.post(UPSTREAM, json=completion(prompt=1000, completion_tokens=200, cached=400))
    miss = api.post("/v1/chat/completions", BODY, **ON)
    hit = api.post("/v1/chat/completions", {**BODY, "stream": True}, **ON)
    _chunks(hit)

    miss_row = RequestLog.objects.get(request_id=miss["x-request-id"])
    hit_row = RequestLog.objects.get(request_id=hit["x-request-id"])
    assert not miss_row.cache_hit and miss_row.cost_saved_usd is None and miss_row.cost_usd > 0
    assert hit_row.cache_hit and hit_row.provider == "cache" and hit_row.stream
    assert hit_row.cost_usd == 0 and not hit_row.cost_unknown
    # gpt-4o: 600 uncached input at $2.50, 400 cached at $1.25, 200 output at $10 per 1M tokens
    assert hit_row.cost_saved_usd == miss_row.cost_usd == Decimal("0.004")
    assert (hit_row.prompt_tokens, hit_row.cached_tokens, hit_row.completion_tokens) == (1000, 400, 200)
    assert (hit_row.status_code, hit_row.finish_reason, hit_row.user) == (200, "stop", owner)
    assert (hit_row.model, hit_row.served_model) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert hit_row.upstream_ms == 0 and hit_row.ttft_ms is not None
    logged = api.get(f"/v1/requests/{hit_row.request_id}").json()  # the log, as the user reads it
    assert (logged["cache_hit"], logged["cost_usd"], logged["cost_saved_usd"]) == (
        True,
        "0.000000000000",
        "0.004000000000",
    )


@responses.activate
def test_hits_count_towards_requests_per_minute(api, owner_key, backend):
    _key(owner_key, rpm=2)
    responses.post(UPSTREAM, json=completion())
    statuses = [api.post("/v1/chat/completions", BODY, **ON) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[1]["x-neurometric-cache"] == "hit"
    assert statuses[1]["x-ratelimit-remaining-requests"] == "0"


@responses.activate
def test_hits_are_served_past_the_token_limit_and_the_budget(api, owner_key, backend):
    responses.post(UPSTREAM, json=completion(prompt=1000, completion_tokens=1000))
    assert api.post("/v1/chat/completions", BODY, **ON).status_code == 200
    _key(owner_key, tpm=100, monthly_budget_usd=Decimal("0.001"))  # the first answer cost $0.0125
    assert api.post("/v1/chat/completions", {**BODY, "n": 1}, **ON).status_code == 429  # a miss: refused
    hit = api.post("/v1/chat/completions", BODY, **ON)
    assert hit.status_code == 200 and hit["x-neurometric-cache"] == "hit"
    assert "x-ratelimit-limit-tokens" not in hit


# --- the database backend's housekeeping --------------------------------------------------------------------
@responses.activate
@override_settings(REDIS_URL="")
def test_the_purge_deletes_expired_entries_only(api, outsider_api):
    from gateway.models import ResponseCacheEntry

    responses.post(UPSTREAM, json=completion())
    api.post("/v1/chat/completions", BODY, **ON)
    outsider_api.post("/v1/chat/completions", BODY, **ON)
    assert ResponseCacheEntry.objects.count() == 2
    ResponseCacheEntry.objects.filter(user__email="owner@example.com").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert response_cache_purge() == 1
    assert list(ResponseCacheEntry.objects.values_list("user__email", flat=True)) == ["outsider@example.com"]


@responses.activate
def test_the_cache_fails_open_when_redis_is_down(api):
    responses.post(UPSTREAM, json=completion())
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        statuses = [api.post("/v1/chat/completions", BODY, **ON) for _ in range(2)]
    assert [r.status_code for r in statuses] == [200, 200]
    assert len(responses.calls) == 2
