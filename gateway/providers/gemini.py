"""Google Gemini's generateContent API, spoken to as OpenAI chat completions.

Request: roles user → user and assistant → model; system and developer messages go to `systemInstruction`;
consecutive contents of the same role are merged (so consecutive tool results share one user content).
Assistant tool calls become `functionCall` parts with parsed `args`; tool results become `functionResponse`
parts, whose function name is looked up from `tool_call_id` in the earlier assistant tool calls.

Images: a `data:` URL becomes `inlineData`; an http(s) URL becomes `fileData{fileUri, mimeType}` with the MIME
type guessed from the URL path's extension (`image/jpeg` when the extension says nothing) — the gateway never
downloads anything; Gemini fetches the URL itself.

Tool schemas: a schema within Gemini's OpenAPI subset goes in `parameters` (a parameter-less tool gets none:
Gemini rejects an OBJECT with no properties); a schema using JSON-Schema-only keywords
(`additionalProperties`, `$schema`, `$ref`, `const`, `oneOf`, type lists, ...), as strict OpenAI tools have,
goes in `parametersJsonSchema`, which takes full JSON Schema, instead of failing with "Unknown name".

Tool-call ids: Gemini sends none, so the gateway generates `call_` + 24 hex characters. Thought signatures
(Gemini 3 rejects a function call sent back without its `thoughtSignature`) travel IN the id, not in a
process-local map, so a round trip works whichever gateway process serves the next turn: the id is then
`call_<24 hex>__ts<number of "=" padding characters>_<the signature with + and / as - and _, unpadded>`,
which gives back the exact signature. Such ids are long (as long as the signature) but only use
[A-Za-z0-9_-], as Anthropic's ids must. (A signature that is not standard base64 — Gemini's JSON always
sends bytes fields so — is not carried.)

Usage: `prompt_tokens` = promptTokenCount (which includes cached tokens) + toolUsePromptTokenCount, and
`completion_tokens` = candidatesTokenCount + thoughtsTokenCount, so the total matches totalTokenCount;
counts Gemini leaves out (it omits zeros) are 0. The stream has no [DONE]: it ends after the last fragment,
and the usage chunk is built from the last `usageMetadata` seen.
"""

from __future__ import annotations

import math
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from gateway.errors import GatewayError, InvalidRequest, UpstreamError
from gateway.providers.base import Completion, Provider, Target, UpstreamRequest
from gateway.sse import SSEEvent
from gateway.usage import Usage
from gateway.validation import ChatRequest

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"),
        "content_filter",
    ),
}  # anything else (MALFORMED_FUNCTION_CALL, OTHER, ...) → stop

_OUR_ID = re.compile(r"^call_[0-9a-f]{24}__ts([0-2])_([A-Za-z0-9_-]+)$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+(={0,2})$")
_DATA_URL = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),(.*)$", re.DOTALL)
_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
}
_DEFAULT_IMAGE_MIME = "image/jpeg"
_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3"}
_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# The keywords of Gemini's `Schema` (an OpenAPI 3.0 subset); a schema with any other goes as JSON Schema.
_SCHEMA_KEYWORDS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "items", "minimum", "maximum",
})  # fmt: skip
_INT32 = 2**31


# --- tool-call ids and thought signatures ----------------------------------------------------------------
def new_tool_call_id(signature: Any = None) -> str:
    """A fresh OpenAI tool-call id; a thought signature, if any, is carried in it."""
    call_id = "call_" + secrets.token_hex(12)
    match = _BASE64.match(signature) if isinstance(signature, str) else None
    if match is not None:
        encoded = signature.rstrip("=").replace("+", "-").replace("/", "_")
        call_id += f"__ts{len(match.group(1))}_{encoded}"
    return call_id


def signature_of(call_id: str) -> str | None:
    """The thought signature a generated id carries, exactly as Gemini sent it, or None."""
    match = _OUR_ID.match(call_id)
    if match is None:
        return None
    return match.group(2).replace("-", "+").replace("_", "/") + "=" * int(match.group(1))


# --- request -------------------------------------------------------------------------------------------
def _fail(message: str, param: str | None) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _text_of(content: Any, param: str) -> str:
    """The text of a text-only message: a string, or text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for i, part in enumerate(content):
        text = part.get("text") if isinstance(part, dict) else None
        if not isinstance(text, str):
            raise _fail(f"Invalid '{param}[{i}]': expected a text part.", f"{param}[{i}]")
        texts.append(text)
    return "".join(texts)


def _data_url(url: str, param: str) -> dict:
    match = _DATA_URL.match(url)
    if match is None or not any(p.strip().lower() == "base64" for p in match.group(2).split(";")):
        raise _fail(f"Invalid '{param}': expected a base64 data URL (data:<type>;base64,...).", param)
    mime, data = match.group(1).strip(), match.group(3)
    if not mime:
        raise _fail(f"Invalid '{param}': the data URL names no media type.", param)
    return {"inlineData": {"mimeType": mime, "data": data}}


def _guess_mime(url: str) -> str:
    path = urlsplit(url).path
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _MIME_BY_EXTENSION.get(extension, _DEFAULT_IMAGE_MIME)


def _image_part(part: dict, param: str) -> dict:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    where = f"{param}.image_url.url"
    if not isinstance(url, str):
        raise _fail(f"Missing '{where}'.", where)
    if url.startswith("data:"):
        return _data_url(url, where)
    if url.startswith(("https://", "http://")):
        return {"fileData": {"mimeType": _guess_mime(url), "fileUri": url}}
    raise _fail(f"Invalid '{where}': expected an https URL or a base64 data URL.", where)


def _audio_part(part: dict, param: str) -> dict:
    audio = part.get("input_audio")
    where = f"{param}.input_audio"
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        raise _fail(f"Missing '{where}.data': expected base64 audio.", f"{where}.data")
    mime = _AUDIO_MIME.get(str(audio.get("format") or "").lower())
    if mime is None:
        raise _fail(f"Invalid '{where}.format': expected wav or mp3.", f"{where}.format")
    return {"inlineData": {"mimeType": mime, "data": audio["data"]}}


def _file_part(part: dict, param: str) -> dict:
    file = part.get("file")
    where = f"{param}.file"
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str):
        raise _fail(
            f"Invalid '{where}': Gemini models take files as a base64 data URL in 'file_data' "
            "(OpenAI file ids are not supported).",
            where,
        )
    return _data_url(data, f"{where}.file_data")


def _content_parts(content: Any, param: str) -> list[dict]:
    """A user or assistant message's content as Gemini parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    parts = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"text": part.get("text") or ""})
        elif kind == "refusal":
            parts.append({"text": part.get("refusal") if isinstance(part.get("refusal"), str) else ""})
        elif kind == "image_url":
            parts.append(_image_part(part, where))
        elif kind == "input_audio":
            parts.append(_audio_part(part, where))
        elif kind == "file":
            parts.append(_file_part(part, where))
        else:
            raise _fail(f"Invalid '{where}.type': Gemini models do not take this kind of part.", where)
    return parts


def _function_call(name: Any, arguments: Any, param: str) -> dict:
    if not isinstance(name, str) or not name:
        raise _fail(f"Missing '{param}.name'.", f"{param}.name")
    if not isinstance(arguments, str):
        raise _fail(f"Invalid '{param}.arguments': expected a JSON string.", f"{param}.arguments")
    if not arguments.strip():
        args: Any = {}
    else:
        try:
            args = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise _fail(
                f"Invalid '{param}.arguments': not valid JSON ({arguments[:50]!r}).", f"{param}.arguments"
            ) from None
    if not isinstance(args, dict):
        raise _fail(f"Invalid '{param}.arguments': expected a JSON object.", f"{param}.arguments")
    return {"functionCall": {"name": name, "args": args}}


def _function_response(name: str, content: Any, param: str) -> dict:
    text = _text_of(content, f"{param}.content")
    try:
        parsed = orjson.loads(text) if text.lstrip().startswith("{") else None
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


def translate_messages(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """(systemInstruction parts, contents) for OpenAI messages."""
    system: list[dict] = []
    contents: list[dict] = []
    names: dict[str, str] = {}  # tool_call_id → function name, from the assistant messages so far

    def add(role: str, parts: list[dict]) -> None:
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.append({"text": _text_of(message.get("content"), f"{param}.content")})
        elif role == "user":
            add("user", _content_parts(message.get("content"), f"{param}.content") or [{"text": ""}])
        elif role == "assistant":
            parts = [
                p
                for p in _content_parts(message.get("content"), f"{param}.content")
                if p.get("text") != ""  # an empty text next to tool calls is no part at all
            ]
            for j, call in enumerate(message.get("tool_calls") or ()):
                where = f"{param}.tool_calls[{j}]"
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    raise _fail(f"Missing '{where}.function'.", f"{where}.function")
                part = _function_call(function.get("name"), function.get("arguments"), f"{where}.function")
                call_id = call.get("id")
                if isinstance(call_id, str):
                    names[call_id] = function["name"]
                    signature = signature_of(call_id)
                    if signature:
                        part["thoughtSignature"] = signature
                parts.append(part)
            legacy = message.get("function_call")
            if isinstance(legacy, dict):
                parts.append(
                    _function_call(legacy.get("name"), legacy.get("arguments"), f"{param}.function_call")
                )
            add("model", parts or [{"text": ""}])
        elif role == "tool":
            call_id = message.get("tool_call_id")
            name = names.get(call_id) if isinstance(call_id, str) else None
            if name is None:
                raise _fail(
                    f"Invalid '{param}.tool_call_id': {call_id!r} matches no tool call of an earlier "
                    "assistant message.",
                    f"{param}.tool_call_id",
                )
            add("user", [_function_response(name, message.get("content"), param)])
        elif role == "function":  # the deprecated form of a tool result
            add("user", [_function_response(str(message.get("name")), message.get("content"), param)])
        else:
            raise _fail(f"Invalid value for '{param}.role'.", f"{param}.role")
    return system, contents


def _in_gemini_subset(schema: Any) -> bool:
    """Whether a JSON schema only uses keywords Gemini's `Schema` knows (so it fits `parameters`)."""
    if isinstance(schema, list):
        return all(_in_gemini_subset(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    for key, value in schema.items():
        if key not in _SCHEMA_KEYWORDS:
            return False
        if key == "type" and not isinstance(value, str):
            return False
        if key == "properties":
            if not isinstance(value, dict) or not all(_in_gemini_subset(v) for v in value.values()):
                return False
        elif key in ("items", "anyOf") and not _in_gemini_subset(value):
            return False
    return True


def _takes_no_arguments(schema: dict) -> bool:
    if schema.get("properties") or schema.get("type", "object") != "object":
        return False
    if isinstance(schema.get("additionalProperties"), dict):
        return False  # a free-form map of arguments
    return not set(schema) & {"anyOf", "oneOf", "allOf", "$ref", "patternProperties", "if"}


def _declaration(function: dict) -> dict:
    declaration: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        declaration["description"] = function["description"]
    schema = function.get("parameters")
    if isinstance(schema, dict) and schema:
        if _takes_no_arguments(schema):
            pass  # Gemini rejects an OBJECT schema without properties: a parameter-less tool declares none
        elif _in_gemini_subset(schema):
            declaration["parameters"] = schema
        else:
            declaration["parametersJsonSchema"] = schema
    return declaration


def translate_tools(body: dict) -> tuple[list[dict], dict | None]:
    """(tools, toolConfig) for the OpenAI `tools` and `tool_choice`."""
    declarations = []
    for i, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise _fail(f"Invalid 'tools[{i}]': Gemini models only take function tools.", f"tools[{i}].type")
        declarations.append(_declaration(function))
    choice = body.get("tool_choice")
    config: dict[str, Any] | None = None
    if isinstance(choice, str) and choice in _TOOL_CHOICE_MODES:
        config = {"mode": _TOOL_CHOICE_MODES[choice]}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        tools = allowed.get("tools") if isinstance(allowed, dict) else None
        mode = allowed.get("mode") if isinstance(allowed, dict) else None
        if not isinstance(tools, list) or mode not in ("auto", "required"):
            raise _fail("Invalid 'tool_choice.allowed_tools': expected a mode and tools.", "tool_choice")
        names = []
        for tool in tools:
            name = (tool.get("function") or {}).get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str):
                raise _fail(
                    "Invalid 'tool_choice.allowed_tools.tools': expected function tools.", "tool_choice"
                )
            names.append(name)
        if mode == "required":
            config = {"mode": "ANY", "allowedFunctionNames": names}
        else:  # Gemini only restricts names under ANY: offer only the allowed ones
            declarations = [d for d in declarations if d["name"] in names]
            config = {"mode": "AUTO"}
    elif choice is not None:
        raise _fail("Invalid 'tool_choice': Gemini models only take function tools.", "tool_choice")
    tools_out = [{"functionDeclarations": declarations}] if declarations else []
    if not tools_out:
        config = None
    return tools_out, ({"functionCallingConfig": config} if config else None)


def generation_config(body: dict) -> dict:
    config: dict[str, Any] = {}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("n", "candidateCount"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    seed = body.get("seed")
    if seed is not None:  # Gemini's seed is an int32: a wider seed is folded into it, deterministically
        config["seed"] = seed if -_INT32 <= seed < _INT32 else (seed + _INT32) % (2 * _INT32) - _INT32
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is not None:
            if not isinstance(schema, dict):
                raise _fail(
                    "Invalid 'response_format.json_schema.schema': expected an object.",
                    "response_format.json_schema.schema",
                )
            config["responseJsonSchema"] = schema
    return config


# --- response ------------------------------------------------------------------------------------------
def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from(metadata: Any) -> Usage | None:
    if not isinstance(metadata, dict):
        return None
    thoughts = _count(metadata.get("thoughtsTokenCount"))
    return Usage(
        prompt_tokens=_count(metadata.get("promptTokenCount"))
        + _count(metadata.get("toolUsePromptTokenCount")),
        completion_tokens=_count(metadata.get("candidatesTokenCount")) + thoughts,
        cached_tokens=_count(metadata.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def finish_reason(gemini: Any, saw_tool_call: bool) -> str:
    reason = FINISH_REASONS.get(gemini, "stop") if isinstance(gemini, str) else "stop"
    return "tool_calls" if reason == "stop" and saw_tool_call else reason


def _parts(candidate: dict) -> list[dict]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return (
        [p for p in parts if isinstance(p, dict) and not p.get("thought")] if isinstance(parts, list) else []
    )


def _tool_call(part: dict) -> dict | None:
    call = part.get("functionCall")
    if not isinstance(call, dict):
        return None
    args = call.get("args")
    return {
        "id": new_tool_call_id(part.get("thoughtSignature")),
        "type": "function",
        "function": {
            "name": str(call.get("name") or ""),
            "arguments": orjson.dumps(args if isinstance(args, dict) else {}).decode(),
        },
    }


def _blocked(data: dict) -> bool:
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _candidates(data: dict) -> list[dict]:
    candidates = data.get("candidates")
    return [c for c in candidates if isinstance(c, dict)] if isinstance(candidates, list) else []


# --- errors --------------------------------------------------------------------------------------------
def _retry_after(details: list) -> str | None:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return str(max(0, math.ceil(float(delay[:-1]))))
                except ValueError:
                    return None
    return None


def _key_rejected(status: int, message: str, details: list) -> bool:
    if status == 401:
        return True
    if status != 400:
        return False
    reasons = {d.get("reason") for d in details if isinstance(d, dict)}
    return "API_KEY_INVALID" in reasons or "API key not valid" in message


def gemini_error(provider: str, status: int, error: Any, headers) -> GatewayError:
    """A Gemini error object (`{code, message, status, details}`) as the client-facing error."""
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or f"The {provider} provider answered with HTTP {status}.")
    details = error.get("details") if isinstance(error.get("details"), list) else []
    passed = Provider.passed_headers(headers)
    if _key_rejected(status, message, details):
        return UpstreamError(
            f"The {provider} provider rejected Neurometric's credentials; the operator should check "
            f"{provider.upper()}_API_KEY.",
            status=401,
            type="invalid_request_error",
            code="invalid_api_key",
        )
    if status == 404:
        return UpstreamError(
            message, status=404, type="invalid_request_error", param="model", code="model_not_found"
        )
    if status == 429:
        retry_after = _retry_after(details)
        if retry_after is not None:
            passed["retry-after"] = retry_after
        return UpstreamError(message, status=429, type="requests", code="rate_limit_exceeded", headers=passed)
    if status >= 500:
        return UpstreamError(
            message, status=status, type="server_error", code="upstream_error", headers=passed
        )
    if status == 403:
        return UpstreamError(
            message, status=403, type="invalid_request_error", code="permission_denied", headers=passed
        )
    return InvalidRequest(message, status=status, headers=passed)  # code null, as OpenAI's 400s


# --- the adapter ---------------------------------------------------------------------------------------
class GeminiProvider(Provider):
    def build_request(self, request: ChatRequest, target: Target) -> UpstreamRequest:
        body = request.body
        system, contents = translate_messages(body["messages"])
        if not contents:
            raise _fail(
                "Gemini models need at least one user or assistant message besides system messages.",
                "messages",
            )
        payload: dict[str, Any] = {"contents": contents}
        if system:
            payload["systemInstruction"] = {"parts": system}
        config = generation_config(body)
        if config:
            payload["generationConfig"] = config
        tools, tool_config = translate_tools(body)
        if tools:
            payload["tools"] = tools
        if tool_config:
            payload["toolConfig"] = tool_config

        model = quote(target.model.removeprefix("models/"), safe="-._~")
        verb = "streamGenerateContent" if request.stream else "generateContent"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["x-goog-api-key"] = self.api_key
        return UpstreamRequest(
            url=f"{self.base_url}/v1beta/models/{model}:{verb}",
            headers=headers,
            json=payload,
            params={"alt": "sse"} if request.stream else {},
        )

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> Completion:
        choices = []
        for position, candidate in enumerate(_candidates(data)):
            parts = _parts(candidate)
            texts = [p["text"] for p in parts if isinstance(p.get("text"), str)]
            tool_calls = [call for call in map(_tool_call, parts) if call]
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(texts) if texts else None,
                "refusal": None,
            }
            if tool_calls:
                message["tool_calls"] = tool_calls
            index = candidate.get("index")
            choices.append(
                {
                    "index": index if isinstance(index, int) else position,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(candidate.get("finishReason"), bool(tool_calls)),
                }
            )
        if not choices:  # the prompt was blocked (or nothing came): one empty choice
            choices.append(
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "content_filter" if _blocked(data) else "stop",
                }
            )
        body: dict[str, Any] = {
            "id": _completion_id(data),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(data.get("modelVersion") or request.model),
            "choices": choices,
        }
        usage = usage_from(data.get("usageMetadata"))
        if usage is not None:
            body["usage"] = usage.to_openai()
        return Completion(body=body, usage=usage)

    def translate_stream(self, events: Iterator[SSEEvent], request: ChatRequest) -> Iterator[dict[str, Any]]:
        head: dict[str, Any] | None = None  # id, object, created, model: shared by every chunk
        started: set[int] = set()  # choices that had their role chunk
        finished: set[int] = set()
        tool_counts: dict[int, int] = {}  # tool calls seen, per choice
        usage: Usage | None = None

        def chunk(index: int, delta: dict, finish: str | None = None) -> dict[str, Any]:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice]}

        def start(index: int) -> Iterator[dict[str, Any]]:
            if index not in started:
                started.add(index)
                yield chunk(index, {"role": "assistant", "content": ""})

        for event in events:
            data = event.data.strip()
            if not data:
                continue
            if data.startswith(b"[DONE]"):
                break
            fragment = self.decode_event(data)
            if fragment.get("error"):
                code = fragment["error"].get("code") if isinstance(fragment["error"], dict) else None
                status = code if isinstance(code, int) and code >= 400 else 500
                raise self.scrub(gemini_error(self.name, status, fragment["error"], {}))
            if head is None:
                head = {
                    "id": _completion_id(fragment),
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": str(fragment.get("modelVersion") or request.model),
                }
            if fragment.get("usageMetadata") is not None:
                usage = usage_from(fragment["usageMetadata"]) or usage
            candidates = _candidates(fragment)
            if not candidates and _blocked(fragment) and 0 not in finished:
                yield from start(0)
                finished.add(0)
                yield chunk(0, {}, "content_filter")
            for position, candidate in enumerate(candidates):
                index = candidate.get("index")
                index = index if isinstance(index, int) else position
                yield from start(index)
                for part in _parts(candidate):
                    text = part.get("text")
                    if isinstance(text, str) and text:
                        yield chunk(index, {"content": text})
                    call = _tool_call(part)
                    if call is not None:
                        count = tool_counts.get(index, 0)
                        tool_counts[index] = count + 1
                        yield chunk(index, {"tool_calls": [{"index": count, **call}]})
                reason = candidate.get("finishReason")
                if reason and index not in finished:
                    finished.add(index)
                    yield chunk(index, {}, finish_reason(reason, bool(tool_counts.get(index))))
        if head is None:
            raise UpstreamError(
                f"The {self.name} provider ended the stream without an answer.", code="upstream_malformed"
            )
        if usage is not None:
            yield {**head, "choices": [], "usage": usage.to_openai()}

    def map_error(self, status: int, body: bytes, headers) -> GatewayError:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, list) and data:  # streamGenerateContent without alt=sse answers an array
            data = data[0]
        error = data.get("error") if isinstance(data, dict) else None
        return gemini_error(self.name, status, error, headers)


def _completion_id(data: dict) -> str:
    response_id = data.get("responseId")
    if isinstance(response_id, str) and response_id:
        return f"chatcmpl-{response_id}"
    return f"chatcmpl-{uuid.uuid4().hex}"
