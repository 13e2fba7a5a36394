"""OpenAI's own API: the request passes through with the upstream model name and usage always requested."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from gateway.errors import GatewayError, UpstreamError
from gateway.providers.base import Completion, Provider, Target, UpstreamRequest
from gateway.sse import SSEEvent
from gateway.usage import Usage
from gateway.validation import ChatRequest


class OpenAIProvider(Provider):
    def build_request(self, request: ChatRequest, target: Target) -> UpstreamRequest:
        body = dict(request.body)
        body["model"] = target.model
        if request.stream:
            # Always ask for usage, so the gateway learns it; the relay strips it if the client did not ask.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return UpstreamRequest(url=f"{self.base_url}/chat/completions", headers=headers, json=body)

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> Completion:
        return Completion(body=data, usage=Usage.from_openai(data.get("usage")))

    def translate_stream(self, events: Iterator[SSEEvent], request: ChatRequest) -> Iterator[dict[str, Any]]:
        for event in events:
            if event.data.startswith(b"[DONE]"):
                return
            if not event.data:
                continue
            chunk = self.decode_event(event.data)
            if chunk.get("error"):
                raise self.stream_error(chunk["error"])
            yield chunk

    def stream_error(self, error: Any) -> GatewayError:
        error = error if isinstance(error, dict) else {"message": str(error)}
        return self.scrub(
            UpstreamError(
                str(error.get("message") or f"The {self.name} provider failed mid-stream."),
                type=str(error.get("type") or "server_error"),
                code=error.get("code") if isinstance(error.get("code"), str) else "upstream_error",
            )
        )

    def map_error(self, status: int, body: bytes, headers) -> GatewayError:
        return map_openai_style_error(self.name, status, body, headers)


def map_openai_style_error(provider: str, status: int, body: bytes, headers) -> GatewayError:
    """An OpenAI-format error from upstream, as the same class of error for the client."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):  # some hosts send {"error": "text"}
        error = {"message": error}
    if not isinstance(error, dict):
        error = data if isinstance(data, dict) and "message" in data else {}
    message = str(error.get("message") or f"The {provider} provider answered with HTTP {status}.")
    code = error.get("code") if isinstance(error.get("code"), str) else None
    param = error.get("param") if isinstance(error.get("param"), str) else None
    passed = Provider.passed_headers(headers)
    passed.update({k: v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")})

    if status == 401:
        return UpstreamError(
            f"The {provider} provider rejected Neurometric's credentials; the operator should check "
            f"{provider.upper()}_API_KEY.",
            status=401,
            type="invalid_request_error",
            code="invalid_api_key",
        )
    if status == 429:
        kind = str(error.get("type") or "requests")
        if code == "insufficient_quota" or kind == "insufficient_quota":
            passed["x-should-retry"] = "false"
            return UpstreamError(
                message, status=429, type="insufficient_quota", code="insufficient_quota", headers=passed
            )
        return UpstreamError(
            message, status=429, type=kind, code=code or "rate_limit_exceeded", headers=passed
        )
    if status >= 500:
        return UpstreamError(
            message,
            status=503 if status == 529 else status,
            type="server_error",
            code=code or "upstream_error",
            headers=passed,
        )
    return UpstreamError(
        message,
        status=status,
        type=str(error.get("type") or "invalid_request_error"),
        param=param,
        code=code,
        headers=passed,
    )
