"""Retries and fallbacks through the real server: a retry that honours retry-after, a fallback that
rescues a provider that is down (Together points at a closed port in the e2e server)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.e2e.conftest import wait_for_log

pytestmark = pytest.mark.e2e


def test_gateway_retry_honours_retry_after_and_the_client_never_sees_the_429(sdk, fake_provider):
    text = f"{uuid.uuid4()} !fail-first 1 !error 429 !retry-after 1"
    started = time.monotonic()
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}]
    )
    elapsed = time.monotonic() - started
    assert raw.parse().choices[0].message.content
    assert elapsed >= 1.0
    assert len([r for r in fake_provider.requests if r.path == "/v1/chat/completions"]) == 2
    row = wait_for_log(raw.headers["x-request-id"])
    assert [a["status"] for a in row.attempts] == [429, 200]


def test_fallback_rescues_a_provider_that_is_down(sdk):
    raw = sdk.chat.completions.with_raw_response.create(
        model="meta-llama/Llama-3.3-70B-Instruct-Turbo",  # served by Together, which is down
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-neurometric-fallbacks": "claude-3-5-sonnet,gpt-4o"},
    )
    completion = raw.parse()
    assert raw.headers["x-neurometric-model"] in ("claude-3-5-sonnet", "gpt-4o")
    assert completion.choices[0].message.content
    row = wait_for_log(raw.headers["x-request-id"])
    assert row.fallback_used
    assert row.attempts[0]["model"] == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert row.attempts[0]["status"] == 502
    assert row.attempts[-1]["status"] == 200


def test_streamed_request_falls_back_before_the_first_byte(sdk):
    stream = sdk.chat.completions.create(
        model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        extra_headers={"x-neurometric-fallbacks": "gpt-4o"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the fake provider."
