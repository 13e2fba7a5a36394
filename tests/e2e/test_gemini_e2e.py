"""The official OpenAI Python SDK against the real server, in front of the fake Gemini provider.

`gemini-flash` is served by Gemini (`gemini-3.8-flash` upstream). The fake answers in Gemini's wire format;
what it answers is decided by `!directives` (tests/fakes/scripts.py).
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.e2e.conftest import PROVIDER_KEY, LiveServer, wait_for_log

pytestmark = pytest.mark.e2e

MODEL = "gemini-flash"
UPSTREAM_PATH = "/v1beta/models/gemini-3.8-flash"
HELLO = [{"role": "user", "content": "Say hello to the tests"}]  # 5 words → 5 prompt tokens at the fake
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    for name in ("get_weather", "get_time")
]


def test_non_stream_completion_has_openai_shape_and_a_gemini_log_row(sdk, fake_provider):
    raw = sdk.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    completion = raw.parse()
    assert completion.object == "chat.completion" and isinstance(completion.created, int)
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gemini-3.8-flash"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "Hello from the fake provider."
    assert choice.finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 4)
    assert raw.headers["x-neurometric-provider"] == "gemini"

    upstream = fake_provider.requests[-1]
    assert upstream.path == f"{UPSTREAM_PATH}:generateContent"
    assert upstream.headers["x-goog-api-key"] == PROVIDER_KEY and "key" not in upstream.query
    assert upstream.json["contents"] == [{"role": "user", "parts": [{"text": "Say hello to the tests"}]}]

    row = wait_for_log(completion._request_id)
    assert row.provider == "gemini" and row.status_code == 200 and not row.usage_estimated
    assert (row.prompt_tokens, row.completion_tokens, row.served_model) == (5, 4, "gemini-3.8-flash")


def test_reasoning_and_cached_tokens_reach_usage_and_the_log_row(sdk):
    messages = [{"role": "user", "content": "Say hello !reasoning 3 !cached 2"}]  # 6 words
    completion = sdk.chat.completions.create(model=MODEL, messages=messages)
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (6, 7, 13)
    assert usage.completion_tokens_details.reasoning_tokens == 3
    assert usage.prompt_tokens_details.cached_tokens == 2
    row = wait_for_log(completion._request_id)
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens, row.reasoning_tokens) == (6, 2, 7, 3)


def test_stream_with_include_usage_ends_with_a_usage_chunk(sdk, fake_provider):
    stream = sdk.chat.completions.create(
        model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == "Hello from the fake provider."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 9
    assert all(c.usage is None for c in chunks[:-1])

    upstream = fake_provider.requests[-1]
    assert upstream.path == f"{UPSTREAM_PATH}:streamGenerateContent" and upstream.query == {"alt": "sse"}
    row = wait_for_log(stream.response.headers["x-request-id"])
    assert (row.provider, row.prompt_tokens, row.completion_tokens, row.stream) == ("gemini", 5, 4, True)
    assert not row.usage_estimated


def test_stream_without_include_usage_carries_no_usage(sdk):
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


@pytest.mark.parametrize(
    "content, params",
    [("Say hello !length", {}), ("Say hello", {"max_tokens": 2})],
    ids=["max-tokens-directive", "small-max-tokens"],
)
def test_a_truncated_answer_finishes_with_length(sdk, content, params):
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **params
    )
    assert completion.choices[0].finish_reason == "length"


def test_max_tokens_reaches_gemini_as_max_output_tokens(sdk, fake_provider):
    sdk.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2, temperature=0.5, stop="END")
    config = fake_provider.requests[-1].json["generationConfig"]
    assert config == {"maxOutputTokens": 2, "temperature": 0.5, "stopSequences": ["END"]}


def test_sdk_stream_helper_assembles_a_streamed_tool_call(sdk):
    messages = [{"role": "user", "content": "Weather in Paris? !tool get_weather"}]
    with sdk.chat.completions.stream(model=MODEL, messages=messages, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_a_tool_round_trip_sends_the_results_back_by_function_name(sdk, fake_provider):
    question = "Weather and time in Paris?"
    first = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"{question} !tools2"}], tools=TOOLS
    )
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert len({c.id for c in calls}) == 2

    messages = [
        {"role": "user", "content": question},  # (without the directive, so the fake answers in text)
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp_c": 18}'},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "14:05"},
    ]
    answer = sdk.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == "Hello from the fake provider."

    contents = fake_provider.requests[-1].json["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {"city": "Paris"}}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
            {"functionResponse": {"name": "get_time", "response": {"result": "14:05"}}},
        ],
    }


def test_a_tool_result_for_an_unknown_call_is_a_bad_request(sdk, fake_provider):
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "tool", "tool_call_id": "call_nowhere", "content": "18C"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=messages)
    assert caught.value.param == "messages[1].tool_call_id"
    assert fake_provider.requests == []


def test_a_429_raises_rate_limit_error_with_retry_after(sdk):
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "!error 429"}])
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"
    row = wait_for_log(caught.value.request_id)
    assert row.provider == "gemini" and row.status_code == 429


def test_a_503_raises_internal_server_error(sdk):
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "!error 503"}])
    assert caught.value.status_code == 503 and caught.value.type == "server_error"


def test_an_unknown_upstream_model_raises_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "!error 404"}])
    assert caught.value.code == "model_not_found"


def test_a_failure_mid_stream_arrives_as_api_error(sdk):
    stream = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "go !stream-error-after 2"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


# --- a gateway whose Gemini key Gemini rejects: the fake answers 400 API_KEY_INVALID to `bad-key` ---------
@pytest.fixture(scope="module")
def bad_key_server(live_server_proc, fake_provider, tmp_path_factory):
    server = LiveServer(fake_provider, tmp_path_factory.mktemp("bad-key") / "server.log")
    server.env["GEMINI_API_KEY"] = "bad-key"
    server.start()
    yield server
    server.stop()


def test_a_rejected_gemini_key_raises_authentication_error_after_one_request(
    bad_key_server, e2e_key, fake_provider
):
    client = openai.OpenAI(base_url=f"{bad_key_server.url}/v1", api_key=e2e_key)  # default retries
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model=MODEL, messages=HELLO)
    error = caught.value
    assert error.status_code == 401 and error.code == "invalid_api_key"
    assert error.type == "invalid_request_error"
    assert "GEMINI_API_KEY" in error.message and "bad-key" not in error.message
    assert len(fake_provider.requests) == 1
