"""The official OpenAI Python SDK against the real server, in front of the fake Anthropic provider."""

from __future__ import annotations

import json

import openai
import pytest

from tests.e2e.conftest import PROVIDER_KEY, wait_for_log

pytestmark = pytest.mark.e2e

MODEL = "claude-3-5-sonnet"  # an alias of claude-3-5-sonnet-20241022 in the catalogue
UPSTREAM_MODEL = "claude-3-5-sonnet-20241022"
HELLO = [{"role": "user", "content": "Say hello to the tests"}]  # 5 words → 5 prompt tokens at the fake
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_non_stream_answer_has_openai_shape_and_an_anthropic_log_row(sdk, fake_provider):
    raw = sdk.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": "Be nice."}, *HELLO]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-msg_")
    assert isinstance(completion.created, int)
    assert completion.model == UPSTREAM_MODEL
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the fake provider."
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 4)
    assert completion.usage.total_tokens == 11
    assert raw.headers["x-neurometric-provider"] == "anthropic"

    upstream = fake_provider.requests[-1]
    assert upstream.path == "/v1/messages"
    assert upstream.headers["x-api-key"] == PROVIDER_KEY
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert upstream.json["system"] == "Be nice."
    assert upstream.json["model"] == UPSTREAM_MODEL and upstream.json["max_tokens"] == 8192

    row = wait_for_log(completion._request_id)
    assert (row.provider, row.served_model) == ("anthropic", UPSTREAM_MODEL)
    assert (row.prompt_tokens, row.completion_tokens, row.status_code) == (7, 4, 200)
    assert not row.usage_estimated


def test_cached_prompt_tokens_are_reported_and_logged(sdk):
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello to the tests !cached 3"}]
    )
    assert completion.usage.prompt_tokens == 7
    assert completion.usage.prompt_tokens_details.cached_tokens == 3
    row = wait_for_log(completion._request_id)
    assert (row.prompt_tokens, row.cached_tokens) == (7, 3)


def test_stream_with_include_usage_ends_with_the_usage_chunk(sdk):
    stream = sdk.chat.completions.create(
        model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 9
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 4)
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == "Hello from the fake provider."

    row = wait_for_log(stream.response.headers["x-request-id"])
    assert (row.provider, row.prompt_tokens, row.completion_tokens, row.stream) == ("anthropic", 5, 4, True)


def test_stream_without_include_usage_carries_no_usage(sdk):
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


@pytest.mark.parametrize(
    "content, params",
    [("Say hello !length", {}), ("Say hello", {"max_tokens": 2})],
    ids=["length-directive", "small-max-tokens"],
)
def test_a_capped_answer_finishes_with_length(sdk, fake_provider, content, params):
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **params
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Hello from"
    if params:
        assert fake_provider.requests[-1].json["max_tokens"] == 2


def test_sdk_stream_helper_assembles_a_streamed_tool_call(sdk):
    messages = [{"role": "user", "content": "Weather in Paris? !tool get_weather"}]
    with sdk.chat.completions.stream(model=MODEL, messages=messages, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Checking."  # the fake's text block comes before the tool block
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_fake_0" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert choice.finish_reason == "tool_calls"


def test_two_streamed_tool_calls_get_indexes_0_and_1(sdk):
    messages = [{"role": "user", "content": "Weather and time? !tools2"}]
    chunks = list(
        sdk.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=True)
    )
    firsts = [
        (call.index, call.function.name)
        for c in chunks
        for call in (c.choices[0].delta.tool_calls or [])
        if call.id
    ]
    assert firsts == [(0, "get_weather"), (1, "get_time")]


def test_tool_round_trip_with_two_tool_results_gets_an_answer(sdk, fake_provider):
    calls = [
        {"id": f"toolu_0{i}", "type": "function", "function": {"name": "get_weather", "arguments": args}}
        for i, args in ((1, '{"city": "Paris"}'), (2, '{"city": "Rome"}'))
    ]
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "21C"},
    ]
    completion = sdk.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert completion.choices[0].message.content == "Hello from the fake provider."
    assert completion.choices[0].finish_reason == "stop"

    sent = fake_provider.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["input"] for b in sent[1]["content"]] == [{"city": "Paris"}, {"city": "Rome"}]
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_02", "content": "21C"},
    ]
    row = wait_for_log(completion._request_id)
    assert (row.provider, row.prompt_tokens, row.completion_tokens) == ("anthropic", 7, 4)


def test_upstream_429_raises_rate_limit_error_with_openai_rate_limit_headers(sdk):
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi !error 429"}])
    error = caught.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    headers = error.response.headers
    assert headers["retry-after"] == "1"
    assert headers["x-ratelimit-limit-requests"] == "50"
    assert headers["x-ratelimit-remaining-tokens"] == "79000"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert not any(name.startswith("anthropic-") for name in headers)
    row = wait_for_log(error.request_id)
    assert (row.provider, row.status_code) == ("anthropic", 429)


def test_upstream_529_overloaded_raises_internal_server_error_with_503(sdk):
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi !error 529"}])
    assert caught.value.status_code == 503


def test_upstream_401_raises_authentication_error_naming_the_setting(sdk):
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi !error 401"}])
    error = caught.value
    assert error.status_code == 401 and error.code == "invalid_api_key"
    assert "ANTHROPIC_API_KEY" in error.message and PROVIDER_KEY not in error.message


def test_billing_error_raises_rate_limit_error_with_insufficient_quota(sdk):
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi !insufficient-quota"}]
        )
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_error_mid_stream_arrives_as_api_error(sdk):
    stream = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "go !stream-error-after 2"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert "Overloaded" in caught.value.message


@pytest.mark.parametrize("params, param", [({"temperature": 1.5}, "temperature"), ({"n": 2}, "n")])
def test_parameters_anthropic_cannot_honour_raise_bad_request(sdk, fake_provider, params, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=HELLO, **params)
    assert caught.value.param == param
    assert fake_provider.requests == []
