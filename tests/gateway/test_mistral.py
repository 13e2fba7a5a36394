"""Mistral: strict fields, renames, 9-character tool-call ids both ways, model_length, 422 → 400."""

from __future__ import annotations

import orjson
import pytest
import responses

from gateway.providers.base import Target
from gateway.providers.mistral import MistralProvider, from_mistral_id, to_mistral_id
from gateway.sse import SSEDecoder
from gateway.validation import validate_chat_request
from tests.gateway.provider_settings import with_providers

pytestmark = pytest.mark.django_db

UPSTREAM = "http://mistral.test/v1/chat/completions"


def _provider() -> MistralProvider:
    return MistralProvider(
        "mistral",
        api_key="k",
        base_url="http://mistral.test/v1",
        connect_timeout=1,
        read_timeout=1,
        pool_size=2,
    )


def _mistral_model() -> str:
    return "mistral-large"


def test_request_keeps_only_mistral_fields_and_renames_seed_and_max_completion_tokens():
    chat = validate_chat_request(
        {
            "model": "mistral-large",
            "stream": True,
            "stream_options": {"include_usage": True},
            "seed": 7,
            "max_completion_tokens": 50,
            "user": "u1",
            "logprobs": True,
            "top_logprobs": 2,
            "store": True,
            "logit_bias": {"1": 2},
            "service_tier": "auto",
            "temperature": 0.2,
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": "hi", "name": "bob"},
            ],
        }
    )
    body = _provider().build_request(chat, Target("mistral-large-latest")).json
    assert body == {
        "model": "mistral-large-latest",
        "stream": True,
        "random_seed": 7,
        "max_tokens": 50,
        "temperature": 0.2,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    }


def test_tool_call_ids_become_nine_alphanumerics_consistently_across_the_round_trip():
    chat = validate_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_abc123XYZ_long-id",
                            "type": "function",
                            "function": {"name": "w", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_abc123XYZ_long-id", "content": "18C"},
            ],
        }
    )
    messages = _provider().build_request(chat, Target("m")).json["messages"]
    sent_id = messages[1]["tool_calls"][0]["id"]
    assert len(sent_id) == 9 and sent_id.isalnum()
    assert messages[2]["tool_call_id"] == sent_id
    assert to_mistral_id(from_mistral_id("D681PevKs")) == "D681PevKs"


def test_response_tool_ids_get_the_call_prefix_and_model_length_becomes_length():
    chat = validate_chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    completion = _provider().parse_response(
        {
            "id": "1",
            "object": "chat.completion",
            "created": 1,
            "model": "mistral-large-latest",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "model_length",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "D681PevKs",
                                "type": "function",
                                "function": {"name": "w", "arguments": "{}"},
                            }
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        },
        chat,
    )
    choice = completion.body["choices"][0]
    assert choice["message"]["tool_calls"][0]["id"] == "call_D681PevKs"
    assert choice["finish_reason"] == "length"


def test_stream_usage_on_the_last_content_chunk_is_kept_for_the_relay():
    chat = validate_chat_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    raw = (
        b"".join(
            b"data: " + orjson.dumps(c) + b"\n\n"
            for c in [
                {
                    "id": "a",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}
                    ],
                },
                {
                    "id": "a",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "model_length"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                },
            ]
        )
        + b"data: [DONE]\n\n"
    )
    chunks = list(_provider().translate_stream(iter(SSEDecoder().feed(raw)), chat))
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["total_tokens"] == 4


@responses.activate
def test_mistral_422_reaches_the_client_as_400(api):
    responses.post(
        UPSTREAM,
        status=422,
        json={
            "object": "error",
            "message": {"detail": [{"type": "extra_forbidden", "loc": ["body", "x"]}]},
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        },
    )
    with with_providers(mistral="http://mistral.test/v1"):
        response = api.post(
            "/v1/chat/completions",
            {"model": _mistral_model(), "messages": [{"role": "user", "content": "x"}]},
        )
    assert response.status_code == 400
    error = orjson.loads(response.content)["error"]
    assert error["type"] == "invalid_request_error" and "extra_forbidden" in error["message"]
