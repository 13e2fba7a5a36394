"""Redaction of stored request and response bodies: emails, payment card numbers and API keys.

The short fields a client fills in (model, `user`, tags) and error messages are always stored, so API keys
pasted there by mistake are redacted from them too — only keys: an email is a legitimate `user`.

Runs in the log writer, off the response path, and only when STORE_REQUEST_BODIES is on. Card numbers are
13-19 digits (spaces or dashes allowed between them) that pass the Luhn check, so order numbers and phone
numbers are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
API_KEY = re.compile(
    r"\b(?:nm-[A-Za-z0-9_-]{20,}|sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,}"
    r"|gsk_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()


def redact_text(text: str) -> str:
    text = API_KEY.sub("[api-key]", text)
    text = EMAIL.sub("[email]", text)
    return CARD.sub(_card, text)


def redact_keys_text(text: str) -> str:
    return API_KEY.sub("[api-key]", text)


def redact(value: Any, text: Callable[[str], str] = redact_text) -> Any:
    """A copy of a JSON value with every string redacted (by default of all three kinds)."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {key: redact(item, text) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, text) for item in value]
    return value
