"""Durations as OpenAI's rate-limit headers write them: `250ms`, `1s`, `6m0s`, `1h2m3s`."""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """Whole seconds rounded up; under a second, milliseconds rounded up; nothing left: `0s`."""
    if seconds <= 0:
        return "0s"
    milliseconds = math.ceil(seconds * 1000)
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
