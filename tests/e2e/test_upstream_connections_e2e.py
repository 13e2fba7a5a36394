"""The gateway keeps its connections to providers: streamed and plain requests in a row reuse them, so a
real provider is not paid a new TCP and TLS handshake per request."""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Say hello !words 20"}]
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-sonnet",
    "gemini": "gemini-flash",
}
ROUNDS = 6


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
@pytest.mark.parametrize("provider", list(MODELS))
def test_requests_in_a_row_reuse_the_upstream_connections(sdk, fake_provider, provider, stream):
    for _ in range(ROUNDS):
        answer = sdk.chat.completions.create(model=MODELS[provider], messages=HELLO, stream=stream)
        if stream:
            chunks = list(answer)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
        else:
            assert answer.choices[0].message.content
    peers = {request.peer for request in fake_provider.requests}
    assert len(fake_provider.requests) == ROUNDS
    # The server runs 2 workers, each with its own pool: at most one connection each.
    assert len(peers) <= 2, f"{len(peers)} upstream connections for {ROUNDS} requests"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_provider_that_holds_the_body_open_after_its_end_event_does_not_hold_the_client(
    server, e2e_key, provider
):
    """Reading the body's end is bounded (1 s): past it the connection is dropped and the client's response
    ends — read here to its very last byte, as an HTTP client that waits for the end of the body does."""
    started = time.monotonic()
    response = requests.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": MODELS[provider],
            "stream": True,
            "messages": [{"role": "user", "content": "Hi !linger 8000"}],
        },
        headers={"Authorization": f"Bearer {e2e_key}"},
        timeout=30,
    )
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    assert time.monotonic() - started < 4
