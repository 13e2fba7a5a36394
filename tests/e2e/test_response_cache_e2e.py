"""The response cache with the official OpenAI SDK against the real server, in front of the fake provider.

Each test asks something of its own (a nonce in the message), so answers cached by earlier runs in a shared
Redis never leak in. A miss is stored after its answer was sent: a test waits for the miss's log row, which
is written after the store, before it expects a hit.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import openai
import pytest

from accounts.models import ApiKey
from accounts.services import api_key_create, user_get_or_create
from tests.e2e.conftest import wait_for_log

pytestmark = pytest.mark.e2e

ON = {"x-neurometric-cache": "true"}
FAKE_TEXT = "Hello from the fake provider."
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def _messages(*words: str) -> list[dict]:
    return [{"role": "user", "content": " ".join(("Say hello", uuid.uuid4().hex, *words))}]


def _create(sdk, messages, headers=ON, **params):
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=messages, extra_headers=headers, **params
    )
    return raw.headers, raw.parse()


def _stream_final(sdk, messages, headers=ON, **params):
    with sdk.chat.completions.stream(
        model="gpt-4o", messages=messages, extra_headers=headers, **params
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    return stream._response.headers, final


def _primed(sdk, messages, **params):
    """A miss, stored: its log row is written only after the answer went into the cache."""
    headers, completion = _create(sdk, messages, **params)
    assert headers["x-neurometric-cache"] == "miss"
    wait_for_log(headers["x-request-id"])
    return completion


def test_an_identical_request_is_a_hit_with_the_same_answer(sdk, fake_provider):
    messages = _messages()
    first = _primed(sdk, messages)
    headers, second = _create(sdk, messages)
    assert headers["x-neurometric-cache"] == "hit" and headers["x-neurometric-provider"] == "cache"
    assert second.model_dump() == first.model_dump()
    assert second.choices[0].message.content == FAKE_TEXT
    assert len(fake_provider.requests) == 1


def test_the_hit_is_logged_at_cost_zero_with_the_cost_it_saved(sdk):
    messages = _messages()
    first = _primed(sdk, messages)
    headers, _ = _create(sdk, messages)
    row = wait_for_log(headers["x-request-id"])
    assert row.cache_hit and row.provider == "cache" and row.status_code == 200
    assert row.cost_usd == 0
    usage = first.usage
    assert (row.prompt_tokens, row.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert row.cost_saved_usd == (usage.prompt_tokens * Decimal("2.5") + usage.completion_tokens * 10) / 10**6
    assert not wait_for_log(first._request_id).cache_hit


@pytest.mark.parametrize("include_usage", [False, True])
def test_the_sdk_stream_helper_assembles_a_replayed_hit(sdk, fake_provider, include_usage):
    messages = _messages()
    first = _primed(sdk, messages)
    params = {"stream_options": {"include_usage": True}} if include_usage else {}
    headers, final = _stream_final(sdk, messages, **params)
    assert headers["x-neurometric-cache"] == "hit"
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].message.content == FAKE_TEXT
    assert final.choices[0].finish_reason == "stop"
    if include_usage:
        assert final.usage.total_tokens == first.usage.total_tokens
    else:
        assert final.usage is None
    assert len(fake_provider.requests) == 1


def test_a_streamed_miss_populates_the_cache(sdk, fake_provider):
    messages = _messages()
    headers, streamed = _stream_final(sdk, messages, stream_options={"include_usage": True})
    assert headers["x-neurometric-cache"] == "miss"
    wait_for_log(headers["x-request-id"])
    headers, completion = _create(sdk, messages)
    assert headers["x-neurometric-cache"] == "hit"
    assert completion.choices[0].message.content == streamed.choices[0].message.content == FAKE_TEXT
    assert completion.usage.total_tokens == streamed.usage.total_tokens
    assert len(fake_provider.requests) == 1


def test_a_tool_call_answer_is_replayed_to_the_stream_helper(sdk, fake_provider):
    messages = _messages("!tool", "get_weather")
    first = _primed(sdk, messages, tools=TOOLS)
    headers, final = _stream_final(sdk, messages, tools=TOOLS)
    assert headers["x-neurometric-cache"] == "hit"
    call = final.choices[0].message.tool_calls[0]
    expected = first.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        expected.id,
        "get_weather",
        expected.function.arguments,
    )
    assert final.choices[0].finish_reason == "tool_calls"
    assert len(fake_provider.requests) == 1


def test_another_user_never_gets_the_cached_answer(sdk, server, fake_provider):
    messages = _messages()
    _primed(sdk, messages)
    user, _ = user_get_or_create(email="e2e-outsider@example.com")
    outsider = openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=api_key_create(user=user, name="o")[1], max_retries=0
    )
    headers, _ = _create(outsider, messages)
    assert headers["x-neurometric-cache"] == "miss"
    assert len(fake_provider.requests) == 2


def test_a_key_with_a_cache_ttl_caches_and_the_false_header_opts_out(server, fake_provider):
    user, _ = user_get_or_create(email="e2e-cached@example.com")
    key, raw_key = api_key_create(user=user, name="cached")
    ApiKey.objects.filter(pk=key.pk).update(cache_ttl_seconds=300)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=raw_key, max_retries=0)
    messages = _messages()
    _primed(client, messages, headers={})
    assert _create(client, messages, headers={})[0]["x-neurometric-cache"] == "hit"
    headers, _ = _create(client, messages, headers={"x-neurometric-cache": "false"})
    assert "x-neurometric-cache" not in headers
    assert len(fake_provider.requests) == 2


def test_an_answer_expires_after_its_ttl(sdk, fake_provider):
    messages = _messages()
    short = {**ON, "x-neurometric-cache-ttl": "1"}
    _primed(sdk, messages, headers=short)
    assert _create(sdk, messages, headers=short)[0]["x-neurometric-cache"] == "hit"
    time.sleep(1.2)
    assert _create(sdk, messages, headers=short)[0]["x-neurometric-cache"] == "miss"
    assert len(fake_provider.requests) == 2
