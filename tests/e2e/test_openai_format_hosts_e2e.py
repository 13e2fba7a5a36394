"""Every OpenAI-format provider (OpenAI, Mistral, Groq's Llama) through the real server and the official SDK:
a tool round trip, include_usage, finish_reason length, the stream() helper, errors as SDK exceptions."""

from __future__ import annotations

import json

import openai
import pytest

from tests.e2e.conftest import wait_for_log

pytestmark = pytest.mark.e2e

# model → provider that serves it in the e2e server (Groq is first in LLAMA_HOSTS and configured)
MODELS = {"gpt-4o": "openai", "mistral-large": "mistral", "llama-3-8b": "groq"}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.fixture(params=sorted(MODELS))
def model(request) -> str:
    return request.param


def test_tool_call_round_trip(sdk, model, fake_provider):
    first = sdk.chat.completions.create(
        model=model, tools=TOOLS, messages=[{"role": "user", "content": "Weather? !tool get_weather"}]
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    second = sdk.chat.completions.create(
        model=model,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18C"},
        ],
    )
    assert second.choices[0].message.content
    sent = fake_provider.requests[-1].json
    if MODELS[model] == "mistral":
        tool_id = sent["messages"][1]["tool_calls"][0]["id"]
        assert len(tool_id) == 9 and tool_id.isalnum() and sent["messages"][2]["tool_call_id"] == tool_id


def test_include_usage_and_log_row(sdk, model):
    stream = sdk.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello to the tests"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    row = wait_for_log(stream.response.headers["x-request-id"])
    assert row.provider == MODELS[model]
    assert (row.prompt_tokens, row.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    if MODELS[model] == "mistral":
        # stream_options is not sent to Mistral (it always reports usage; the fake does not): counted
        assert row.usage_estimated
    else:
        assert (row.prompt_tokens, row.completion_tokens) == (5, 4) and not row.usage_estimated


def test_finish_reason_length(sdk, model):
    completion = sdk.chat.completions.create(
        model=model, max_tokens=2, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert completion.choices[0].finish_reason == "length"


def test_stream_helper_assembles_the_answer(sdk, model):
    with sdk.chat.completions.stream(model=model, messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].message.content == "Hello from the fake provider."


@pytest.mark.parametrize(
    "directive, exception",
    [
        ("!error 400", openai.BadRequestError),
        ("!error 404", openai.NotFoundError),
        ("!insufficient-quota", openai.RateLimitError),
        ("!error 500 !retry-after 0", openai.InternalServerError),
    ],
)
def test_errors_arrive_as_the_right_sdk_exception(sdk, model, directive, exception):
    with pytest.raises(exception):
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": directive}])
