"""Token counts with tiktoken, for when a provider reports no usage (the row is then marked estimated).

Counting follows OpenAI's published recipe for chat messages: a few tokens of framing per message plus the
text. For models of other vendors the count is an estimate with cl100k_base.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import sys
from pathlib import Path
from typing import Any

# tiktoken's encodings ship with the code: token counts work offline (tiktoken reads this when it loads one).
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parent / "tiktoken_cache"))

import tiktoken  # noqa: E402

from gateway.usage import Usage

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3


@functools.cache
def _encoding(name: str) -> tiktoken.Encoding:
    encoding = tiktoken.get_encoding(name)
    # tiktoken keeps a Python copy of the merge ranks (~200k bytes objects, ~27 MB for o200k) only to pickle
    # the encoding; its Rust core has its own. We never pickle it: let the copy go.
    encoding._mergeable_ranks = {}
    return encoding


def preload() -> None:
    """Load both encodings now. gunicorn's master calls this before it forks the workers (gunicorn.conf.py):
    they then share one copy of the tables (~40 MB for o200k, ~20 MB for cl100k) instead of each loading its
    own, and no worker stalls every request it holds for the ~0.5 s a load takes on its first estimate."""
    for name in ("o200k_base", "cl100k_base"):
        _encoding(name)
    gc.collect()
    if sys.platform == "linux":  # hand the loader's freed pages back, so the workers' allocations don't
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # land between the shared tables and copy them


def encoding_for(model: str) -> tiktoken.Encoding:
    bare = model.rsplit("/", 1)[-1]
    return _encoding("o200k_base" if bare.startswith(_O200K_PREFIXES) else "cl100k_base")


def count_text(text: str, model: str) -> int:
    return len(encoding_for(model).encode(text, disallowed_special=())) if text else 0


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    pieces: list[str] = []
    if isinstance(content, str):
        pieces.append(content)
    elif isinstance(content, list):
        pieces.extend(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        pieces.append(str(function.get("name", "")))
        pieces.append(str(function.get("arguments", "")))
    return "\n".join(pieces)


def count_prompt(messages: list[dict[str, Any]], model: str) -> int:
    total = _REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE + count_text(_message_text(message), model)
        total += count_text(str(message.get("role", "")), model)
        if message.get("name"):
            total += _TOKENS_PER_NAME + count_text(str(message["name"]), model)
    return total


def estimate_usage(messages: list[dict[str, Any]], completion_text: str, model: str) -> Usage:
    return Usage(
        prompt_tokens=count_prompt(messages, model),
        completion_tokens=count_text(completion_text, model),
        estimated=True,
    )
