"""Bodies in OpenAI's real wire format, for unit tests that mock the provider with `responses`."""

from __future__ import annotations

import orjson

UPSTREAM = "http://openai.test/v1/chat/completions"


def completion(
    content: str = "Hello there.",
    *,
    model: str = "gpt-4o-2024-08-06",
    prompt: int = 12,
    completion_tokens: int = 3,
    cached: int = 0,
    reasoning: int = 0,
    finish_reason: str = "stop",
) -> dict:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1741570283,
        "model": model,
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
        "system_fingerprint": "fp_1",
    }


def stream_body(pieces: list[str], *, usage: dict | None = None, model: str = "gpt-4o-2024-08-06") -> bytes:
    def chunk(delta: dict, finish=None, **extra) -> dict:
        return {
            "id": "chatcmpl-s1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }

    events = [chunk({"role": "assistant", "content": ""}, usage=None)]
    events += [chunk({"content": piece}, usage=None) for piece in pieces]
    events.append(chunk({}, "stop", usage=None))
    if usage is not None:
        events.append(
            {
                "id": "chatcmpl-s1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
