"""Fingerprints of a chat request, stored on its log row so the recommendations can find repeats in SQL.

Computed by the log writer (`analytics.services`), off the response path, from the request body:

- `request_hash`: SHA-256 of the canonical request JSON (keys sorted, orjson) without `stream`,
  `stream_options` and `user`: two requests with the same model, messages and parameters share it, so a
  response cache would have answered the second one.
- `system_hash`, `system_tokens`: the leading system / developer messages (the system prompt) and their size.
- `prefix_hash`, `prefix_tokens`: the part of the prompt a provider's prompt cache can reuse — the tool
  definitions, the system prompt, and the first conversation message when more turns follow it (a shared
  document or few-shot example; a single-turn request's only message is the varying question, so it is left
  out) — recorded only when it is at least PREFIX_MIN_TOKENS long, as providers cache nothing shorter
  (OpenAI's automatic caching and Anthropic's cache_control start at 1,024 tokens).

Sizes are estimated as characters / 4 (OpenAI's rule of thumb for English text): cheap enough for every
request, and the recommendations state that they are estimates.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson

log = logging.getLogger(__name__)

PREFIX_MIN_TOKENS = 1024
CHARS_PER_TOKEN = 4
_NOT_HASHED = ("stream", "stream_options", "user")
_SYSTEM_ROLES = ("system", "developer")


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN


def _sha256(data: Any) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def request_hash(body: dict) -> str:
    return _sha256({name: value for name, value in body.items() if name not in _NOT_HASHED})


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def request_signals(body: dict) -> dict[str, Any]:
    """The fingerprint fields of a log row (see the module docstring); {} for a body it cannot read."""
    try:
        return _signals(body)
    except Exception:  # a fingerprint is never worth losing a log row over
        log.warning("Could not fingerprint a request body", exc_info=True)
        return {}


def _signals(body: dict) -> dict[str, Any]:
    signals: dict[str, Any] = {"request_hash": request_hash(body)}
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    split = 0
    while split < len(messages) and messages[split].get("role") in _SYSTEM_ROLES:
        split += 1
    system = messages[:split]
    if system:
        signals["system_hash"] = _sha256(system)
        signals["system_tokens"] = sum(estimate_tokens(_text(m)) for m in system)
    prefix = messages[: split + 1] if len(messages) > split + 1 else system
    tools = body.get("tools") or None
    chars = sum(len(_text(m)) for m in prefix) + (len(orjson.dumps(tools)) if tools else 0)
    if prefix and chars // CHARS_PER_TOKEN >= PREFIX_MIN_TOKENS:
        signals["prefix_hash"] = _sha256({"model": body.get("model"), "tools": tools, "messages": prefix})
        signals["prefix_tokens"] = chars // CHARS_PER_TOKEN
    return signals
