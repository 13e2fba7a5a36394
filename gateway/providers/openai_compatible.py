"""Any OpenAI-compatible server: Groq, Together, Ollama, vLLM, LM Studio, DeepSeek, OpenRouter ...

They take OpenAI's request as is, but their answers drift from OpenAI's in small ways that break strict
clients; this adapter normalises them:
- `finish_reason: ""` becomes null, and a stream that called tools but ends with `stop` ends `tool_calls`;
- `role` is sent once, in the first delta;
- tool-call indexes count from 0 per choice, and each call's `id`, `type` and `name` come only in its
  first fragment (hosts that stream calls whole, or repeat them, are fixed);
- every choice has `logprobs` and every message `refusal`, as OpenAI's do;
- errors in any of the hosts' shapes become OpenAI's envelope.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.providers.base import Completion
from gateway.providers.openai import OpenAIProvider
from gateway.sse import SSEEvent
from gateway.usage import Usage
from gateway.validation import ChatRequest


class OpenAICompatibleProvider(OpenAIProvider):
    def build_request(self, request, target):
        upstream = super().build_request(request, target)
        if not self.api_key:
            upstream.headers["Authorization"] = "Bearer none"  # Ollama ignores it but wants one
        return upstream

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> Completion:
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            choice.setdefault("logprobs", None)
            message = choice.get("message")
            if isinstance(message, dict):
                message.setdefault("refusal", None)
                message["role"] = "assistant"
                if message.get("tool_calls") and choice.get("finish_reason") == "stop":
                    choice["finish_reason"] = "tool_calls"
            choice["finish_reason"] = self.finish_reason(choice.get("finish_reason"))
        return Completion(body=data, usage=Usage.from_openai(data.get("usage")))

    def finish_reason(self, value: Any) -> str | None:
        return value or None

    def translate_stream(self, events: Iterator[SSEEvent], request: ChatRequest) -> Iterator[dict[str, Any]]:
        state = _StreamState()
        for chunk in super().translate_stream(events, request):
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict):
                    self._normalise_choice(choice, state)
            yield chunk

    def _normalise_choice(self, choice: dict, state: _StreamState) -> None:
        index = choice.get("index", 0)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if index in state.role_sent:
                delta.pop("role", None)
            elif delta.get("role"):
                state.role_sent.add(index)
            if delta.get("tool_calls"):
                delta["tool_calls"] = [
                    state.tool_fragment(index, i, call) for i, call in enumerate(delta["tool_calls"])
                ]
        reason = self.finish_reason(choice.get("finish_reason"))
        if reason == "stop" and state.called_tools(index):
            reason = "tool_calls"
        choice["finish_reason"] = reason
        choice.setdefault("logprobs", None)


class _StreamState:
    def __init__(self) -> None:
        self.role_sent: set[int] = set()
        self._indexes: dict[int, dict[Any, int]] = {}  # choice → upstream call key → our index
        self._ids: dict[int, dict[Any, str]] = {}  # choice → upstream call key → the call's id

    def called_tools(self, choice: int) -> bool:
        return bool(self._indexes.get(choice))

    def tool_fragment(self, choice: int, position: int, call: dict) -> dict:
        indexes = self._indexes.setdefault(choice, {})
        ids = self._ids.setdefault(choice, {})
        key = call.get("index", position)
        if call.get("id") and ids.get(key) not in (None, call["id"]):
            key = ("id", call["id"])  # a host that sends every whole call at the same index
        first = key not in indexes
        if first:
            indexes[key] = len(indexes)
            ids[key] = call.get("id") or f"call_{choice}_{indexes[key]}"
        fragment: dict[str, Any] = {"index": indexes[key]}
        function = dict(call.get("function") or {})
        if first:
            fragment["id"] = ids[key]
            fragment["type"] = "function"
            function.setdefault("arguments", "")
        else:
            function.pop("name", None)
        fragment["function"] = function
        return fragment
