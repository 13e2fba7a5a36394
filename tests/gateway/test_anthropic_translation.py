"""The Anthropic adapter: OpenAI requests to Messages requests; Anthropic answers, streams and errors back.

Fixtures are in Anthropic's real wire format (as in the compatibility reference); a few tests go through the
Django stack with Anthropic's HTTP mocked by `responses`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
import responses
from django.conf import settings
from django.test import override_settings
from hypothesis import HealthCheck, given, reject
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from analytics.models import RequestLog
from gateway.errors import InvalidRequest, UpstreamError
from gateway.providers.anthropic import AnthropicProvider, format_duration, rate_limit_headers
from gateway.providers.base import Target
from gateway.sse import SSEDecoder
from gateway.validation import validate_chat_request

PROVIDER_KEY = "sk-ant-test-provider-key"
BASE_URL = "http://anthropic.test"
UPSTREAM = f"{BASE_URL}/v1/messages"
TARGET = Target("claude-3-5-sonnet-20241022", 8192)
MODEL = "claude-3-5-sonnet"
HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def provider() -> AnthropicProvider:
    return AnthropicProvider(
        "anthropic", api_key=PROVIDER_KEY, base_url=BASE_URL, connect_timeout=5, read_timeout=5, pool_size=4
    )


def chat(**body):
    body.setdefault("model", MODEL)
    body.setdefault("messages", HELLO)
    return validate_chat_request(body)


def build(provider, **body) -> dict:
    return provider.build_request(chat(**body), TARGET).json


# --- Anthropic wire-format fixtures ---------------------------------------------------------------------


def message(content, stop_reason="end_turn", **usage) -> dict:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 50,
            "output_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            **usage,
        },
    }


def sse(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def message_start(**usage) -> bytes:
    return sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-3-5-sonnet-20241022",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1, **usage},
            },
        },
    )


def block_start(index: int, block: dict) -> bytes:
    return sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def text_block(index: int, *pieces: str) -> list[bytes]:
    events = [block_start(index, {"type": "text", "text": ""})]
    events += [
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    return [*events, block_stop(index)]


def tool_block(index: int, tool_id: str, name: str, *fragments: str) -> list[bytes]:
    events = [block_start(index, {"type": "tool_use", "id": tool_id, "name": name, "input": {}})]
    events += [
        sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": f},
            },
        )
        for f in fragments
    ]
    return [*events, block_stop(index)]


def block_stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def message_end(stop_reason: str, output_tokens: int = 42, **usage) -> list[bytes]:
    return [
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens, **usage},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


PING = sse("ping", {"type": "ping"})


def translate(provider, raw: list[bytes], **body) -> list[dict]:
    decoder = SSEDecoder()
    events = [e for part in raw for e in decoder.feed(part)] + decoder.close()
    return list(provider.translate_stream(iter(events), chat(stream=True, **body)))


def tool_fragments(chunks: list[dict]) -> list[dict]:
    return [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or ()]


def error_body(kind: str, text: str) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": kind, "message": text},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
        }
    )


# --- request: shape and parameters ----------------------------------------------------------------------


def test_request_goes_to_v1_messages_with_anthropic_headers(provider):
    upstream = provider.build_request(chat(), TARGET)
    assert upstream.url == "http://anthropic.test/v1/messages"
    assert upstream.headers == {
        "x-api-key": PROVIDER_KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert upstream.json == {
        "model": "claude-3-5-sonnet-20241022",
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
    }


@pytest.mark.parametrize(
    "params, target, expected",
    [
        ({"max_completion_tokens": 100, "max_tokens": 50}, TARGET, 100),
        ({"max_tokens": 50}, TARGET, 50),
        ({}, TARGET, 8192),
        ({}, Target("claude-x"), 4096),
    ],
    ids=["max_completion_tokens-wins", "max_tokens", "catalogue-default", "fallback-4096"],
)
def test_max_tokens_comes_from_the_client_then_the_catalogue_then_4096(provider, params, target, expected):
    assert provider.build_request(chat(**params), target).json["max_tokens"] == expected


def test_system_and_developer_messages_become_the_top_level_system(provider):
    body = build(
        provider,
        messages=[
            {"role": "system", "content": "Be terse."},
            {
                "role": "developer",
                "content": [{"type": "text", "text": "Use"}, {"type": "text", "text": "SI"}],
            },
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": ""},
        ],
    )
    assert body["system"] == "Be terse.\n\nUse\nSI"
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_no_system_field_without_system_messages(provider):
    assert "system" not in build(provider)


def test_consecutive_same_role_messages_are_merged(provider):
    body = build(
        provider,
        messages=[
            {"role": "user", "content": "One"},
            {"role": "user", "content": [{"type": "text", "text": "Two"}]},
            {"role": "assistant", "content": "A"},
            {"role": "assistant", "content": "B"},
            {"role": "user", "content": "Three"},
        ],
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
        {"role": "user", "content": [{"type": "text", "text": "Three"}]},
    ]


def test_empty_text_blocks_are_dropped(provider):
    body = build(
        provider,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Again"},
        ],
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Again"}]}
    ]


def test_a_request_with_only_empty_or_system_messages_is_refused(provider):
    with pytest.raises(InvalidRequest) as caught:
        build(provider, messages=[{"role": "system", "content": "x"}, {"role": "user", "content": ""}])
    assert caught.value.param == "messages"


@pytest.mark.parametrize("stop, expected", [("END", ["END"]), (["a", "b"], ["a", "b"])])
def test_stop_becomes_stop_sequences(provider, stop, expected):
    assert build(provider, stop=stop)["stop_sequences"] == expected


def test_sampling_user_and_stream_parameters_are_translated(provider):
    body = build(provider, temperature=0.7, top_p=0.9, user="user-42", stream=True)
    assert (body["temperature"], body["top_p"]) == (0.7, 0.9)
    assert body["metadata"] == {"user_id": "user-42"}
    assert body["stream"] is True


def test_openai_only_parameters_are_dropped(provider):
    body = build(provider, presence_penalty=1, frequency_penalty=1, seed=7, logit_bias={"50256": -100})
    assert set(body) == {"model", "max_tokens", "messages"}


@pytest.mark.parametrize("temperature", [0, 0.5, 1])
def test_temperature_from_0_to_1_passes_through(provider, temperature):
    assert build(provider, temperature=temperature)["temperature"] == temperature


def test_temperature_above_1_is_refused_with_a_400_naming_temperature(provider):
    with pytest.raises(InvalidRequest) as caught:
        build(provider, temperature=1.5)
    error = caught.value
    assert (error.status, error.param, error.type) == (400, "temperature", "invalid_request_error")
    assert "Anthropic" in error.message and "0 to 1" in error.message


def test_n_above_1_is_refused_naming_n(provider):
    with pytest.raises(InvalidRequest) as caught:
        build(provider, n=2)
    assert (caught.value.status, caught.value.param) == (400, "n")
    assert "not supported by Anthropic" in caught.value.message
    assert "n" not in build(provider, n=1)


@pytest.mark.parametrize(
    "response_format, expected",
    [
        ({"type": "json_object"}, "valid JSON object"),
        (
            {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}},
            '{"type":"object"}',
        ),
    ],
)
def test_json_response_format_adds_a_json_only_instruction_to_the_system(provider, response_format, expected):
    body = build(
        provider,
        messages=[{"role": "system", "content": "Be terse."}, *HELLO],
        response_format=response_format,
    )
    assert body["system"].startswith("Be terse.\n\n")
    assert expected in body["system"] and "JSON" in body["system"]
    assert "response_format" not in body


def test_text_response_format_changes_nothing(provider):
    assert "system" not in build(provider, response_format={"type": "text"})


# --- request: images ------------------------------------------------------------------------------------


def test_images_become_base64_or_url_sources(provider):
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]
    body = build(provider, messages=[{"role": "user", "content": content}])
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_a_data_url_that_is_not_base64_is_refused_naming_the_part(provider):
    content = [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]
    with pytest.raises(InvalidRequest) as caught:
        build(provider, messages=[{"role": "user", "content": content}])
    assert caught.value.param == "messages[0].content[0].image_url.url"


def test_audio_input_is_refused_naming_the_part(provider):
    content = [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]
    with pytest.raises(InvalidRequest) as caught:
        build(provider, messages=[{"role": "user", "content": content}])
    assert caught.value.param == "messages[0].content[0].type"


# --- request: tools -------------------------------------------------------------------------------------


def test_tools_become_name_description_input_schema(provider):
    bare = {"type": "function", "function": {"name": "now"}}
    body = build(provider, tools=[WEATHER_TOOL, bare])
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object"}},
    ]
    assert "tool_choice" not in body  # Anthropic's default is auto already


@pytest.mark.parametrize(
    "tool_choice, parallel, expected",
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tool_choice_and_parallel_tool_calls_map_to_anthropic_tool_choice(
    provider, tool_choice, parallel, expected
):
    params = {"tools": [WEATHER_TOOL]}
    if tool_choice is not None:
        params["tool_choice"] = tool_choice
    if parallel is not None:
        params["parallel_tool_calls"] = parallel
    assert build(provider, **params)["tool_choice"] == expected


def test_assistant_tool_calls_become_tool_use_blocks_with_parsed_input(provider):
    body = build(
        provider,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
        ],
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
        ],
    }


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", "null"])
def test_tool_call_arguments_that_are_not_a_json_object_are_refused_naming_the_param(provider, arguments):
    call = {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    with pytest.raises(InvalidRequest) as caught:
        build(provider, messages=[*HELLO, {"role": "assistant", "content": None, "tool_calls": [call]}])
    assert caught.value.status == 400
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_consecutive_tool_messages_become_one_user_message_of_tool_results(provider):
    calls = [
        {"id": f"toolu_0{i}", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        for i in (1, 2)
    ]
    body = build(
        provider,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "21C"}]},
        ],
    )
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_02", "content": "21C"},
    ]


def test_legacy_function_messages_are_refused(provider):
    with pytest.raises(InvalidRequest) as caught:
        build(provider, messages=[*HELLO, {"role": "function", "name": "f", "content": "x"}])
    assert caught.value.param == "messages[1].role"


# --- request: any valid OpenAI request translates, or is refused with InvalidRequest ---------------------

_text = st.text(max_size=20)
_parts = st.lists(st.builds(lambda t: {"type": "text", "text": t}, _text), min_size=1, max_size=3)
_image = st.sampled_from(
    [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}},
    ]
)
_user_content = st.one_of(
    _text, st.lists(st.one_of(_parts.map(lambda p: p[0]), _image), min_size=1, max_size=3)
)
_arguments = st.one_of(
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), _text), max_size=3).map(json.dumps),
    _text,
)
_tool_call = st.builds(
    lambda i, name, args: {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    },
    st.integers(0, 9),
    st.sampled_from(["get_weather", "get_time"]),
    _arguments,
)
_message = st.one_of(
    st.builds(lambda c: {"role": "system", "content": c}, st.one_of(_text, _parts)),
    st.builds(lambda c: {"role": "developer", "content": c}, st.one_of(_text, _parts)),
    st.builds(lambda c: {"role": "user", "content": c}, _user_content),
    st.builds(
        lambda c, calls: {"role": "assistant", "content": c, **({"tool_calls": calls} if calls else {})},
        st.one_of(_text, _parts),
        st.lists(_tool_call, max_size=2),
    ),
    st.builds(
        lambda calls: {"role": "assistant", "content": None, "tool_calls": calls},
        st.lists(_tool_call, min_size=1, max_size=2),
    ),
    st.builds(
        lambda i, c: {"role": "tool", "tool_call_id": f"call_{i}", "content": c},
        st.integers(0, 9),
        st.one_of(_text, _parts),
    ),
)
_tools = st.lists(
    st.builds(
        lambda name, desc, params: {
            "type": "function",
            "function": {
                "name": name,
                **({"description": desc} if desc else {}),
                **({"parameters": params} if params is not None else {}),
            },
        },
        st.sampled_from(["get_weather", "get_time", "search"]),
        st.one_of(st.none(), _text),
        st.one_of(st.none(), st.just({"type": "object", "properties": {"city": {"type": "string"}}})),
    ),
    min_size=1,
    max_size=3,
)
_optional = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "max_tokens": st.integers(1, 10_000),
    "max_completion_tokens": st.integers(1, 10_000),
    "n": st.integers(1, 3),
    "stop": st.one_of(_text, st.lists(_text, min_size=1, max_size=4)),
    "user": _text,
    "stream": st.booleans(),
    "parallel_tool_calls": st.booleans(),
    "presence_penalty": st.floats(-2, 2),
    "seed": st.integers(0, 2**31),
    "response_format": st.sampled_from(
        [
            {"type": "text"},
            {"type": "json_object"},
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        ]
    ),
}


@st.composite
def openai_requests(draw) -> dict:
    body = {"model": MODEL, "messages": draw(st.lists(_message, min_size=1, max_size=6))}
    for name, strategy in _optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    if draw(st.booleans()):
        body["tools"] = draw(_tools)
        body["tool_choice"] = draw(
            st.sampled_from(
                ["auto", "required", "none", {"type": "function", "function": {"name": "get_weather"}}]
            )
        )
    if body.get("stream") and draw(st.booleans()):
        body["stream_options"] = {"include_usage": draw(st.booleans())}
    return body


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=openai_requests())
def test_any_valid_openai_request_translates_or_is_refused_with_invalid_request(body):
    try:
        request = validate_chat_request(body)
    except InvalidRequest:
        reject()
    provider = AnthropicProvider(
        "anthropic", api_key="k", base_url=BASE_URL, connect_timeout=5, read_timeout=5, pool_size=1
    )
    try:
        upstream = provider.build_request(request, TARGET)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.param
        return
    sent = orjson.loads(orjson.dumps(upstream.json))
    assert sent["model"] == TARGET.model and sent["max_tokens"] >= 1
    assert sent.get("temperature", 0) <= 1
    roles = [m["role"] for m in sent["messages"]]
    assert roles and set(roles) <= {"user", "assistant"}
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), "roles alternate"
    for m in sent["messages"]:
        assert m["content"], "no empty message"
        for block in m["content"]:
            assert block["type"] in {"text", "image", "tool_use", "tool_result"}
            assert block["type"] != "text" or block["text"], "no empty text block"
            assert block["type"] != "tool_use" or isinstance(block["input"], dict)


# --- non-stream answer ----------------------------------------------------------------------------------


def test_text_and_tool_use_answer_becomes_an_openai_completion(provider):
    data = message(
        [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "tool_use",
    )
    body = provider.parse_response(data, chat()).body
    assert body["id"] == "chatcmpl-msg_01"
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["created"] > 1_700_000_000
    assert body["model"] == "claude-3-5-sonnet-20241022"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 50,
        "completion_tokens": 30,
        "total_tokens": 80,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_text_blocks_are_joined_and_thinking_is_dropped(provider):
    data = message(
        [
            {"type": "thinking", "thinking": "Let me think", "signature": "sig"},
            {"type": "text", "text": "Hello"},
            {"type": "text", "text": " world"},
        ]
    )
    msg = provider.parse_response(data, chat()).body["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": "Hello world", "refusal": None}


def test_an_answer_without_text_has_null_content(provider):
    data = message([{"type": "tool_use", "id": "toolu_01", "name": "now", "input": {}}], "tool_use")
    msg = provider.parse_response(data, chat()).body["choices"][0]["message"]
    assert msg["content"] is None and msg["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize(
    "stop_reason, finish",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_maps_to_finish_reason(provider, stop_reason, finish):
    data = message([{"type": "text", "text": "x"}], stop_reason)
    assert provider.parse_response(data, chat()).body["choices"][0]["finish_reason"] == finish


def test_usage_with_cache_creation_and_read_counts_both_in_the_prompt(provider):
    data = message(
        [{"type": "text", "text": "x"}],
        input_tokens=100,
        cache_creation_input_tokens=300,
        cache_read_input_tokens=200,
        output_tokens=40,
    )
    completion = provider.parse_response(data, chat())
    usage = completion.usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (600, 200, 300)
    assert usage.completion_tokens == 40
    assert completion.body["usage"] == {
        "prompt_tokens": 600,
        "completion_tokens": 40,
        "total_tokens": 640,
        "prompt_tokens_details": {"cached_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cache_creation_input_tokens": 300,
    }


# --- stream ---------------------------------------------------------------------------------------------


def test_text_then_tool_stream_gives_the_tool_index_0(provider):
    raw = [
        message_start(),
        PING,
        *text_block(0, "Hello"),
        *tool_block(1, "toolu_01", "get_weather", '{"city": "Par', 'is"}'),
        *message_end("tool_use"),
    ]
    chunks = translate(provider, raw)

    assert {c["id"] for c in chunks} == {"chatcmpl-msg_01"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"claude-3-5-sonnet-20241022"}
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    ]
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hello"}
    fragments = tool_fragments(chunks)
    assert fragments[0] == {
        "index": 0,
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert fragments[1:] == [
        {"index": 0, "function": {"arguments": '{"city": "Par'}},
        {"index": 0, "function": {"arguments": 'is"}'}},
    ]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 42
    assert all("usage" not in c for c in chunks[:-1])


def test_two_tool_use_blocks_give_indexes_0_and_1(provider):
    raw = [
        message_start(),
        *text_block(0, "Checking both."),
        *tool_block(1, "toolu_01", "get_weather", '{"city":"Paris"}'),
        *tool_block(2, "toolu_02", "get_time", '{"city":', '"Rome"}'),
        *message_end("tool_use"),
    ]
    fragments = tool_fragments(translate(provider, raw))
    firsts = [f for f in fragments if "id" in f]
    assert [(f["index"], f["id"], f["function"]["name"]) for f in firsts] == [
        (0, "toolu_01", "get_weather"),
        (1, "toolu_02", "get_time"),
    ]
    arguments = {0: "", 1: ""}
    for f in fragments:
        arguments[f["index"]] += f["function"]["arguments"]
    assert orjson.loads(arguments[0]) == {"city": "Paris"} and orjson.loads(arguments[1]) == {"city": "Rome"}


def test_a_tool_call_without_arguments_streams_an_empty_object(provider):
    raw = [message_start(), *tool_block(0, "toolu_01", "now"), *message_end("tool_use")]
    fragments = tool_fragments(translate(provider, raw))
    assert "".join(f["function"]["arguments"] for f in fragments) == "{}"


def test_thinking_signature_and_ping_events_are_dropped(provider):
    raw = [
        message_start(),
        PING,
        block_start(0, {"type": "thinking", "thinking": ""}),
        sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Hmm"},
            },
        ),
        sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "s"},
            },
        ),
        block_stop(0),
        *text_block(1, "Hi", " there"),
        *message_end("end_turn"),
    ]
    chunks = translate(provider, raw)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hi"}, {"content": " there"}, {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_usage_chunk_has_cache_creation_and_read(provider):
    raw = [
        message_start(input_tokens=10, cache_creation_input_tokens=300, cache_read_input_tokens=200),
        *text_block(0, "Hi"),
        *message_end("end_turn", output_tokens=7),
    ]
    usage = translate(provider, raw)[-1]["usage"]
    assert usage == {
        "prompt_tokens": 510,
        "completion_tokens": 7,
        "total_tokens": 517,
        "prompt_tokens_details": {"cached_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cache_creation_input_tokens": 300,
    }


def test_max_tokens_stream_finishes_with_length(provider):
    raw = [message_start(), *text_block(0, "Hel"), *message_end("max_tokens")]
    assert translate(provider, raw)[-2]["choices"][0]["finish_reason"] == "length"


def test_overloaded_error_event_raises_upstream_error_503(provider):
    raw = [
        message_start(),
        *text_block(0, "Hel")[:-1],
        sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]
    with pytest.raises(UpstreamError) as caught:
        translate(provider, raw)
    assert (caught.value.status, caught.value.type, caught.value.message) == (
        503,
        "overloaded_error",
        "Overloaded",
    )


def test_a_stream_that_ends_before_message_stop_is_an_error(provider):
    with pytest.raises(UpstreamError) as caught:
        translate(provider, [message_start(), *text_block(0, "Hel")])
    assert caught.value.code == "upstream_stream_broken"


def test_a_malformed_event_is_an_error(provider):
    with pytest.raises(UpstreamError) as caught:
        translate(provider, [message_start(), b"event: content_block_delta\ndata: {broken\n\n"])
    assert caught.value.code == "upstream_malformed"


@hypothesis_settings(max_examples=100, deadline=None)
@given(blocks=st.lists(st.sampled_from(["text", "tool", "thinking"]), max_size=6))
def test_tool_indexes_count_tool_blocks_from_0_without_gaps(blocks):
    provider = AnthropicProvider(
        "anthropic", api_key="k", base_url=BASE_URL, connect_timeout=5, read_timeout=5, pool_size=1
    )
    raw = [message_start()]
    for i, kind in enumerate(blocks):
        if kind == "text":
            raw += text_block(i, "x")
        elif kind == "tool":
            raw += tool_block(i, f"toolu_{i}", "get_weather", '{"a":', "1}")
        else:
            raw += [block_start(i, {"type": "thinking", "thinking": ""}), block_stop(i)]
    raw += message_end("tool_use")
    firsts = [f["index"] for f in tool_fragments(translate(provider, raw)) if "id" in f]
    assert firsts == list(range(blocks.count("tool")))


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, kind, expected_status, expected_code",
    [
        (400, "invalid_request_error", 400, None),
        (403, "permission_error", 403, "permission_denied"),
        (404, "not_found_error", 404, "model_not_found"),
        (413, "request_too_large", 400, "request_too_large"),
        (429, "rate_limit_error", 429, "rate_limit_exceeded"),
        (500, "api_error", 500, "upstream_error"),
        (529, "overloaded_error", 503, "server_is_overloaded"),
    ],
)
def test_anthropic_errors_map_to_openai_statuses_and_codes(
    provider, status, kind, expected_status, expected_code
):
    error = provider.map_error(status, error_body(kind, "upstream says no"), {})
    assert (error.status, error.code) == (expected_status, expected_code)
    assert error.message == "upstream says no"
    assert error.status != 529


def test_401_names_anthropic_api_key_and_never_the_key(provider):
    body = error_body("authentication_error", f"invalid x-api-key {PROVIDER_KEY}")
    error = provider.map_error(401, body, {})
    assert (error.status, error.code, error.type) == (401, "invalid_api_key", "invalid_request_error")
    assert "ANTHROPIC_API_KEY" in error.message and PROVIDER_KEY not in error.message


@pytest.mark.parametrize("status", [400, 402, 403])
def test_billing_error_becomes_429_insufficient_quota_that_is_not_retried(provider, status):
    body = error_body("billing_error", "Your credit balance is too low to access the API.")
    error = provider.map_error(status, body, {})
    assert (error.status, error.type, error.code) == (429, "insufficient_quota", "insufficient_quota")
    assert error.headers["x-should-retry"] == "false"


def test_429_passes_retry_after_and_converts_rate_limit_headers(provider):
    now = datetime.now(UTC)
    headers = {
        "retry-after": "1",
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": (now + timedelta(seconds=1.5))
        .isoformat()
        .replace("+00:00", "Z"),  # noqa: E501
        "anthropic-ratelimit-tokens-limit": "80000",
        "anthropic-ratelimit-tokens-remaining": "79000",
        "anthropic-ratelimit-tokens-reset": (now + timedelta(minutes=6)).isoformat(),
    }
    error = provider.map_error(
        429, error_body("rate_limit_error", "Number of requests has exceeded"), headers
    )
    assert error.headers == {
        "retry-after": "1",
        "x-ratelimit-limit-requests": "50",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",  # 1.5 s from now, rounded up
        "x-ratelimit-limit-tokens": "80000",
        "x-ratelimit-remaining-tokens": "79000",
        "x-ratelimit-reset-tokens": "6m0s",
    }


def test_rate_limit_reset_is_a_duration_from_now():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    headers = {
        "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00.250Z",
        "anthropic-ratelimit-tokens-reset": "2030-01-01T01:02:03Z",
    }
    assert rate_limit_headers(headers, now) == {
        "x-ratelimit-reset-requests": "250ms",
        "x-ratelimit-reset-tokens": "1h2m3s",
    }
    assert rate_limit_headers({"anthropic-ratelimit-tokens-reset": "not a time"}, now) == {}


@pytest.mark.parametrize(
    "seconds, text", [(-3, "0s"), (0.02, "20ms"), (1, "1s"), (59.2, "1m0s"), (360, "6m0s"), (3600, "1h0m0s")]
)
def test_durations_are_written_as_openai_writes_them(seconds, text):
    assert format_duration(seconds) == text


def test_an_error_body_that_is_not_json_still_maps_by_status(provider):
    error = provider.map_error(502, b"<html>Bad gateway</html>", {})
    assert error.status == 502 and "HTTP 502" in error.message


def test_prompt_too_long_is_context_length_exceeded(provider):
    body = error_body("invalid_request_error", "prompt is too long: 213456 tokens > 200000 maximum")
    error = provider.map_error(400, body, {})
    assert (error.status, error.code, error.param) == (400, "context_length_exceeded", "messages")


# --- through the Django stack ---------------------------------------------------------------------------


@pytest.fixture
def anthropic_settings():
    providers = {name: dict(config) for name, config in settings.PROVIDERS.items()}
    providers["anthropic"].update(api_key=PROVIDER_KEY, base_url=BASE_URL)
    with override_settings(PROVIDERS=providers):
        yield


@pytest.mark.django_db
@responses.activate
def test_non_stream_request_through_the_stack_is_translated_and_logged(api, anthropic_settings):
    answer = message(
        [{"type": "text", "text": "Hello!"}],
        input_tokens=100,
        cache_creation_input_tokens=300,
        cache_read_input_tokens=200,
        output_tokens=40,
    )
    responses.post(UPSTREAM, json=answer)
    response = api.post(
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "system", "content": "Be terse."}, *HELLO],
            "temperature": 0.2,
        },
    )

    assert response.status_code == 200, response.content
    body = orjson.loads(response.content)
    assert body["choices"][0]["message"]["content"] == "Hello!"
    assert body["usage"]["prompt_tokens"] == 600 and body["usage"]["cache_creation_input_tokens"] == 300
    sent = responses.calls[0].request
    assert sent.headers["x-api-key"] == PROVIDER_KEY and sent.headers["anthropic-version"] == "2023-06-01"
    assert orjson.loads(sent.body)["system"] == "Be terse."

    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert (row.provider, row.served_model) == ("anthropic", "claude-3-5-sonnet-20241022")
    assert (row.prompt_tokens, row.cached_tokens, row.cache_write_tokens, row.completion_tokens) == (
        600,
        200,
        300,
        40,
    )
    # $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M tokens
    assert (
        row.cost_usd == (100 * Decimal("3") + 200 * Decimal("0.3") + 300 * Decimal("3.75") + 40 * 15) / 10**6
    )


@pytest.mark.django_db
@responses.activate
def test_stream_through_the_stack_ends_with_the_usage_chunk_when_asked(api, anthropic_settings):
    raw = [message_start(), PING, *text_block(0, "Hel", "lo"), *message_end("end_turn", output_tokens=2)]
    responses.post(UPSTREAM, body=b"".join(raw), content_type="text/event-stream")
    response = api.post(
        "/v1/chat/completions",
        {"model": MODEL, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
    )

    data = [p[6:] for p in b"".join(response.streaming_content).split(b"\n\n") if p.startswith(b"data: ")]
    assert data[-1] == b"[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "Hello"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 27
    assert orjson.loads(responses.calls[0].request.body)["stream"] is True
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert (row.provider, row.prompt_tokens, row.completion_tokens) == ("anthropic", 25, 2)


@pytest.mark.django_db
@responses.activate
def test_overloaded_529_through_the_stack_is_a_503_envelope(api, anthropic_settings):
    responses.post(UPSTREAM, status=529, body=error_body("overloaded_error", "Overloaded"))
    response = api.post("/v1/chat/completions", {"model": MODEL, "messages": HELLO})
    assert response.status_code == 503
    assert orjson.loads(response.content)["error"]["code"] == "server_is_overloaded"


@pytest.mark.django_db
@responses.activate
def test_temperature_above_1_through_the_stack_never_reaches_anthropic(api, anthropic_settings):
    response = api.post("/v1/chat/completions", {"model": MODEL, "messages": HELLO, "temperature": 1.5})
    assert response.status_code == 400
    error = orjson.loads(response.content)["error"]
    assert error["param"] == "temperature" and "0 to 1" in error["message"]
    assert len(responses.calls) == 0
