"""A Redis database for tests: the machine's Redis (TEST_REDIS_URL, default db 13), flushed per use.

Tests that need it are skipped where no Redis answers — except in CI (CI=true), where that is a failure."""

from __future__ import annotations

import os

import pytest

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def fresh_redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
        client.flushdb()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {TEST_REDIS_URL}: {exc}")
    return TEST_REDIS_URL
