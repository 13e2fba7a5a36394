"""Validation of a chat completion request, field by field, with OpenAI's messages and `param` names.

Documented fields are checked by type and range; anything else passes through untouched to providers that
speak OpenAI's format. A failure raises `InvalidRequest` naming the offending parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TEXT_ONLY_ROLES = frozenset({"system", "developer", "tool"})
_USER_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file"})
_ASSISTANT_PART_TYPES = frozenset({"text", "refusal"})
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOOL_CHOICE_STRINGS = frozenset({"none", "auto", "required"})
_RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})


@dataclass(slots=True)
class ChatRequest:
    """A validated request: the body as the client sent it, plus what the gateway reads often."""

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool


def _fail(message: str, param: str, code: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(body: dict, name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value):
        raise _fail(f"Invalid type for '{name}': expected a number.", name, "invalid_type")
    if not low <= value <= high:
        raise _fail(
            f"Invalid '{name}': {value} is out of range; expected a value from {low:g} to {high:g}.",
            name,
            "invalid_value",
        )


def _integer(body: dict, name: str, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_int(value):
        raise _fail(f"Invalid type for '{name}': expected an integer.", name, "invalid_type")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"from {low} to {high}"
        raise _fail(f"Invalid '{name}': {value}; expected an integer {bound}.", name, "invalid_value")


def _boolean(body: dict, name: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise _fail(f"Invalid type for '{name}': expected a boolean.", name, "invalid_type")


def _string(body: dict, name: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _fail(f"Invalid type for '{name}': expected a string.", name, "invalid_type")


def _object(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
    return value


def _parts(content: list, param: str, allowed: frozenset[str]) -> None:
    if not content:
        raise _fail(f"Invalid '{param}': an array of content parts must not be empty.", param)
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        part = _object(part, where)
        kind = part.get("type")
        if kind not in allowed:
            raise _fail(
                f"Invalid value for '{where}.type': expected one of {', '.join(sorted(allowed))}.",
                f"{where}.type",
                "invalid_value",
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise _fail(f"Missing or invalid '{where}.text': expected a string.", f"{where}.text")
        if kind == "image_url":
            image = _object(part.get("image_url"), f"{where}.image_url")
            if not isinstance(image.get("url"), str):
                raise _fail(f"Missing '{where}.image_url.url'.", f"{where}.image_url.url")


def _content(message: dict, role: str, param: str) -> None:
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise _fail(f"Missing required parameter: '{param}.content'.", f"{param}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(
            f"Invalid type for '{param}.content': expected a string or an array of content parts.",
            f"{param}.content",
            "invalid_type",
        )
    if role == "user":
        allowed = _USER_PART_TYPES
    elif role == "assistant":
        allowed = _ASSISTANT_PART_TYPES
    else:
        allowed = frozenset({"text"})
    _parts(content, f"{param}.content", allowed)


def _tool_calls(calls: Any, param: str) -> None:
    if not isinstance(calls, list):
        raise _fail(f"Invalid type for '{param}': expected an array.", param, "invalid_type")
    for i, call in enumerate(calls):
        where = f"{param}[{i}]"
        call = _object(call, where)
        if not isinstance(call.get("id"), str):
            raise _fail(f"Missing required parameter: '{where}.id'.", f"{where}.id")
        function = _object(call.get("function"), f"{where}.function")
        if not isinstance(function.get("name"), str):
            raise _fail(f"Missing required parameter: '{where}.function.name'.", f"{where}.function.name")
        if not isinstance(function.get("arguments"), str):
            raise _fail(
                f"Invalid type for '{where}.function.arguments': expected a JSON string.",
                f"{where}.function.arguments",
                "invalid_type",
            )


def _messages(messages: Any) -> None:
    if messages is None:
        raise _fail("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _fail("Invalid type for 'messages': expected an array.", "messages", "invalid_type")
    if not messages:
        raise _fail("Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages")
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        message = _object(message, param)
        role = message.get("role")
        if role not in ROLES:
            raise _fail(
                f"Invalid value for '{param}.role': expected system, developer, user, assistant or tool.",
                f"{param}.role",
                "invalid_value",
            )
        _content(message, role, param)
        if role in _TEXT_ONLY_ROLES and isinstance(message.get("content"), list):
            _parts(message["content"], f"{param}.content", frozenset({"text"}))
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _fail(f"Missing required parameter: '{param}.tool_call_id'.", f"{param}.tool_call_id")
        if role == "function" and not isinstance(message.get("name"), str):
            raise _fail(f"Missing required parameter: '{param}.name'.", f"{param}.name")
        if "name" in message and not isinstance(message["name"], str):
            raise _fail(f"Invalid type for '{param}.name': expected a string.", f"{param}.name")
        if role == "assistant" and message.get("tool_calls") is not None:
            _tool_calls(message["tool_calls"], f"{param}.tool_calls")


def _stop(value: Any) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or not 1 <= len(value) <= 4 or not all(isinstance(s, str) for s in value):
        raise _fail("Invalid 'stop': expected a string or an array of 1 to 4 strings.", "stop")


def _tools(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _fail("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        tool = _object(tool, where)
        if tool.get("type") != "function":
            if tool.get("type") == "custom":
                continue
            raise _fail(f"Invalid value for '{where}.type': expected 'function'.", f"{where}.type")
        function = _object(tool.get("function"), f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            raise _fail(
                f"Invalid '{where}.function.name': expected 1-64 characters from a-z, A-Z, 0-9, _ and -.",
                f"{where}.function.name",
            )
        if function.get("parameters") is not None:
            _object(function["parameters"], f"{where}.function.parameters")
        if function.get("description") is not None and not isinstance(function["description"], str):
            raise _fail(f"Invalid type for '{where}.function.description'.", f"{where}.function.description")


def _tool_choice(body: dict) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICE_STRINGS:
            raise _fail("Invalid 'tool_choice': expected none, auto, required or an object.", "tool_choice")
    else:
        choice = _object(choice, "tool_choice")
        kind = choice.get("type")
        if kind == "function":
            function = _object(choice.get("function"), "tool_choice.function")
            if not isinstance(function.get("name"), str):
                raise _fail(
                    "Missing required parameter: 'tool_choice.function.name'.", "tool_choice.function.name"
                )
        elif kind not in ("allowed_tools", "custom"):
            raise _fail("Invalid value for 'tool_choice.type'.", "tool_choice.type")
    if choice != "none" and not body.get("tools"):
        raise _fail("'tool_choice' is only allowed when 'tools' are specified.", "tool_choice")


def _response_format(value: Any) -> None:
    if value is None:
        return
    value = _object(value, "response_format")
    kind = value.get("type")
    if kind not in _RESPONSE_FORMATS:
        raise _fail(
            "Invalid value for 'response_format.type': expected text, json_object or json_schema.",
            "response_format.type",
        )
    if kind == "json_schema":
        schema = _object(value.get("json_schema"), "response_format.json_schema")
        if not isinstance(schema.get("name"), str):
            raise _fail(
                "Missing required parameter: 'response_format.json_schema.name'.",
                "response_format.json_schema.name",
            )


def _logit_bias(value: Any) -> None:
    if value is None:
        return
    for token, bias in _object(value, "logit_bias").items():
        if not (token.isascii() and token.isdigit()) or not _is_number(bias) or not -100 <= bias <= 100:
            raise _fail(
                "Invalid 'logit_bias': expected token ids mapped to numbers from -100 to 100.", "logit_bias"
            )


def validate_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise _fail("The request body must be a JSON object.", None)
    model = body.get("model")
    if model is None:
        raise _fail("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise _fail("Invalid 'model': expected a non-empty string.", "model", "invalid_type")
    _messages(body.get("messages"))
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "max_tokens", 1)
    _integer(body, "max_completion_tokens", 1)
    _integer(body, "n", 1, 128)
    _integer(body, "seed", -(2**63), 2**64 - 1)
    _integer(body, "top_logprobs", 0, 20)
    for name in ("stream", "logprobs", "parallel_tool_calls", "store"):
        _boolean(body, name)
    for name in ("user", "reasoning_effort", "service_tier", "safety_identifier", "prompt_cache_key"):
        _string(body, name)
    _stop(body.get("stop"))
    _tools(body.get("tools"))
    _tool_choice(body)
    _response_format(body.get("response_format"))
    _logit_bias(body.get("logit_bias"))
    if body.get("top_logprobs") is not None and not body.get("logprobs"):
        raise _fail("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs")
    if body.get("metadata") is not None:
        _object(body["metadata"], "metadata")

    stream = bool(body.get("stream"))
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise _fail(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
            )
        options = _object(options, "stream_options")
        include_usage = options.get("include_usage")
        if include_usage is not None and not isinstance(include_usage, bool):
            raise _fail(
                "Invalid type for 'stream_options.include_usage': expected a boolean.",
                "stream_options.include_usage",
                "invalid_type",
            )
        include_usage = bool(include_usage)
    return ChatRequest(body=body, model=model, stream=stream, include_usage=include_usage)
