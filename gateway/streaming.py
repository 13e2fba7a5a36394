"""Relays a provider's stream to the client as OpenAI chunks, chunk by chunk, never buffering the answer.

Whatever the provider, the client sees OpenAI's framing: `usage: null` on every chunk and one final usage
chunk with `choices: []` when it asked for `stream_options.include_usage`, no usage anywhere when it did not,
`data: [DONE]` at the end, and an error event (then no [DONE]) if the provider fails after the first byte.
The gateway always learns the usage: from the provider, or counted with tiktoken when none came.
When the response cache is on for the request, the chunks are also assembled into the final completion,
which is cached once the stream has ended with [DONE] (gateway/response_cache.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.errors import GatewayError
from gateway.metering import CLIENT_CLOSED, Call
from gateway.response_cache import StreamAssembler
from gateway.routing import Route
from gateway.sse import DONE, encode
from gateway.tokens import estimate_usage
from gateway.usage import Usage
from gateway.validation import ChatRequest


class RelayStream:
    """The response body. Closing it before it was ever iterated still ends the call and its upstream."""

    def __init__(self, call: Call, route: Route, chat: ChatRequest, response):
        self._call = call
        self._response = response
        self._chunks = relay(call, route, chat, response)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._chunks.close()
        if not self._call.finished:
            self._response.close()
            self._call.finish(CLIENT_CLOSED)


def relay(call: Call, route: Route, chat: ChatRequest, response) -> Iterator[bytes]:
    provider = route.provider
    include_usage = chat.include_usage
    usage_chunk: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None
    last: dict[str, Any] = {}
    texts = _Text()  # the answer's text, and the tool calls' (for counting when no usage comes)
    tool_texts = _Text()
    status, error = CLIENT_CLOSED, None
    assembler = StreamAssembler() if call.cache is not None else None  # only when the answer is cached
    try:
        events = provider.events(response, call.add_upstream_time)
        for chunk in provider.translate_stream(events, chat):
            usage = chunk.pop("usage", None)
            if usage:
                reported = usage
            choices = chunk.get("choices")
            if not choices:
                if usage:
                    usage_chunk = chunk  # sent last, right before [DONE], when the client asked for it
                continue
            last = chunk
            if assembler is not None:
                assembler.add(chunk)
            for choice in choices:
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content:
                    texts.add(content)
                    call.first_token()
                elif delta.get("tool_calls"):
                    _collect_tool_text(delta["tool_calls"], tool_texts)
                    call.first_token()
                if choice.get("finish_reason"):
                    call.finish_reason = choice["finish_reason"]
            if include_usage:
                chunk["usage"] = None
            yield encode(chunk)
        call.usage = Usage.from_openai(reported) or _estimate(chat, route, texts, tool_texts)
        call.settle_early()
        if include_usage:
            yield encode(_usage_chunk(usage_chunk, last, reported or call.usage.to_openai()))
        call.served_model = last.get("model") or route.upstream_model
        status = 200
        yield DONE
        provider.finish_body(response, events)  # the client has its answer: keep the connection for the next
    except GatewayError as exc:
        status, error = exc.status, exc
        yield encode(exc.body())
    finally:
        response.close()
        if call.usage is None:  # ended early: count what the client received
            call.usage = _estimate(chat, route, texts, tool_texts)
        call.response_body = {"content": str(texts)} if texts else None
        if status == 200 and assembler is not None:  # the whole answer was sent: cache it
            call.cache.put(assembler.completion(reported or call.usage.to_openai()))
        call.finish(status, error)


def _usage_chunk(upstream: dict | None, last: dict, usage: dict) -> dict:
    chunk = (
        dict(upstream)
        if upstream
        else {
            key: last[key]
            for key in ("id", "object", "created", "model", "system_fingerprint")
            if key in last
        }
    )
    chunk.setdefault("object", "chat.completion.chunk")
    chunk["choices"] = []
    chunk["usage"] = usage
    return chunk


class _Text:
    """Text as it streams in, piece by piece. A stream keeps its text for minutes, and a string object per
    word costs more than the word, so pieces are joined `JOINED` at a time (each is copied once)."""

    JOINED = 32
    __slots__ = ("_parts", "_loose")

    def __init__(self):
        self._parts: list[str] = []
        self._loose = 0  # pieces at the end of _parts not joined yet

    def add(self, piece: str) -> None:
        self._parts.append(piece)
        self._loose += 1
        if self._loose == self.JOINED:
            self._parts[-self.JOINED :] = ["".join(self._parts[-self.JOINED :])]
            self._loose = 0

    def __bool__(self) -> bool:
        return bool(self._parts)

    def __str__(self) -> str:
        return "".join(self._parts)


def _collect_tool_text(tool_calls: list, texts: _Text) -> None:
    for call in tool_calls:
        function = call.get("function") or {}
        texts.add(function.get("name") or "")
        texts.add(function.get("arguments") or "")


def _estimate(chat: ChatRequest, route: Route, texts: _Text, tool_texts: _Text) -> Usage:
    return estimate_usage(chat.body["messages"], str(texts) + str(tool_texts), route.upstream_model)
