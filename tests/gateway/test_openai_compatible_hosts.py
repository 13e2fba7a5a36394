"""Groq, Together, Ollama and configured extra hosts: OpenAI's format, with their quirks normalised."""

from __future__ import annotations

import orjson
import pytest
import responses
from django.test import override_settings

from gateway.providers.openai_compatible import OpenAICompatibleProvider
from gateway.sse import SSEDecoder
from gateway.validation import validate_chat_request
from tests.gateway.provider_settings import with_providers

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "hi"}]


def _events(chunks: list[dict]) -> list:
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    return SSEDecoder().feed(raw)


def _chunk(delta: dict, finish=None, index=0) -> dict:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "llama3",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def _provider() -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        "ollama", api_key="", base_url="http://ollama.test/v1", connect_timeout=1, read_timeout=1, pool_size=2
    )


def _translate(chunks: list[dict]) -> list[dict]:
    chat = validate_chat_request({"model": "x", "messages": MESSAGES, "stream": True})
    return list(_provider().translate_stream(iter(_events(chunks)), chat))


def test_role_is_sent_once_and_empty_finish_reason_becomes_null():
    out = _translate(
        [
            _chunk({"role": "assistant", "content": "a"}, ""),
            _chunk({"role": "assistant", "content": "b"}, ""),
            _chunk({}, "stop"),
        ]
    )
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": "a"}
    assert out[1]["choices"][0]["delta"] == {"content": "b"}
    assert [c["choices"][0]["finish_reason"] for c in out] == [None, None, "stop"]


def test_whole_tool_calls_at_the_same_index_get_indexes_from_zero_and_end_with_tool_calls():
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    out = _translate(
        [
            _chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "a1", **call}]}),
            _chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "b2", **call}]}),
            _chunk({}, "stop"),
        ]
    )
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in out[:2]]
    assert [(f["index"], f["id"]) for f in fragments] == [(0, "a1"), (1, "b2")]
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_repeated_name_and_id_in_later_fragments_are_dropped():
    out = _translate(
        [
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 3,
                            "id": "x",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a"'},
                        }
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 3, "id": "x", "function": {"name": "f", "arguments": ": 1}"}}]}),
        ]
    )
    first, later = (c["choices"][0]["delta"]["tool_calls"][0] for c in out)
    assert first == {
        "index": 0,
        "id": "x",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a"'},
    }
    assert later == {"index": 0, "function": {"arguments": ": 1}"}}


def test_non_stream_answer_gets_openai_defaults():
    chat = validate_chat_request({"model": "x", "messages": MESSAGES})
    completion = _provider().parse_response(
        {
            "id": "1",
            "object": "chat.completion",
            "created": 1,
            "model": "llama3",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": ""}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        },
        chat,
    )
    choice = completion.body["choices"][0]
    assert choice["finish_reason"] is None and choice["logprobs"] is None
    assert choice["message"]["refusal"] is None
    assert completion.usage.prompt_tokens == 3


@responses.activate
def test_extra_provider_is_used_as_name_slash_model_with_its_own_key(api):
    responses.post(
        "http://vllm.test/v1/chat/completions",
        json={
            "id": "1",
            "object": "chat.completion",
            "created": 1,
            "model": "qwen",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
        },
    )
    with with_providers(vllm="http://vllm.test/v1"):
        response = api.post("/v1/chat/completions", {"model": "vllm/Qwen/Qwen2-7B", "messages": MESSAGES})
    assert response.status_code == 200, response.content
    sent = responses.calls[0].request
    assert orjson.loads(sent.body)["model"] == "Qwen/Qwen2-7B"
    assert sent.headers["Authorization"] == "Bearer sk-test-vllm"
    assert response["x-neurometric-provider"] == "vllm"


@responses.activate
@pytest.mark.parametrize(
    "hosts, expected_url",
    [
        (["groq", "together", "ollama"], "http://groq.test/v1/chat/completions"),
        (["together", "groq"], "http://together.test/v1/chat/completions"),
    ],
)
def test_llama_goes_to_the_first_configured_host_in_llama_hosts_order(api, hosts, expected_url):
    responses.post(
        expected_url,
        json={
            "id": "1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
        },
    )
    with (
        with_providers(groq="http://groq.test/v1", together="http://together.test/v1"),
        override_settings(LLAMA_HOSTS=hosts),
    ):
        response = api.post("/v1/chat/completions", {"model": "llama-3-70b", "messages": MESSAGES})
    assert response.status_code == 200, response.content
    assert responses.calls[0].request.url == expected_url


@responses.activate
def test_llama_on_a_host_without_a_listed_price_logs_cost_as_unknown(api):
    from analytics.models import RequestLog

    responses.post(
        "http://groq.test/v1/chat/completions",
        json={
            "id": "1",
            "object": "chat.completion",
            "created": 1,
            "model": "llama3-70b-8192",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        },
    )
    with with_providers(groq="http://groq.test/v1"):
        response = api.post("/v1/chat/completions", {"model": "llama-3-70b", "messages": MESSAGES})
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert row.provider == "groq" and row.cost_usd is None and row.cost_unknown
    assert orjson.loads(responses.calls[0].request.body)["model"] == "llama3-70b-8192"
