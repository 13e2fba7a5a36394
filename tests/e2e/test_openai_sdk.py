"""The official OpenAI Python SDK against the real server, in front of the fake OpenAI provider."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest
import requests

from analytics.models import RequestLog
from tests.e2e.conftest import PROVIDER_KEY, wait_for_log

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Say hello to the tests"}]  # 5 words → 5 prompt tokens at the fake


def test_non_stream_completion_has_openai_shape_and_a_priced_log_row(sdk, fake_provider):
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert isinstance(completion.created, int)
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the fake provider."
    assert completion.choices[0].finish_reason == "stop"
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion._request_id == raw.headers["x-request-id"]

    upstream = fake_provider.requests[-1]
    assert upstream.headers["authorization"] == f"Bearer {PROVIDER_KEY}"

    row = wait_for_log(completion._request_id)
    assert (row.prompt_tokens, row.completion_tokens) == (5, 4)
    assert row.cost_usd == (5 * Decimal("2.5") + 4 * Decimal("10")) / 10**6
    assert row.status_code == 200 and row.provider == "openai" and not row.usage_estimated


def test_stream_without_include_usage_sends_no_usage_and_ends_with_done(sdk, server, e2e_key):
    with requests.post(
        f"{server.url}/v1/chat/completions",
        stream=True,
        headers={"Authorization": f"Bearer {e2e_key}"},
        json={"model": "gpt-4o", "messages": HELLO, "stream": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line.decode() for line in response.iter_lines() if line]
        request_id = response.headers["x-request-id"]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert not any('"usage"' in line for line in lines)
    row = wait_for_log(request_id)
    assert (row.prompt_tokens, row.completion_tokens, row.stream) == (5, 4, True)
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms


def test_stream_with_include_usage_ends_with_usage_chunk(sdk):
    stream = sdk.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 9
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == "Hello from the fake provider."


def test_sdk_stream_helper_assembles_the_final_completion(sdk):
    with sdk.chat.completions.stream(model="gpt-4o", messages=HELLO) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].message.content == "Hello from the fake provider."


def test_sdk_stream_helper_assembles_streamed_tool_calls(sdk):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "Weather? !tool get_weather"}]
    with sdk.chat.completions.stream(model="gpt-4o", messages=messages, tools=tools) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city": "Paris"}' or '"Paris"' in call.function.arguments
    assert final.choices[0].finish_reason == "tool_calls"


def test_bad_key_raises_authentication_error_after_one_request(server, fake_provider):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nm-not-a-real-key-000000000000000")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.request_id
    assert fake_provider.requests == []


def test_unknown_model_raises_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="no-such-model", messages=HELLO)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")


@pytest.mark.parametrize(
    "params, param",
    [
        ({"temperature": 3}, "temperature"),
        ({"messages": []}, "messages"),
        ({"n": 0}, "n"),
    ],
)
def test_bad_parameters_raise_bad_request_naming_the_param(sdk, params, param):
    kwargs = {"model": "gpt-4o", "messages": HELLO, **params}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(**kwargs)
    assert caught.value.param == param
    assert caught.value.body["param"] == param


def test_provider_500_raises_internal_server_error_and_is_logged(sdk):
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "!error 500"}])
    row = wait_for_log(caught.value.request_id)
    assert row.status_code == 500 and row.error_type == "server_error"


def test_error_mid_stream_arrives_as_api_error(sdk):
    stream = sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "go !stream-error-after 2"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_models_list_and_retrieve(sdk):
    models = sdk.models.list()
    ids = {m.id for m in models.data}
    assert len(ids) >= 100 and {"gpt-4o", "claude-3-5-sonnet", "gemini-flash"} <= ids
    model = sdk.models.retrieve("gpt-4o")
    assert model.object == "model" and isinstance(model.created, int) and model.owned_by == "openai"


def test_one_log_row_per_request(sdk, e2e_key):
    ids = []
    for _ in range(5):
        ids.append(
            sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO).headers[
                "x-request-id"
            ]
        )
    for request_id in ids:
        wait_for_log(request_id)
    assert RequestLog.objects.filter(request_id__in=ids).count() == 5
