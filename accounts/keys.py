"""The shape of an API key: generation, digest and display prefix. No database access here."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "nm-"
DISPLAY_CHARS = 8  # characters of the secret kept, in clear, as the display prefix


def generate() -> str:
    """A new key: `nm-` and 43 URL-safe characters carrying 256 bits from `secrets`."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + DISPLAY_CHARS]


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) > len(KEY_PREFIX) + DISPLAY_CHARS
