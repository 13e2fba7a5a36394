"""The request log through the real server: disconnects, bodies off by default, last_used_at."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from accounts.models import ApiKey
from analytics.models import RequestLog
from tests.e2e.conftest import wait_for_log

pytestmark = pytest.mark.e2e


def _raw_stream_then_hang_up(server, key: str, text: str) -> str:
    body = orjson.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": text}]})
    host, port = "127.0.0.1", server.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data: " not in received:
            received += sock.recv(4096)
    headers = received.split(b"\r\n\r\n", 1)[0].decode()
    return next(
        line.split(": ", 1)[1] for line in headers.split("\r\n") if line.lower().startswith("x-request-id")
    )


def test_client_disconnecting_mid_stream_leaves_a_499_row_with_tokens_so_far(server, e2e_key):
    # 200 words, 50 ms apart: the client hangs up after the first chunk.
    request_id = _raw_stream_then_hang_up(server, e2e_key, "!words 200 !chunk-delay 50")
    row = wait_for_log(request_id, timeout=15)
    assert row.status_code == 499 and row.stream
    assert row.completion_tokens < 200 and row.prompt_tokens > 0


def test_bodies_are_not_stored_by_default_and_last_used_at_is_touched(sdk, e2e_key):
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "secret prompt"}]
    )
    row = wait_for_log(raw.headers["x-request-id"])
    assert row.request_body is None and row.response_body is None
    deadline = time.monotonic() + 5
    while ApiKey.objects.get(prefix=e2e_key[:11]).last_used_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ApiKey.objects.get(prefix=e2e_key[:11]).last_used_at is not None
    assert RequestLog.objects.filter(request_id=raw.headers["x-request-id"]).count() == 1
