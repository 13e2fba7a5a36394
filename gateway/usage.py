"""Token usage in OpenAI's terms, whichever provider reported it.

`prompt_tokens` includes cached and cache-write tokens; `completion_tokens` includes reasoning tokens —
as OpenAI reports them, so that `prompt_tokens + completion_tokens == total_tokens` for every provider.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: dict | None) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            cached_tokens=_int(prompt_details.get("cached_tokens")),
            # Anthropic-style cache writes, reported as LiteLLM and Anthropic's own compatibility layer do
            cache_write_tokens=_int(usage.get("cache_creation_input_tokens")),
            reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
        )

    def to_openai(self) -> dict:
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        if self.cache_write_tokens:
            usage["cache_creation_input_tokens"] = self.cache_write_tokens
        return usage


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
