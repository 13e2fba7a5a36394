"""Request validation on POST /v1/chat/completions: every documented field, wrong by type and by range.

A rejected request never reaches the provider (`responses` is active with no registered URL, so any upstream
call would show up in `responses.calls`), answers 400 in OpenAI's envelope naming the offending `param`,
and leaves exactly one log row with that status and error code.
"""

from __future__ import annotations

import orjson
import pytest
import responses
from django.test import override_settings

from analytics.models import RequestLog
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db

URL = "/v1/chat/completions"
USER = {"role": "user", "content": "Say hello"}
DROP = object()  # an override value that removes the field from the base body


def body_with(**overrides) -> dict:
    body = {"model": "gpt-4o", "messages": [USER]}
    for name, value in overrides.items():
        if value is DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def assert_envelope(response, status: int, *, param=..., code=...) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = orjson.loads(response.content)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    if param is not ...:
        assert error["param"] == param
    if code is not ...:
        assert error["code"] == code
    return error


def assert_one_log_row(response, status: int, error: dict) -> None:
    rows = list(RequestLog.objects.all())
    assert len(rows) == 1
    row = rows[0]
    assert row.request_id == response["x-request-id"]
    assert row.status_code == status
    assert row.error_type == "invalid_request_error"
    assert row.error_code == (error["code"] or "")


# --- fields wrong by type or by range -------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

INVALID_FIELDS = [
    # model
    pytest.param({"model": DROP}, "model", id="model-missing"),
    pytest.param({"model": 123}, "model", id="model-not-a-string"),
    pytest.param({"model": ["gpt-4o"]}, "model", id="model-array"),
    pytest.param({"model": ""}, "model", id="model-empty"),
    pytest.param({"model": "   "}, "model", id="model-blank"),
    # messages
    pytest.param({"messages": DROP}, "messages", id="messages-missing"),
    pytest.param({"messages": "hello"}, "messages", id="messages-string"),
    pytest.param({"messages": {"role": "user", "content": "hi"}}, "messages", id="messages-object"),
    pytest.param({"messages": []}, "messages", id="messages-empty"),
    pytest.param({"messages": ["hello"]}, "messages[0]", id="message-not-an-object"),
    pytest.param({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", id="bad-role"),
    pytest.param({"messages": [{"content": "hi"}]}, "messages[0].role", id="role-missing"),
    pytest.param({"messages": [{"role": "user"}]}, "messages[0].content", id="user-without-content"),
    pytest.param(
        {"messages": [{"role": "user", "content": None}]}, "messages[0].content", id="user-null-content"
    ),
    pytest.param({"messages": [{"role": "user", "content": 42}]}, "messages[0].content", id="content-number"),
    pytest.param(
        {"messages": [{"role": "user", "content": []}]}, "messages[0].content", id="content-empty-parts"
    ),
    pytest.param(
        {"messages": [USER, {"role": "tool", "content": "22C"}]},
        "messages[1].tool_call_id",
        id="tool-without-tool_call_id",
    ),
    pytest.param(
        {"messages": [USER, {"role": "assistant", "content": None}]},
        "messages[1].content",
        id="assistant-null-content-without-tool_calls",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]},
        "messages[0].content[0].type",
        id="user-part-bad-type",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": ["hello"]}]},
        "messages[0].content[0]",
        id="user-part-not-an-object",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages[0].content[0].text",
        id="text-part-without-text",
    ),
    pytest.param(
        {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "messages[0].content[0].type",
        id="system-image-part",
    ),
    pytest.param(
        {"messages": [USER, {"role": "assistant", "content": [{"type": "image_url"}]}]},
        "messages[1].content[0].type",
        id="assistant-image-part",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        "messages[0].content[0].image_url.url",
        id="image_url-without-url",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}]},
        "messages[0].content[0].image_url",
        id="image_url-not-an-object",
    ),
    pytest.param(
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
            ]
        },
        "messages[1].tool_calls[0].function",
        id="tool_call-without-function",
    ),
    pytest.param(
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {}}}
                    ],
                },
            ]
        },
        "messages[1].tool_calls[0].function.arguments",
        id="tool_call-arguments-not-a-string",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": "hi", "name": 7}]},
        "messages[0].name",
        id="name-not-a-string",
    ),
    # sampling
    pytest.param({"temperature": 3}, "temperature", id="temperature-3"),
    pytest.param({"temperature": -0.1}, "temperature", id="temperature-negative"),
    pytest.param({"temperature": "1"}, "temperature", id="temperature-string"),
    pytest.param({"temperature": True}, "temperature", id="temperature-bool"),
    pytest.param({"top_p": 1.5}, "top_p", id="top_p-1.5"),
    pytest.param({"top_p": -0.01}, "top_p", id="top_p-negative"),
    pytest.param({"presence_penalty": 2.5}, "presence_penalty", id="presence_penalty-2.5"),
    pytest.param({"frequency_penalty": -3}, "frequency_penalty", id="frequency_penalty--3"),
    pytest.param({"frequency_penalty": "0"}, "frequency_penalty", id="frequency_penalty-string"),
    # lengths and counts
    pytest.param({"max_tokens": 0}, "max_tokens", id="max_tokens-0"),
    pytest.param({"max_tokens": 1.5}, "max_tokens", id="max_tokens-float"),
    pytest.param({"max_tokens": True}, "max_tokens", id="max_tokens-bool"),
    pytest.param({"max_tokens": "100"}, "max_tokens", id="max_tokens-string"),
    pytest.param({"max_completion_tokens": -1}, "max_completion_tokens", id="max_completion_tokens--1"),
    pytest.param({"n": 0}, "n", id="n-0"),
    pytest.param({"n": 129}, "n", id="n-129"),
    pytest.param({"seed": 1.5}, "seed", id="seed-float"),
    # stop
    pytest.param({"stop": ["a", "b", "c", "d", "e"]}, "stop", id="stop-5-strings"),
    pytest.param({"stop": [1]}, "stop", id="stop-non-string-item"),
    pytest.param({"stop": 42}, "stop", id="stop-number"),
    pytest.param({"stop": []}, "stop", id="stop-empty-array"),
    # streaming
    pytest.param({"stream": "yes"}, "stream", id="stream-string"),
    pytest.param({"stream": 1}, "stream", id="stream-int"),
    pytest.param(
        {"stream_options": {"include_usage": True}}, "stream_options", id="stream_options-no-stream"
    ),
    pytest.param(
        {"stream": False, "stream_options": {"include_usage": True}},
        "stream_options",
        id="stream_options-stream-false",
    ),
    pytest.param({"stream": True, "stream_options": "yes"}, "stream_options", id="stream_options-string"),
    # logprobs
    pytest.param({"top_logprobs": 5}, "top_logprobs", id="top_logprobs-without-logprobs"),
    pytest.param({"logprobs": False, "top_logprobs": 5}, "top_logprobs", id="top_logprobs-logprobs-false"),
    pytest.param({"logprobs": True, "top_logprobs": 21}, "top_logprobs", id="top_logprobs-21"),
    pytest.param({"logprobs": "true"}, "logprobs", id="logprobs-string"),
    # tools
    pytest.param({"tools": TOOL}, "tools", id="tools-not-an-array"),
    pytest.param(
        {"tools": [{"type": "function", "function": {"parameters": {}}}]},
        "tools[0].function.name",
        id="tool-missing-function-name",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "get weather!"}}]},
        "tools[0].function.name",
        id="tool-name-bad-chars",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "f" * 65}}]},
        "tools[0].function.name",
        id="tool-name-too-long",
    ),
    pytest.param({"tools": [{"type": "function"}]}, "tools[0].function", id="tool-without-function"),
    pytest.param(
        {"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type", id="tool-bad-type"
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        "tools[0].function.parameters",
        id="tool-parameters-not-an-object",
    ),
    pytest.param({"tool_choice": "auto"}, "tool_choice", id="tool_choice-without-tools"),
    pytest.param({"tool_choice": "required", "tools": []}, "tool_choice", id="tool_choice-empty-tools"),
    pytest.param({"tool_choice": "always", "tools": [TOOL]}, "tool_choice", id="tool_choice-bad-string"),
    pytest.param(
        {"tool_choice": {"type": "function"}, "tools": [TOOL]},
        "tool_choice.function",
        id="tool_choice-function-without-function",
    ),
    pytest.param(
        {"tool_choice": {"type": "tool"}, "tools": [TOOL]}, "tool_choice.type", id="tool_choice-bad-type"
    ),
    pytest.param({"parallel_tool_calls": "no"}, "parallel_tool_calls", id="parallel_tool_calls-string"),
    # response_format
    pytest.param({"response_format": {"type": "xml"}}, "response_format.type", id="response_format-bad-type"),
    pytest.param({"response_format": "json_object"}, "response_format", id="response_format-string"),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}},
        "response_format.json_schema.name",
        id="json_schema-without-name",
    ),
    pytest.param(
        {"response_format": {"type": "json_schema"}},
        "response_format.json_schema",
        id="json_schema-missing",
    ),
    # logit_bias
    pytest.param({"logit_bias": {"50256": 101}}, "logit_bias", id="logit_bias-over-100"),
    pytest.param({"logit_bias": {"50256": -100.5}}, "logit_bias", id="logit_bias-under-minus-100"),
    pytest.param({"logit_bias": {"hello": 1}}, "logit_bias", id="logit_bias-non-token-key"),
    pytest.param({"logit_bias": {"50256": "1"}}, "logit_bias", id="logit_bias-string-value"),
    pytest.param({"logit_bias": [1, 2]}, "logit_bias", id="logit_bias-array"),
    # plain string fields and metadata
    pytest.param({"user": 12}, "user", id="user-not-a-string"),
    pytest.param({"reasoning_effort": 1}, "reasoning_effort", id="reasoning_effort-not-a-string"),
    pytest.param({"metadata": "x"}, "metadata", id="metadata-not-an-object"),
]


@pytest.mark.parametrize(("overrides", "param"), INVALID_FIELDS)
@responses.activate
def test_invalid_field_gets_400_envelope_naming_the_param_and_never_reaches_upstream(api, overrides, param):
    response = api.post(URL, body_with(**overrides))

    error = assert_envelope(response, 400, param=param)
    assert len(responses.calls) == 0
    assert_one_log_row(response, 400, error)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"model": DROP}, "missing_required_parameter"),
        ({"messages": DROP}, "missing_required_parameter"),
        ({"model": 5}, "invalid_type"),
        ({"temperature": "1"}, "invalid_type"),
        ({"temperature": 3}, "invalid_value"),
        ({"max_tokens": 1.5}, "invalid_type"),
        ({"max_tokens": 0}, "invalid_value"),
        ({"stream": "yes"}, "invalid_type"),
    ],
)
@responses.activate
def test_type_and_range_errors_carry_a_distinguishing_code(api, overrides, code):
    response = api.post(URL, body_with(**overrides))
    error = assert_envelope(response, 400, code=code)
    assert_one_log_row(response, 400, error)


@responses.activate
def test_stream_options_include_usage_of_wrong_type_names_the_nested_param(api):
    response = api.post(URL, body_with(stream=True, stream_options={"include_usage": "yes"}))
    error = assert_envelope(response, 400)
    assert len(responses.calls) == 0
    assert error["param"] == "stream_options.include_usage"


@responses.activate
def test_the_invalid_request_is_logged_with_its_requested_model(api):
    response = api.post(URL, body_with(temperature=9))
    assert response.status_code == 400
    # Validation fails before the model is known to the call: the row still exists, tied to the key.
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert row.status_code == 400 and row.api_key_id is not None


# --- valid edge values are accepted and forwarded -------------------------------------------------------

ASSISTANT_TOOL_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"c":"P"}'}}
    ],
}

VALID_EDGES = [
    pytest.param({"temperature": 0}, id="temperature-0"),
    pytest.param({"temperature": 2}, id="temperature-2"),
    pytest.param({"temperature": 1.5}, id="temperature-float"),
    pytest.param({"top_p": 0}, id="top_p-0"),
    pytest.param({"top_p": 1}, id="top_p-1"),
    pytest.param({"presence_penalty": -2, "frequency_penalty": 2}, id="penalties-at-bounds"),
    pytest.param({"stop": "\n"}, id="stop-string"),
    pytest.param({"stop": ["a", "b", "c", "d"]}, id="stop-4-strings"),
    pytest.param({"n": 2}, id="n-2"),
    pytest.param({"max_tokens": 1}, id="max_tokens-1"),
    pytest.param({"max_completion_tokens": 4096}, id="max_completion_tokens"),
    pytest.param({"logprobs": True, "top_logprobs": 0}, id="top_logprobs-0"),
    pytest.param({"logprobs": True, "top_logprobs": 20}, id="top_logprobs-20"),
    pytest.param({"logit_bias": {"50256": -100, "42": 100}}, id="logit_bias-at-bounds"),
    pytest.param({"tools": [TOOL], "tool_choice": "auto"}, id="tools-with-tool_choice"),
    pytest.param(
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        id="tool_choice-object",
    ),
    pytest.param({"tool_choice": "none"}, id="tool_choice-none-without-tools"),
    pytest.param({"response_format": {"type": "json_object"}}, id="response_format-json_object"),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
        id="response_format-json_schema",
    ),
    pytest.param(
        {
            "messages": [
                USER,
                ASSISTANT_TOOL_CALL,
                {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
            ]
        },
        id="assistant-null-content-with-tool_calls",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                },
            ]
        },
        id="content-parts",
    ),
    pytest.param({"unknown_vendor_field": {"x": 1}, "metadata": {"k": "v"}}, id="extra-fields-pass"),
]


@pytest.mark.parametrize("overrides", VALID_EDGES)
@responses.activate
def test_valid_edge_values_are_accepted_and_forwarded(api, overrides):
    responses.post(UPSTREAM, json=completion())
    body = body_with(**overrides)
    response = api.post(URL, body)

    assert response.status_code == 200, response.content
    assert len(responses.calls) == 1
    sent = orjson.loads(responses.calls[0].request.body)
    for name, value in overrides.items():
        assert sent[name] == value
    assert RequestLog.objects.get(request_id=response["x-request-id"]).status_code == 200


# --- the body itself ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"model": "gpt-4o", "messages": [', id="truncated"),
        pytest.param(b"{'model': 'gpt-4o'}", id="single-quotes"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"model": "gpt-4o",}', id="trailing-comma"),
        pytest.param(b'{"temperature": NaN}', id="nan"),
    ],
)
@responses.activate
def test_malformed_json_gets_400_invalid_json(api, raw):
    response = api.post(URL, raw=raw)
    error = assert_envelope(response, 400, code="invalid_json", param=None)
    assert len(responses.calls) == 0
    assert_one_log_row(response, 400, error)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'[{"model": "gpt-4o"}]', id="array"),
        pytest.param(b'"gpt-4o"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b"true", id="bool"),
    ],
)
@responses.activate
def test_body_that_is_not_a_json_object_gets_400(api, raw):
    response = api.post(URL, raw=raw)
    error = assert_envelope(response, 400)
    assert "object" in error["message"]
    assert len(responses.calls) == 0
    assert_one_log_row(response, 400, error)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xff\xfe"}]}', id="ff-fe"
        ),
        pytest.param(b'{"model": "gpt-\xc3"}', id="truncated-sequence"),
        pytest.param(b'{"model": "\xed\xa0\x80"}', id="encoded-surrogate"),
    ],
)
@responses.activate
def test_invalid_utf8_gets_400(api, raw):
    response = api.post(URL, raw=raw)
    error = assert_envelope(response, 400, code="invalid_json")
    assert len(responses.calls) == 0
    assert_one_log_row(response, 400, error)


@override_settings(MAX_REQUEST_BODY_BYTES=1000)
@responses.activate
def test_body_over_the_limit_gets_413_in_the_envelope(api):
    body = body_with(messages=[{"role": "user", "content": "x" * 2000}])
    response = api.post(URL, body)

    error = assert_envelope(response, 413, code="request_too_large")
    assert "1000" in error["message"]
    assert len(responses.calls) == 0
    assert_one_log_row(response, 413, error)


@override_settings(MAX_REQUEST_BODY_BYTES=1000)
@responses.activate
def test_body_just_under_the_limit_is_accepted(api):
    responses.post(UPSTREAM, json=completion())
    body = body_with()
    body["messages"] = [{"role": "user", "content": ""}]
    padding = 1000 - len(orjson.dumps(body))
    body["messages"][0]["content"] = "x" * padding
    raw = orjson.dumps(body)
    assert len(raw) == 1000

    response = api.post(URL, raw=raw)
    assert response.status_code == 200, response.content
