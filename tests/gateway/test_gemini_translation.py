"""The Gemini adapter: OpenAI requests to generateContent, and Gemini's answers, streams and errors back.

Fixtures are in Gemini's real wire format (GenerateContentResponse, SSE fragments without [DONE], the
`{"error": {code, message, status, details}}` envelope). A few tests go through the Django stack with the
provider's HTTP mocked by `responses`.
"""

from __future__ import annotations

import copy

import orjson
import pytest
import responses
from django.conf import settings
from django.test import override_settings
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from analytics.models import RequestLog
from gateway.errors import InvalidRequest, UpstreamError
from gateway.providers.base import Target
from gateway.providers.gemini import GeminiProvider, new_tool_call_id, signature_of
from gateway.sse import SSEDecoder
from gateway.validation import validate_chat_request

BASE = "http://gemini.test"
MODEL = "gemini-2.5-flash"
TARGET = Target(MODEL)
HELLO = [{"role": "user", "content": "Say hello"}]
SIGNATURE = "CiQBVAhnzz+abc/def0123456789ABCDEFGHijklmno="  # standard base64, with + / and padding


@pytest.fixture
def gemini() -> GeminiProvider:
    return GeminiProvider(
        "gemini", api_key="k", base_url=BASE, connect_timeout=5, read_timeout=5, pool_size=4
    )


def chat(**body):
    body.setdefault("model", "gemini-flash")
    body.setdefault("messages", HELLO)
    return validate_chat_request(body)


def build(gemini, **body) -> dict:
    return gemini.build_request(chat(**body), TARGET).json


def response(parts, finish="STOP", usage=None, **extra) -> dict:
    """A GenerateContentResponse with one candidate."""
    data = {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0, **extra}
        ],
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "resp-abc123",
    }
    if usage is not None:
        data["usageMetadata"] = usage
    return data


USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17}


# --- request -------------------------------------------------------------------------------------------
def test_request_goes_to_generate_content_with_the_key_in_a_header_never_in_the_url(gemini):
    upstream = gemini.build_request(chat(), TARGET)
    assert upstream.url == f"{BASE}/v1beta/models/{MODEL}:generateContent"
    assert upstream.headers["x-goog-api-key"] == "k"
    assert upstream.params == {}
    assert "k" not in upstream.url.split("/v1beta/")[1].replace(MODEL, "").replace(":generateContent", "")
    assert upstream.json == {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}


def test_stream_request_goes_to_stream_generate_content_with_alt_sse(gemini):
    upstream = gemini.build_request(chat(stream=True), TARGET)
    assert upstream.url == f"{BASE}/v1beta/models/{MODEL}:streamGenerateContent"
    assert upstream.params == {"alt": "sse"}
    assert "key" not in upstream.params


def test_roles_map_and_system_and_developer_go_to_system_instruction(gemini):
    body = build(
        gemini,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Weather?"},
        ],
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "No emoji."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello."}]},
        {"role": "user", "parts": [{"text": "Weather?"}]},
    ]


def test_consecutive_messages_of_the_same_role_are_merged(gemini):
    body = build(
        gemini,
        messages=[
            {"role": "user", "content": "One"},
            {"role": "user", "content": [{"type": "text", "text": "Two"}, {"type": "text", "text": "Three"}]},
            {"role": "assistant", "content": "A"},
            {"role": "assistant", "content": "B"},
        ],
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "One"}, {"text": "Two"}, {"text": "Three"}]},
        {"role": "model", "parts": [{"text": "A"}, {"text": "B"}]},
    ]


def test_only_system_messages_is_a_400_naming_messages(gemini):
    with pytest.raises(InvalidRequest) as caught:
        build(gemini, messages=[{"role": "system", "content": "Be terse."}])
    assert caught.value.param == "messages"


def test_sampling_parameters_go_to_generation_config(gemini):
    body = build(
        gemini,
        temperature=0.7,
        top_p=0.9,
        max_tokens=100,
        max_completion_tokens=256,
        stop="END",
        n=2,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        seed=42,
    )
    assert body["generationConfig"] == {
        "temperature": 0.7,
        "topP": 0.9,
        "maxOutputTokens": 256,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "seed": 42,
    }


def test_max_tokens_and_a_stop_list_are_used_when_alone(gemini):
    config = build(gemini, max_tokens=64, stop=["a", "b"])["generationConfig"]
    assert config == {"maxOutputTokens": 64, "stopSequences": ["a", "b"]}


def test_a_seed_wider_than_int32_is_folded_into_int32_deterministically(gemini):
    seeds = [build(gemini, seed=2**63 + 5)["generationConfig"]["seed"] for _ in range(2)]
    assert seeds[0] == seeds[1] and -(2**31) <= seeds[0] < 2**31


def test_no_parameters_means_no_generation_config(gemini):
    assert "generationConfig" not in build(gemini)


def test_json_object_sets_the_json_mime_type(gemini):
    config = build(gemini, response_format={"type": "json_object"})["generationConfig"]
    assert config == {"responseMimeType": "application/json"}


def test_json_schema_sets_the_mime_type_and_the_schema(gemini):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    config = build(
        gemini, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_text_response_format_changes_nothing(gemini):
    assert "generationConfig" not in build(gemini, response_format={"type": "text"})


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tools_become_function_declarations(gemini):
    body = build(gemini, tools=[WEATHER])
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": WEATHER["function"]["parameters"],
                }
            ]
        }
    ]
    assert "toolConfig" not in body


def test_a_parameterless_tool_declares_no_parameters(gemini):
    tools = [
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "bare"}},
    ]
    declarations = build(gemini, tools=tools)["tools"][0]["functionDeclarations"]
    assert declarations == [{"name": "now"}, {"name": "ping"}, {"name": "bare"}]


def test_a_strict_json_schema_tool_goes_as_parameters_json_schema(gemini):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    }
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": schema, "strict": True}}
    declaration = build(gemini, tools=[tool])["tools"][0]["functionDeclarations"][0]
    assert declaration == {"name": "get_weather", "parametersJsonSchema": schema}


@pytest.mark.parametrize(
    "choice, config",
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice_becomes_the_function_calling_mode(gemini, choice, config):
    body = build(gemini, tools=[WEATHER], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_a_data_url_image_becomes_inline_data(gemini):
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]
    parts = build(gemini, messages=[{"role": "user", "content": content}])["contents"][0]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
    ]


@pytest.mark.parametrize(
    "url, mime",
    [
        ("https://example.com/cat.png", "image/png"),
        ("https://example.com/a/cat.JPG?size=large", "image/jpeg"),
        ("https://example.com/cat.webp", "image/webp"),
        ("https://example.com/image?id=3", "image/jpeg"),  # no extension: JPEG is assumed
    ],
)
def test_an_https_image_becomes_file_data_with_a_mime_type_from_the_extension(gemini, url, mime):
    content = [{"type": "image_url", "image_url": {"url": url}}]
    parts = build(gemini, messages=[{"role": "user", "content": content}])["contents"][0]["parts"]
    assert parts == [{"fileData": {"mimeType": mime, "fileUri": url}}]


@pytest.mark.parametrize("url", ["ftp://example.com/cat.png", "data:image/png,notbase64", "cat.png"])
def test_an_unusable_image_url_is_a_400_naming_the_param(gemini, url):
    content = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(InvalidRequest) as caught:
        build(gemini, messages=[{"role": "user", "content": content}])
    assert caught.value.param == "messages[0].content[1].image_url.url"


def round_trip_messages(call_id_1: str, call_id_2: str) -> list[dict]:
    return [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id_1,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": call_id_2,
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"city":"Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": call_id_1, "content": '{"temp": 18, "sky": "clear"}'},
        {"role": "tool", "tool_call_id": call_id_2, "content": "14:05"},
    ]


def test_a_tool_round_trip_looks_up_names_and_sends_back_the_thought_signature(gemini):
    signed, plain = new_tool_call_id(SIGNATURE), "call_from_elsewhere"
    body = build(gemini, messages=round_trip_messages(signed, plain), tools=[WEATHER])
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIGNATURE,
                },
                {"functionCall": {"name": "get_time", "args": {"city": "Paris"}}},
            ],
        },
        {  # both results in one user content
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 18, "sky": "clear"}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "14:05"}}},
            ],
        },
    ]


def test_assistant_text_next_to_tool_calls_is_kept_before_the_calls(gemini):
    messages = round_trip_messages("call_1", "call_2")
    messages[1]["content"] = "Let me check."
    parts = build(gemini, messages=messages)["contents"][1]["parts"]
    assert parts[0] == {"text": "Let me check."} and "functionCall" in parts[1]


def test_a_tool_result_with_an_unknown_id_is_a_400_naming_the_param(gemini):
    messages = round_trip_messages("call_1", "call_2")
    messages[3]["tool_call_id"] = "call_nowhere"
    with pytest.raises(InvalidRequest) as caught:
        build(gemini, messages=messages)
    assert caught.value.status == 400 and caught.value.param == "messages[3].tool_call_id"
    assert "call_nowhere" in caught.value.message


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]"])
def test_tool_call_arguments_that_are_not_a_json_object_are_a_400_naming_the_param(gemini, arguments):
    messages = round_trip_messages("call_1", "call_2")
    messages[1]["tool_calls"][1]["function"]["arguments"] = arguments
    with pytest.raises(InvalidRequest) as caught:
        build(gemini, messages=messages)
    assert caught.value.param == "messages[1].tool_calls[1].function.arguments"


def test_empty_tool_call_arguments_are_an_empty_object(gemini):
    messages = round_trip_messages("call_1", "call_2")
    messages[1]["tool_calls"][0]["function"]["arguments"] = ""
    parts = build(gemini, messages=messages)["contents"][1]["parts"]
    assert parts[0] == {"functionCall": {"name": "get_weather", "args": {}}}


def test_thought_signatures_survive_the_id_round_trip():
    call_id = new_tool_call_id(SIGNATURE)
    assert call_id.startswith("call_") and signature_of(call_id) == SIGNATURE
    assert all(c.isalnum() or c in "_-" for c in call_id)
    for signature in ("QUJD", "QUI=", "QQ==", "a+b/c-x"[:4], "////"):
        assert signature_of(new_tool_call_id(signature)) == signature
    assert signature_of(new_tool_call_id()) is None
    assert signature_of(new_tool_call_id("not base64!")) is None
    assert signature_of("call_abc") is None and signature_of("toolu_01__ts_abc") is None


# --- response ------------------------------------------------------------------------------------------
def test_a_text_answer_becomes_an_openai_completion(gemini):
    completion = gemini.parse_response(
        response([{"text": "Hello "}, {"text": "there."}], usage=USAGE), chat()
    )
    body = completion.body
    assert body["id"] == "chatcmpl-resp-abc123"
    assert body["object"] == "chat.completion" and isinstance(body["created"], int)
    assert body["model"] == "gemini-2.5-flash-001"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 5)


def test_stop_with_a_function_call_is_tool_calls_with_generated_ids(gemini):
    parts = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": [1, 2]}}}]
    body = gemini.parse_response(response(parts), chat()).body
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris","days":[1,2]}'}
    again = gemini.parse_response(response(parts), chat()).body["choices"][0]["message"]["tool_calls"][0]
    assert again["id"] != call["id"]


def test_a_function_call_with_a_thought_signature_gets_an_id_that_carries_it(gemini):
    parts = [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE}
    ]
    call = gemini.parse_response(response(parts), chat()).body["choices"][0]["message"]["tool_calls"][0]
    assert signature_of(call["id"]) == SIGNATURE


def test_thoughts_are_dropped_and_counted_as_reasoning(gemini):
    parts = [{"text": "Let me think about greetings...", "thought": True}, {"text": "Hello."}]
    usage = {**USAGE, "thoughtsTokenCount": 40, "cachedContentTokenCount": 8, "totalTokenCount": 57}
    completion = gemini.parse_response(response(parts, usage=usage), chat())
    assert completion.body["choices"][0]["message"]["content"] == "Hello."
    assert completion.body["usage"]["completion_tokens"] == 45
    assert completion.body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}
    assert completion.body["usage"]["prompt_tokens_details"] == {"cached_tokens": 8}
    assert completion.body["usage"]["total_tokens"] == 57
    u = completion.usage
    assert (u.prompt_tokens, u.cached_tokens, u.completion_tokens, u.reasoning_tokens) == (12, 8, 45, 40)


def test_usage_fields_gemini_leaves_out_count_as_zero(gemini):
    completion = gemini.parse_response(response([{"text": "Hi"}], usage={"promptTokenCount": 3}), chat())
    assert completion.body["usage"]["completion_tokens"] == 0
    assert completion.body["usage"]["total_tokens"] == 3
    assert completion.body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert completion.body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}
    empty = gemini.parse_response(response([{"text": "Hi"}], usage={}), chat())
    assert empty.usage.total_tokens == 0


def test_no_usage_metadata_leaves_usage_to_the_gateway(gemini):
    completion = gemini.parse_response(response([{"text": "Hi"}]), chat())
    assert completion.usage is None and "usage" not in completion.body


@pytest.mark.parametrize(
    "gemini_reason, openai_reason",
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("LANGUAGE", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
    ],
)
def test_finish_reasons_map_to_openai(gemini, gemini_reason, openai_reason):
    body = gemini.parse_response(response([{"text": "x"}], finish=gemini_reason), chat()).body
    assert body["choices"][0]["finish_reason"] == openai_reason


def test_a_blocked_prompt_is_one_empty_content_filter_choice(gemini):
    data = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }
    body = gemini.parse_response(data, chat()).body
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert body["usage"]["prompt_tokens"] == 7


def test_each_candidate_is_a_choice(gemini):
    data = response([{"text": "A"}])
    data["candidates"].append(
        {"content": {"role": "model", "parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1}
    )
    choices = gemini.parse_response(data, chat(n=2)).body["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]


def test_without_response_id_or_model_version_the_id_is_generated_and_the_model_is_the_requested(gemini):
    data = response([{"text": "Hi"}])
    del data["responseId"], data["modelVersion"]
    body = gemini.parse_response(data, chat()).body
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) > 12
    assert body["model"] == "gemini-flash"


# --- stream --------------------------------------------------------------------------------------------
def sse(*fragments: dict) -> bytes:
    return b"".join(b"data: " + orjson.dumps(f) + b"\r\n\r\n" for f in fragments)


def fragment(parts=None, finish=None, usage=None) -> dict:
    candidate: dict = {"index": 0}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish:
        candidate["finishReason"] = finish
    out: dict = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "s1"}
    if usage:
        out["usageMetadata"] = usage
    return out


def run_stream(gemini, raw: bytes, splits=(), request=None) -> list[dict]:
    decoder = SSEDecoder()
    events, start = [], 0
    for end in [*sorted(splits), len(raw)]:
        events.extend(decoder.feed(raw[start:end]))
        start = end
    events.extend(decoder.close())
    return list(gemini.translate_stream(iter(events), request or chat(stream=True)))


TEXT_STREAM = sse(
    fragment([{"text": "Hel"}], usage={"promptTokenCount": 4}),
    fragment([{"text": "lo"}], usage={"promptTokenCount": 4, "candidatesTokenCount": 1}),
    fragment(
        [{"text": " there."}],
        "STOP",
        {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7},
    ),
)


def test_a_text_stream_becomes_role_content_finish_and_usage_chunks(gemini):
    chunks = run_stream(gemini, TEXT_STREAM)
    assert {c["id"] for c in chunks} == {"chatcmpl-s1"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["created"] for c in chunks}) == 1 and {c["model"] for c in chunks} == {"gemini-2.5-flash"}
    deltas = [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks[:-1]]
    assert deltas == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hel"}, None),
        ({"content": "lo"}, None),
        ({"content": " there."}, None),
        ({}, "stop"),
    ]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 3,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def without_tool_ids(chunks: list[dict]) -> list[dict]:
    chunks = copy.deepcopy(chunks)
    for c in chunks:
        for choice in c["choices"]:
            for call in choice["delta"].get("tool_calls") or ():
                call["id"] = "call_x"
    return chunks


TOOL_STREAM = sse(
    fragment([{"text": "Thinking about it", "thought": True}]),
    fragment([{"text": "Checking."}]),
    fragment(
        [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": SIGNATURE,
            },
            {"functionCall": {"name": "get_time", "args": {"city": "Paris"}}},
        ],
        "STOP",
        {"promptTokenCount": 9, "candidatesTokenCount": 20, "thoughtsTokenCount": 6, "totalTokenCount": 35},
    ),
)


def test_function_calls_stream_as_one_whole_fragment_each_and_finish_with_tool_calls(gemini):
    chunks = run_stream(gemini, TOOL_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[:2] == [{"role": "assistant", "content": ""}, {"content": "Checking."}]
    calls = [d["tool_calls"][0] for d in deltas[2:4]]
    assert [(c["index"], c["type"], c["function"]) for c in calls] == [
        (0, "function", {"name": "get_weather", "arguments": '{"city":"Paris"}'}),
        (1, "function", {"name": "get_time", "arguments": '{"city":"Paris"}'}),
    ]
    assert signature_of(calls[0]["id"]) == SIGNATURE and calls[1]["id"].startswith("call_")
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 26
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 6}


@given(splits=st.lists(st.integers(min_value=1, max_value=len(TOOL_STREAM) - 1), max_size=12))
@hypothesis_settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fragments_split_at_arbitrary_points_give_the_same_chunks(gemini, splits):
    whole = without_tool_ids(run_stream(gemini, TOOL_STREAM))
    for c in whole:
        c["created"] = 0
    split = without_tool_ids(run_stream(gemini, TOOL_STREAM, splits))
    for c in split:
        c["created"] = 0
    assert split == whole


def test_the_usage_chunk_is_built_from_the_last_usage_metadata_and_sent_even_unasked(gemini):
    chunks = run_stream(gemini, TEXT_STREAM, request=chat(stream=True))  # no include_usage
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 7


def test_a_stream_without_usage_metadata_ends_without_a_usage_chunk(gemini):
    chunks = run_stream(gemini, sse(fragment([{"text": "Hi"}], "STOP")))
    assert all(c["choices"] for c in chunks) and "usage" not in chunks[-1]


def test_a_max_tokens_stream_finishes_with_length(gemini):
    chunks = run_stream(gemini, sse(fragment([{"text": "Hi"}], "MAX_TOKENS", USAGE)))
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_a_blocked_prompt_stream_finishes_with_content_filter(gemini):
    blocked = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 3},
    }
    chunks = run_stream(gemini, sse(blocked))
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, "content_filter"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 3


def test_an_error_fragment_raises_an_upstream_error(gemini):
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(UpstreamError) as caught:
        run_stream(gemini, sse(fragment([{"text": "Hi"}]), error))
    assert caught.value.status == 503 and caught.value.message == "The model is overloaded."


@pytest.mark.parametrize("raw", [b"data: {broken\n\n", b""])
def test_a_malformed_or_empty_stream_raises_an_upstream_error(gemini, raw):
    with pytest.raises(UpstreamError) as caught:
        run_stream(gemini, raw)
    assert caught.value.code == "upstream_malformed"


# --- errors --------------------------------------------------------------------------------------------
def error_body(status: int, code: str, message: str = "Something failed.", details=None) -> bytes:
    error = {"code": status, "message": message, "status": code}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})


BAD_KEY = error_body(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
    ],
)


def test_a_bad_key_400_api_key_invalid_becomes_401_invalid_api_key_naming_the_setting(gemini):
    secret = GeminiProvider(
        "gemini", api_key="AIzaSy-secret", base_url=BASE, connect_timeout=5, read_timeout=5, pool_size=4
    )
    error = secret.scrub(secret.map_error(400, BAD_KEY, {}))
    assert (error.status, error.code, error.type) == (401, "invalid_api_key", "invalid_request_error")
    assert "GEMINI_API_KEY" in error.message and "AIzaSy-secret" not in error.message


def test_api_key_not_valid_in_the_message_alone_is_also_401(gemini):
    error = gemini.map_error(400, error_body(400, "INVALID_ARGUMENT", "API key not valid."), {})
    assert (error.status, error.code) == (401, "invalid_api_key")


@pytest.mark.parametrize(
    "status, code, expected_status, expected_code",
    [
        (400, "INVALID_ARGUMENT", 400, None),
        (403, "PERMISSION_DENIED", 403, "permission_denied"),
        (404, "NOT_FOUND", 404, "model_not_found"),
        (500, "INTERNAL", 500, "upstream_error"),
        (503, "UNAVAILABLE", 503, "upstream_error"),
        (504, "DEADLINE_EXCEEDED", 504, "upstream_error"),
    ],
)
def test_error_statuses_map_to_openai(gemini, status, code, expected_status, expected_code):
    error = gemini.map_error(status, error_body(status, code, "Upstream says no."), {})
    assert (error.status, error.code) == (expected_status, expected_code)
    assert error.message == "Upstream says no."
    assert error.type == ("server_error" if status >= 500 else "invalid_request_error")


def test_a_429_takes_retry_after_from_retry_info(gemini):
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
    ]
    body = error_body(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", details)
    error = gemini.map_error(429, body, {"retry-after": "5"})
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert error.headers["retry-after"] == "37"


def test_a_429_without_retry_info_passes_the_retry_after_header(gemini):
    error = gemini.map_error(429, error_body(429, "RESOURCE_EXHAUSTED"), {"retry-after": "5"})
    assert error.headers == {"retry-after": "5"}


def test_a_fractional_retry_delay_rounds_up(gemini):
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.25s"}]
    assert gemini.map_error(429, error_body(429, "RESOURCE_EXHAUSTED", details=details), {}).headers == {
        "retry-after": "2"
    }


def test_a_body_that_is_not_json_still_maps_by_status(gemini):
    error = gemini.map_error(502, b"<html>Bad Gateway</html>", {})
    assert error.status == 502 and "HTTP 502" in error.message


# --- property: any valid OpenAI request translates or is a 400 -----------------------------------------
_text = st.text(max_size=20)
_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,10}", fullmatch=True)
_url = st.sampled_from(
    [
        "https://example.com/a.png",
        "https://example.com/noext",
        "data:image/jpeg;base64,/9j/4AAQ",
        "data:image/png,raw",
        "ftp://x/y.png",
        "",
    ]
)
_user_part = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, _text),
    st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, _url),
    st.builds(
        lambda f: {"type": "input_audio", "input_audio": {"data": "UklGR", "format": f}},
        st.sampled_from(["wav", "mp3", "flac"]),
    ),
    st.sampled_from(
        [
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
            {"type": "file", "file": {"file_id": "file-abc"}},
        ]
    ),
)
_text_content = st.one_of(
    _text, st.lists(st.builds(lambda t: {"type": "text", "text": t}, _text), min_size=1)
)
_call_id = st.sampled_from(["call_1", "call_2", new_tool_call_id(SIGNATURE), "unknown"])
_arguments = st.sampled_from(['{"city": "Paris"}', "{}", "", "{bad", "[1]", '{"a": {"b": [1, null]}}'])
_tool_call = st.builds(
    lambda i, n, a: {"id": i, "type": "function", "function": {"name": n, "arguments": a}},
    _call_id,
    _name,
    _arguments,
)
_message = st.one_of(
    st.builds(lambda c: {"role": "system", "content": c}, _text_content),
    st.builds(lambda c: {"role": "developer", "content": c}, _text_content),
    st.builds(lambda c: {"role": "user", "content": c}, st.one_of(_text, st.lists(_user_part, min_size=1))),
    st.builds(lambda c: {"role": "assistant", "content": c}, _text_content),
    st.builds(
        lambda c, calls: {"role": "assistant", "content": c, "tool_calls": calls},
        st.one_of(st.none(), _text),
        st.lists(_tool_call, min_size=1, max_size=3),
    ),
    st.builds(lambda i, c: {"role": "tool", "tool_call_id": i, "content": c}, _call_id, _text_content),
    st.builds(lambda n, c: {"role": "function", "name": n, "content": c}, _name, _text),
)
_schema = st.sampled_from(
    [
        None,
        {"type": "object"},
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        {"type": "object", "properties": {"x": {"type": ["string", "null"]}}, "additionalProperties": False},
        {"type": "object", "additionalProperties": {"type": "string"}},
    ]
)
_tool = st.builds(
    lambda n, d, s: {
        "type": "function",
        "function": {
            "name": n,
            **({"description": d} if d is not None else {}),
            **({"parameters": s} if s else {}),
        },
    },
    _name,
    st.one_of(st.none(), _text),
    _schema,
)
_optional = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "max_tokens": st.integers(1, 100_000),
    "max_completion_tokens": st.integers(1, 100_000),
    "n": st.integers(1, 128),
    "stop": st.one_of(_text, st.lists(_text, min_size=1, max_size=4)),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "seed": st.integers(-(2**63), 2**64 - 1),
    "stream": st.booleans(),
    "parallel_tool_calls": st.booleans(),
    "user": _text,
    "response_format": st.one_of(
        st.just({"type": "text"}),
        st.just({"type": "json_object"}),
        st.builds(
            lambda s: {"type": "json_schema", "json_schema": {"name": "out", **({"schema": s} if s else {})}},
            _schema,
        ),
    ),
}


@st.composite
def openai_requests(draw) -> dict:
    body = {"model": "gemini-flash", "messages": draw(st.lists(_message, min_size=1, max_size=6))}
    for name, strategy in _optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    if draw(st.booleans()):
        body["tools"] = draw(st.lists(_tool, min_size=1, max_size=3))
        body["tool_choice"] = draw(
            st.sampled_from(["auto", "none", "required", None])
            | st.builds(lambda n: {"type": "function", "function": {"name": n}}, _name)
            | st.builds(
                lambda mode, n: {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": mode, "tools": [{"type": "function", "function": {"name": n}}]},
                },
                st.sampled_from(["auto", "required"]),
                _name,
            )
        )
    return body


@given(body=openai_requests())
@hypothesis_settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_valid_openai_request_translates_or_is_a_400(gemini, body):
    try:
        request = validate_chat_request(body)
    except InvalidRequest:
        assume(False)
    try:
        upstream = gemini.build_request(request, TARGET)
    except InvalidRequest as exc:
        assert exc.status == 400
        return
    payload = orjson.loads(orjson.dumps(upstream.json))
    contents = payload["contents"]
    assert contents and all(c["role"] in ("user", "model") and c["parts"] for c in contents)
    assert all(a["role"] != b["role"] for a, b in zip(contents, contents[1:], strict=False))
    assert "key" not in upstream.params and upstream.headers["x-goog-api-key"] == "k"


# --- through the Django stack ----------------------------------------------------------------------------
GEMINI_URL = f"{BASE}/v1beta/models/gemini-3.8-flash"  # the catalogue's upstream model for gemini-flash


@pytest.fixture
def gemini_settings():
    providers = copy.deepcopy(settings.PROVIDERS)
    providers["gemini"].update(api_key="sk-gemini-test-key", base_url=BASE)
    with override_settings(PROVIDERS=providers):
        yield


@pytest.mark.django_db
@responses.activate
def test_a_gemini_model_through_the_gateway_answers_openai_and_logs_gemini_tokens(api, gemini_settings):
    usage = {
        "promptTokenCount": 20,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 7,
        "cachedContentTokenCount": 4,
    }
    responses.post(f"{GEMINI_URL}:generateContent", json=response([{"text": "Bonjour."}], usage=usage))
    reply = api.post("/v1/chat/completions", {"model": "gemini-flash", "messages": HELLO, "temperature": 0.2})

    assert reply.status_code == 200, reply.content
    body = orjson.loads(reply.content)
    assert body["choices"][0]["message"]["content"] == "Bonjour."
    assert body["usage"]["total_tokens"] == 32
    sent = responses.calls[0].request
    assert sent.headers["x-goog-api-key"] == "sk-gemini-test-key" and "key=" not in sent.url
    assert orjson.loads(sent.body)["generationConfig"] == {"temperature": 0.2}

    row = RequestLog.objects.get(request_id=reply["x-request-id"])
    assert row.provider == "gemini" and not row.usage_estimated
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens, row.reasoning_tokens) == (
        20,
        4,
        12,
        7,
    )
    assert row.finish_reason == "stop" and row.served_model == "gemini-2.5-flash-001"


@pytest.mark.django_db
@responses.activate
def test_a_gemini_stream_through_the_gateway_ends_with_usage_and_done(api, gemini_settings):
    responses.post(f"{GEMINI_URL}:streamGenerateContent", body=TEXT_STREAM, content_type="text/event-stream")
    reply = api.post(
        "/v1/chat/completions",
        {
            "model": "gemini-flash",
            "messages": HELLO,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    raw = b"".join(reply.streaming_content)
    events = [line[6:] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "Hello there."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 7
    assert all(c["usage"] is None for c in chunks[:-1])
    assert "alt=sse" in responses.calls[0].request.url

    row = RequestLog.objects.get(request_id=reply["x-request-id"])
    assert (row.provider, row.prompt_tokens, row.completion_tokens, row.stream) == ("gemini", 4, 3, True)


@pytest.mark.django_db
@responses.activate
def test_a_rejected_gemini_key_reaches_the_client_as_401_without_the_key(api, gemini_settings):
    responses.post(f"{GEMINI_URL}:generateContent", body=BAD_KEY, status=400, content_type="application/json")
    reply = api.post("/v1/chat/completions", {"model": "gemini-flash", "messages": HELLO})
    assert reply.status_code == 401
    error = orjson.loads(reply.content)["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "GEMINI_API_KEY" in error["message"] and "sk-gemini-test-key" not in reply.content.decode()
