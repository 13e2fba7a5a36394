"""Log-in throttling: after MAX_FAILURES failed log-ins within WINDOW_SECONDS, from one IP address or for
one email address, further attempts are refused until the window ends. Counters live in the cache
(Redis in production, so every process shares them)."""

from __future__ import annotations

import hashlib

from django.core.cache import cache

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60


def _keys(*, ip: str, email: str) -> list[str]:
    email_hash = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return [f"login-fail:ip:{ip}", f"login-fail:email:{email_hash}"]


def login_blocked(*, ip: str, email: str) -> bool:
    counts = cache.get_many(_keys(ip=ip, email=email))
    return any(count >= MAX_FAILURES for count in counts.values())


def login_failed(*, ip: str, email: str) -> None:
    for key in _keys(ip=ip, email=email):
        # add() starts a window; incr() counts within it without extending it
        if not cache.add(key, 1, timeout=WINDOW_SECONDS):
            try:
                cache.incr(key)
            except ValueError:  # expired between add() and incr()
                cache.add(key, 1, timeout=WINDOW_SECONDS)


def login_succeeded(*, ip: str, email: str) -> None:
    """A correct password clears the email's counter (not the address's: one IP may try many emails)."""
    cache.delete(_keys(ip=ip, email=email)[1])
