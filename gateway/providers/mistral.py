"""Mistral's chat API: OpenAI's format with strict validation and a few renames.

Mistral answers 422 to any field it does not know, so the request keeps only Mistral's fields (`seed` becomes
`random_seed`, `max_completion_tokens` becomes `max_tokens`, message `name` is dropped). Tool-call ids must
be exactly 9 characters of [a-zA-Z0-9]: ids sent to Mistral are mapped to such ids deterministically (the
same OpenAI id always gives the same Mistral id, so a tool round trip matches up), and ids coming back get a
`call_` prefix so they look like OpenAI's; `call_` + 9 characters maps back to the same 9. `model_length`
becomes `length`; a 422 becomes a 400.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterator
from typing import Any

from gateway.errors import GatewayError, UpstreamError
from gateway.providers.base import Completion, Target, UpstreamRequest
from gateway.providers.openai import map_openai_style_error
from gateway.providers.openai_compatible import OpenAICompatibleProvider
from gateway.sse import SSEEvent
from gateway.validation import ChatRequest

MISTRAL_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "safe_prompt",
    }
)
MESSAGE_FIELDS = frozenset({"role", "content", "tool_calls", "tool_call_id", "prefix", "name"})
_MISTRAL_ID = re.compile(r"^[A-Za-z0-9]{9}$")
_ALPHABET = string.ascii_letters + string.digits
_PREFIX = "call_"


def to_mistral_id(call_id: str) -> str:
    bare = call_id[len(_PREFIX) :] if call_id.startswith(_PREFIX) else call_id
    if _MISTRAL_ID.match(bare):
        return bare
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, rest = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[rest])
    return "".join(chars)


def from_mistral_id(call_id: str) -> str:
    return call_id if call_id.startswith(_PREFIX) else _PREFIX + call_id


class MistralProvider(OpenAICompatibleProvider):
    def build_request(self, request: ChatRequest, target: Target) -> UpstreamRequest:
        upstream = super().build_request(request, target)
        source = upstream.json
        body = {key: value for key, value in source.items() if key in MISTRAL_FIELDS}
        if source.get("seed") is not None:
            body["random_seed"] = source["seed"]
        if source.get("max_completion_tokens") is not None:
            body["max_tokens"] = source["max_completion_tokens"]
        body["messages"] = [_message(m) for m in source["messages"]]
        upstream.json = body
        return upstream

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> Completion:
        completion = super().parse_response(data, request)
        for choice in data.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            for call in (message or {}).get("tool_calls") or ():
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    call["id"] = from_mistral_id(call["id"])
        return completion

    def translate_stream(self, events: Iterator[SSEEvent], request: ChatRequest) -> Iterator[dict[str, Any]]:
        for chunk in super().translate_stream(events, request):
            for choice in chunk.get("choices") or ():
                for call in (choice.get("delta") or {}).get("tool_calls") or ():
                    if isinstance(call.get("id"), str):
                        call["id"] = from_mistral_id(call["id"])
            yield chunk

    def finish_reason(self, value: Any) -> str | None:
        if value == "model_length":
            return "length"
        if value == "error":
            raise UpstreamError("The mistral provider stopped with an error.", code="upstream_error")
        return value or None

    def map_error(self, status: int, body: bytes, headers) -> GatewayError:
        error = map_openai_style_error(self.name, 400 if status == 422 else status, body, headers)
        if status == 422:
            error.type, error.code = "invalid_request_error", error.code or "invalid_value"
        return error


def _message(message: dict) -> dict:
    out = {key: value for key, value in message.items() if key in MESSAGE_FIELDS and key != "name"}
    if out.get("tool_calls"):
        out["tool_calls"] = [
            {**call, "id": to_mistral_id(str(call.get("id", "")))} for call in out["tool_calls"]
        ]
    if out.get("tool_call_id"):
        out["tool_call_id"] = to_mistral_id(str(out["tool_call_id"]))
    if out.get("role") == "developer":
        out["role"] = "system"
    return out
