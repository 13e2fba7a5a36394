"""POST /v1/chat/completions through the Django stack, with the provider's HTTP mocked by `responses`."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
import responses

from analytics.models import RequestLog
from tests.gateway.openai_fixtures import UPSTREAM, completion, stream_body

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Say hello"}]


@responses.activate
def test_non_stream_answer_passes_through_and_leaves_a_priced_log_row(api, owner):
    responses.post(UPSTREAM, json=completion(prompt=1000, completion_tokens=200, cached=400))
    response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})

    assert response.status_code == 200
    body = orjson.loads(response.content)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there.", "refusal": None}
    request_id = response["x-request-id"]
    assert request_id.startswith("req_")

    row = RequestLog.objects.get(request_id=request_id)
    assert row.user == owner
    assert (row.requested_model, row.served_model, row.provider) == ("gpt-4o", "gpt-4o-2024-08-06", "openai")
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (1000, 400, 200)
    assert row.status_code == 200 and not row.usage_estimated and row.finish_reason == "stop"
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per 1M tokens
    assert (
        row.cost_usd
        == Decimal("600") * Decimal("2.5") / 10**6
        + Decimal("400") * Decimal("1.25") / 10**6
        + Decimal("200") * Decimal("10") / 10**6
    )
    assert row.pricing["input_per_mtok"] == "2.5"
    assert row.latency_ms >= row.upstream_ms >= 0 and row.overhead_ms >= 0


@responses.activate
def test_upstream_gets_provider_key_and_upstream_model_never_the_client_key(api, owner_key):
    responses.post(UPSTREAM, json=completion())
    api.post(
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0.3, "custom_field": {"x": 1}},
    )
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer sk-test-provider-key"
    assert owner_key[1] not in str(sent.headers) and owner_key[1].encode() not in sent.body
    body = orjson.loads(sent.body)
    assert body["model"] == "gpt-4o" and body["temperature"] == 0.3 and body["custom_field"] == {"x": 1}


@responses.activate
def test_stream_without_include_usage_carries_no_usage_but_the_log_has_it(api):
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    responses.post(UPSTREAM, body=stream_body(["Hel", "lo"], usage=usage), content_type="text/event-stream")
    response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES, "stream": True})

    assert response["Content-Type"].startswith("text/event-stream")
    raw = b"".join(response.streaming_content)
    events = [line[6:] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello"
    assert orjson.loads(responses.calls[0].request.body)["stream_options"] == {"include_usage": True}

    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert (row.prompt_tokens, row.completion_tokens, row.stream) == (9, 2, True)
    assert row.ttft_ms is not None and not row.usage_estimated


@responses.activate
def test_stream_with_include_usage_ends_with_a_usage_chunk_before_done(api):
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    responses.post(UPSTREAM, body=stream_body(["Hi"], usage=usage), content_type="text/event-stream")
    response = api.post(
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    )
    events = [e[6:] for e in b"".join(response.streaming_content).split(b"\n\n") if e.startswith(b"data: ")]
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 11
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


@responses.activate
def test_stream_without_upstream_usage_is_counted_with_tiktoken_and_marked_estimated(api):
    responses.post(UPSTREAM, body=stream_body(["Hello", " world"]), content_type="text/event-stream")
    response = api.post(
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    )
    events = [e[6:] for e in b"".join(response.streaming_content).split(b"\n\n") if e.startswith(b"data: ")]
    usage_chunk = orjson.loads(events[-2])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 2
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert row.usage_estimated and row.completion_tokens == 2 and row.prompt_tokens > 0
