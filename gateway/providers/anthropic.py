"""Anthropic's Messages API (`POST {base_url}/v1/messages`), spoken to from OpenAI's chat completions.

Request:
- system and developer messages, wherever they are, become the top-level `system` (the text parts of one
  message joined with "\n", messages with "\n\n"); the rest become strictly alternating `user`/`assistant`
  messages of content blocks (consecutive same-role messages merged, consecutive `tool` messages becoming
  one user message of `tool_result` blocks, empty text blocks dropped).
- `max_tokens` is required by Anthropic: the client's `max_completion_tokens` or `max_tokens`, else the
  catalogue's `max_output_tokens` for the model, else 4096.
- temperature: OpenAI accepts 0–2, Anthropic 0–1. A value above 1 is REFUSED with a 400 naming
  `temperature` rather than clamped: clamping would silently change the sampling the client asked for,
  and a clear error lets the client choose. 0–1 passes through unchanged.
- `n` > 1 is refused (Anthropic returns one answer per request).
- JSON mode: Anthropic has no `response_format`. For `json_object` and `json_schema` the gateway appends an
  instruction to the system prompt asking for JSON only (with the schema, for `json_schema`). This is a
  best effort, not a guarantee: the answer is not validated.
- Parameters Anthropic has no equivalent for (`presence_penalty`, `frequency_penalty`, `logit_bias`,
  `seed`, `logprobs`, `store`, `service_tier`, `reasoning_effort`, ...) are dropped; `logprobs` in the
  answer is always null. Parameters that would change the answer's meaning (legacy `functions`, audio
  input, custom tools, `n` > 1) are refused with a 400 naming the parameter.

Response and stream: Anthropic's answer and its named SSE events become OpenAI's completion and chunks. The
stream always ends with a usage chunk (`choices: []`); the relay drops it when the client did not ask.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.durations import format_duration
from gateway.errors import GatewayError, InvalidRequest, UpstreamError
from gateway.providers.base import Completion, Provider, Target, UpstreamRequest
from gateway.sse import SSEEvent
from gateway.usage import Usage
from gateway.validation import ChatRequest

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it and no "
    "Markdown code fences."
)
JSON_SCHEMA_INSTRUCTION = (
    "Respond with a single valid JSON value that conforms to the JSON schema below, and nothing else: "
    "no prose before or after it and no Markdown code fences.\nJSON schema"
)

_ROLES = {"user": "user", "assistant": "assistant", "tool": "user"}
_RATE_LIMIT_KINDS = ("requests", "tokens")
_RATE_LIMIT_FIELDS = ("limit", "remaining", "reset")


def _fail(message: str, param: str, code: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_anthropic(usage: Any) -> Usage | None:
    """Anthropic's usage in OpenAI's terms: the prompt includes cache reads and cache writes."""
    if not isinstance(usage, dict):
        return None
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    cache_read = _int(usage.get("cache_read_input_tokens"))
    return Usage(
        prompt_tokens=_int(usage.get("input_tokens")) + cache_write + cache_read,
        completion_tokens=_int(usage.get("output_tokens")),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


class AnthropicProvider(Provider):
    # --- request ------------------------------------------------------------------------------------
    def build_request(self, request: ChatRequest, target: Target) -> UpstreamRequest:
        body = request.body
        _check_unsupported(body)
        system, messages = _messages(body["messages"])
        instruction = _json_instruction(body.get("response_format"))
        if instruction:
            system = f"{system}\n\n{instruction}" if system else instruction

        upstream: dict[str, Any] = {
            "model": target.model,
            "max_tokens": body.get("max_completion_tokens")
            or body.get("max_tokens")
            or target.max_output_tokens
            or DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            upstream["system"] = system
        temperature = body.get("temperature")
        if temperature is not None:
            if temperature > 1:
                raise _fail(
                    f"Invalid 'temperature': {temperature}. Anthropic models accept a temperature from 0 "
                    "to 1 (OpenAI's range is 0 to 2); send a value from 0 to 1.",
                    "temperature",
                    "invalid_value",
                )
            upstream["temperature"] = temperature
        if body.get("top_p") is not None:
            upstream["top_p"] = body["top_p"]
        top_k = body.get("top_k")
        if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
            upstream["top_k"] = top_k
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or ())
        stops = [s for s in stops if s]
        if stops:
            upstream["stop_sequences"] = stops
        user = body.get("user") or body.get("safety_identifier")
        if user:
            upstream["metadata"] = {"user_id": user}
        if request.stream:
            upstream["stream"] = True
        tools, tool_choice = _tools(body)
        if tools:
            upstream["tools"] = tools
            if tool_choice:
                upstream["tool_choice"] = tool_choice

        headers = {
            "x-api-key": self.api_key,
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
        }
        return UpstreamRequest(url=f"{self.base_url}/v1/messages", headers=headers, json=upstream)

    # --- non-stream answer ----------------------------------------------------------------------------
    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> Completion:
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in data.get("content") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                tool_calls.append(
                    {
                        "id": str(block.get("id") or ""),
                        "type": "function",
                        "function": {
                            "name": str(block.get("name") or ""),
                            "arguments": _arguments(block.get("input")),
                        },
                    }
                )
        text = "".join(texts)
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        usage = usage_from_anthropic(data.get("usage"))
        body: dict[str, Any] = {
            "id": f"chatcmpl-{data.get('id') or ''}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(data.get("model") or request.model),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(data.get("stop_reason")),
                }
            ],
        }
        if usage is not None:
            body["usage"] = usage.to_openai()
        return Completion(body=body, usage=usage)

    # --- stream -------------------------------------------------------------------------------------
    def translate_stream(self, events: Iterator[SSEEvent], request: ChatRequest) -> Iterator[dict[str, Any]]:
        base: dict[str, Any] = {
            "id": "chatcmpl-",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.model,
        }
        usage: dict[str, Any] = {}
        tools: dict[int, list] = {}  # Anthropic block index → [OpenAI tool index, arguments sent?]

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        def tool_fragment(index: int, arguments: str) -> dict[str, Any]:
            return chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})

        for event in events:
            if not event.data:
                continue
            data = self.decode_event(event.data)
            kind = data.get("type") or event.event
            if kind == "message_start":
                message = data.get("message") or {}
                base["id"] = f"chatcmpl-{message.get('id') or ''}"
                base["model"] = str(message.get("model") or request.model)
                _merge_usage(usage, message.get("usage"))
                yield chunk({"role": "assistant", "content": ""})
            elif kind == "content_block_start":
                block = data.get("content_block") or {}
                if block.get("type") == "tool_use":
                    index = len(tools)
                    tools[data.get("index")] = [index, False]
                    first = {
                        "index": index,
                        "id": str(block.get("id") or ""),
                        "type": "function",
                        "function": {"name": str(block.get("name") or ""), "arguments": ""},
                    }
                    yield chunk({"tool_calls": [first]})
                    if block.get("input"):  # a whole input up front (no deltas will follow)
                        tools[data.get("index")][1] = True
                        yield tool_fragment(index, _arguments(block["input"]))
                elif block.get("type") == "text" and block.get("text"):
                    yield chunk({"content": block["text"]})
            elif kind == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta":
                    if delta.get("text"):
                        yield chunk({"content": delta["text"]})
                elif delta.get("type") == "input_json_delta":
                    tool = tools.get(data.get("index"))
                    if tool is not None and delta.get("partial_json"):
                        tool[1] = True
                        yield tool_fragment(tool[0], delta["partial_json"])
                # thinking_delta, signature_delta, citations_delta: nothing for an OpenAI client
            elif kind == "content_block_stop":
                tool = tools.get(data.get("index"))
                if tool is not None and not tool[1]:  # a call without arguments: OpenAI sends "{}"
                    tool[1] = True
                    yield tool_fragment(tool[0], "{}")
            elif kind == "message_delta":
                _merge_usage(usage, data.get("usage"))
                stop_reason = (data.get("delta") or {}).get("stop_reason")
                yield chunk({}, finish_reason(stop_reason))
            elif kind == "message_stop":
                final = usage_from_anthropic(usage) or Usage()
                yield {**base, "choices": [], "usage": final.to_openai()}
                return
            elif kind == "error":
                raise self._stream_error(data.get("error"))
            # ping, and event types added later: dropped
        raise UpstreamError(
            f"The {self.name} provider ended the stream before the answer was complete.",
            code="upstream_stream_broken",
        )

    def _stream_error(self, error: Any) -> GatewayError:
        error = error if isinstance(error, dict) else {}
        kind = str(error.get("type") or "api_error")
        status = _STREAM_ERROR_STATUS.get(kind, 502)
        return self.scrub(
            UpstreamError(
                str(error.get("message") or f"The {self.name} provider failed mid-stream."),
                status=status,
                type=kind,
                code="server_is_overloaded" if kind == "overloaded_error" else "upstream_error",
            )
        )

    # --- errors -------------------------------------------------------------------------------------
    def map_error(self, status: int, body: bytes, headers) -> GatewayError:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, dict) else {}
        kind = str(error.get("type") or "")
        message = str(error.get("message") or f"The {self.name} provider answered with HTTP {status}.")
        passed = self.passed_headers(headers)
        passed.update(rate_limit_headers(headers))

        if kind == "billing_error":
            passed["x-should-retry"] = "false"
            return UpstreamError(
                message, status=429, type="insufficient_quota", code="insufficient_quota", headers=passed
            )
        if status == 401 or kind == "authentication_error":
            return UpstreamError(
                f"The {self.name} provider rejected Neurometric's credentials; the operator should check "
                f"{self.name.upper()}_API_KEY.",
                status=401,
                type="invalid_request_error",
                code="invalid_api_key",
            )
        if status == 429 or kind == "rate_limit_error":
            return UpstreamError(
                message, status=429, type="requests", code="rate_limit_exceeded", headers=passed
            )
        if status == 529 or kind == "overloaded_error":
            return UpstreamError(
                message, status=503, type="server_error", code="server_is_overloaded", headers=passed
            )
        if status >= 500:
            return UpstreamError(message, status=status, type="server_error", headers=passed)
        if status == 403 or kind == "permission_error":
            return UpstreamError(
                message, status=403, type="invalid_request_error", code="permission_denied", headers=passed
            )
        if status == 404 or kind == "not_found_error":
            return UpstreamError(
                message,
                status=404,
                type="invalid_request_error",
                param="model",
                code="model_not_found",
                headers=passed,
            )
        if status == 413 or kind == "request_too_large":
            return UpstreamError(
                message, status=400, type="invalid_request_error", code="request_too_large", headers=passed
            )
        if "prompt is too long" in message:
            return UpstreamError(
                message,
                status=400,
                type="invalid_request_error",
                param="messages",
                code="context_length_exceeded",
                headers=passed,
            )
        # InvalidRequest: code null, as OpenAI's own 400s
        return InvalidRequest(message, status=status if 400 <= status < 500 else 400, headers=passed)


_STREAM_ERROR_STATUS = {
    "overloaded_error": 503,
    "api_error": 500,
    "rate_limit_error": 429,
    "billing_error": 429,
    "invalid_request_error": 400,
    "request_too_large": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
}


# --- request helpers ----------------------------------------------------------------------------------


def _check_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise _fail(
            f"Invalid 'n': {n}. `n` is not supported by Anthropic models, which return one answer per "
            "request; send n=1 or leave it out.",
            "n",
            "unsupported_parameter",
        )
    if body.get("functions"):
        raise _fail(
            "The legacy 'functions' parameter is not supported for Anthropic models; use 'tools'.",
            "functions",
            "unsupported_parameter",
        )


def _text_of(content: Any) -> str:
    """A system, developer or tool message's text: a string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and p.get("text"))
    return ""


def _messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message["role"]
        param = f"messages[{i}]"
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text:
                system.append(text)
            continue
        if role == "function":
            raise _fail(
                "Legacy 'function' messages are not supported for Anthropic models; use 'tool' messages.",
                f"{param}.role",
                "unsupported_parameter",
            )
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"{param}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
        else:  # tool
            blocks = [_tool_result(message, param)]
        if not blocks:
            continue
        anthropic_role = _ROLES[role]
        if turns and turns[-1]["role"] == anthropic_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": anthropic_role, "content": blocks})
    if not turns:
        raise _fail("Anthropic models need at least one user or assistant message with content.", "messages")
    return "\n\n".join(system), turns


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content or ()):
        kind = part.get("type")
        where = f"{param}[{j}]"
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part["image_url"]["url"], f"{where}.image_url.url"))
        elif kind == "file":
            blocks.append(_document(part.get("file"), f"{where}.file"))
        else:
            raise _fail(
                f"Content parts of type '{kind}' are not supported for Anthropic models.",
                f"{where}.type",
                "unsupported_parameter",
            )
    return blocks


def _data_url(url: str, param: str) -> tuple[str, str]:
    """`data:<media type>;base64,<data>` → (media type, data)."""
    head, comma, data = url.partition(",")
    media_type, _, encoding = head[5:].partition(";")
    if not comma or encoding.lower() != "base64" or not media_type or not data:
        raise _fail(
            f"Invalid '{param}': expected a base64 data URL (data:<media type>;base64,<data>).",
            param,
            "invalid_value",
        )
    return media_type.lower(), data


def _image(url: str, param: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = _data_url(url, param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _fail(f"Invalid '{param}': expected an https URL or a base64 data URL.", param, "invalid_value")


def _document(file: Any, param: str) -> dict[str, Any]:
    file_data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(file_data, str) or not file_data.startswith("data:"):
        raise _fail(
            "Only files sent inline as a base64 data URL in 'file_data' are supported for Anthropic models.",
            f"{param}.file_data",
            "unsupported_parameter",
        )
    media_type, data = _data_url(file_data, f"{param}.file_data")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    if message.get("function_call"):
        raise _fail(
            "Legacy 'function_call' is not supported for Anthropic models; use 'tool_calls'.",
            f"{param}.function_call",
            "unsupported_parameter",
        )
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    else:
        for part in content or ():
            text = part.get("text") if part.get("type") == "text" else part.get("refusal")
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function["name"],
                "input": _parse_arguments(
                    function["arguments"], f"{param}.tool_calls[{j}].function.arguments"
                ),
            }
        )
    return blocks


def _parse_arguments(arguments: str, param: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise _fail(f"Invalid '{param}': expected a JSON object encoded as a string.", param, "invalid_value")
    return value


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    text = _text_of(message.get("content"))
    if text:
        result["content"] = text
    return result


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    declared = body.get("tools") or []
    tools = []
    for i, tool in enumerate(declared):
        if tool.get("type") != "function":
            raise _fail(
                f"Tools of type '{tool.get('type')}' are not supported for Anthropic models.",
                f"tools[{i}].type",
                "unsupported_parameter",
            )
        function = tool["function"]
        schema = dict(function.get("parameters") or {})
        schema.setdefault("type", "object")
        converted = {"name": function["name"], "input_schema": schema}
        if function.get("description"):
            converted["description"] = function["description"]
        tools.append(converted)
    if not tools:
        return [], None

    choice = body.get("tool_choice")
    tool_choice: dict[str, Any] | None
    if choice is None or choice == "auto":
        tool_choice = {"type": "auto"}
    elif choice == "required":
        tool_choice = {"type": "any"}
    elif choice == "none":
        tool_choice = {"type": "none"}
    elif choice.get("type") == "function":
        tool_choice = {"type": "tool", "name": choice["function"]["name"]}
    elif choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") if isinstance(choice.get("allowed_tools"), dict) else {}
        names = {
            (t.get("function") or {}).get("name")
            for t in allowed.get("tools") or ()
            if isinstance(t, dict) and isinstance(t.get("function"), dict)
        }
        tools = [t for t in tools if t["name"] in names]
        if not tools:
            raise _fail(
                "'tool_choice.allowed_tools.tools' names none of the request's tools.",
                "tool_choice.allowed_tools.tools",
            )
        tool_choice = {"type": "any" if allowed.get("mode") == "required" else "auto"}
    else:
        raise _fail(
            f"tool_choice of type '{choice.get('type')}' is not supported for Anthropic models.",
            "tool_choice.type",
            "unsupported_parameter",
        )
    if body.get("parallel_tool_calls") is False and tool_choice["type"] != "none":
        tool_choice["disable_parallel_tool_use"] = True
    if choice is None and "disable_parallel_tool_use" not in tool_choice:
        tool_choice = None  # Anthropic's default is auto: send nothing the client did not ask for
    return tools, tool_choice


def _json_instruction(response_format: Any) -> str:
    if not isinstance(response_format, dict):
        return ""
    if response_format.get("type") == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") or {"type": "object"}
        return f"{JSON_SCHEMA_INSTRUCTION} ({spec.get('name')}):\n{orjson.dumps(schema).decode()}"
    return ""


# --- response helpers ---------------------------------------------------------------------------------


def _arguments(value: Any) -> str:
    """A tool call's input as OpenAI's `arguments`: a compact JSON string."""
    return orjson.dumps(value if value is not None else {}).decode()


def _merge_usage(usage: dict[str, Any], update: Any) -> None:
    """Counts in `message_delta` are cumulative: a newer count replaces the older one."""
    if isinstance(update, dict):
        usage.update({key: value for key, value in update.items() if isinstance(value, int)})


# --- rate-limit headers -------------------------------------------------------------------------------


def rate_limit_headers(headers, now: datetime | None = None) -> dict[str, str]:
    """`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` as OpenAI's `x-ratelimit-*` names.

    Anthropic's reset is an RFC 3339 time; OpenAI's is a duration such as `1s` or `6m0s`.
    """
    converted = {}
    for kind in _RATE_LIMIT_KINDS:
        for field in _RATE_LIMIT_FIELDS:
            value = headers.get(f"anthropic-ratelimit-{kind}-{field}")
            if value is None:
                continue
            if field == "reset":
                value = _reset_duration(value, now)
                if value is None:
                    continue
            converted[f"x-ratelimit-{field}-{kind}"] = str(value)
    return converted


def _reset_duration(value: str, now: datetime | None) -> str | None:
    try:
        reset = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if reset.tzinfo is None:
        reset = reset.replace(tzinfo=UTC)
    return format_duration((reset - (now or datetime.now(UTC))).total_seconds())
