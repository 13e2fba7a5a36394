"""Provider faults end to end, against a fake provider that misbehaves on purpose. A server with a 1 s
read timeout and no gateway retries shows each fault as the client sees it, and every request's log row."""

from __future__ import annotations

import time
import uuid

import openai
import pytest
import requests

from tests.e2e.conftest import LiveServer, wait_for_log

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def strict_server(live_server_proc, fake_provider, tmp_path_factory):
    server = LiveServer(
        fake_provider,
        tmp_path_factory.mktemp("faults") / "server.log",
        UPSTREAM_READ_TIMEOUT="1",
        UPSTREAM_MAX_RETRIES="0",
    ).start()
    yield server
    server.stop()


@pytest.fixture
def client(strict_server, transactional_db, e2e_key):
    return openai.OpenAI(base_url=f"{strict_server.url}/v1", api_key=e2e_key, max_retries=0, timeout=20)


def _ask(client, text: str, **kwargs):
    return client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"{uuid.uuid4()} {text}"}], **kwargs
    )


@pytest.mark.parametrize(
    "directive, exception, status",
    [
        ("!error 500", openai.InternalServerError, 500),
        ("!error 503", openai.InternalServerError, 503),
        ("!error 429", openai.RateLimitError, 429),
        ("!malformed", openai.InternalServerError, 502),
        ("!disconnect", openai.InternalServerError, 502),
        ("!slow 3000", openai.InternalServerError, 504),  # no headers within the 1 s read timeout
    ],
)
def test_faults_before_the_answer_get_a_real_status_and_a_log_row(client, directive, exception, status):
    with pytest.raises(exception) as caught:
        _ask(client, directive)
    assert caught.value.status_code == status
    assert wait_for_log(caught.value.request_id).status_code == status


def test_anthropic_529_reaches_the_client_as_503(client):
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="claude-3-5-sonnet", messages=[{"role": "user", "content": "!error 529"}]
        )
    assert caught.value.status_code == 503


@pytest.mark.parametrize(
    "directive",
    [
        "!words 50 !chunk-delay 1500",  # the stream stalls past the read timeout
        "!stream-error-after 2",  # the provider sends an error event
        "!words 5 !malformed",  # a broken event
    ],
)
def test_faults_mid_stream_end_the_stream_with_an_error_event(client, directive):
    stream = _ask(client, directive, stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    row = wait_for_log(stream.response.headers["x-request-id"])
    assert row.status_code >= 500 and row.stream


def test_a_connection_reset_mid_stream_is_an_error_not_a_hang(client):
    started = time.monotonic()
    stream = _ask(client, "!words 20 !disconnect", stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
    assert time.monotonic() - started < 10


def test_an_enormous_answer_streams_through_and_is_fully_counted(client):
    stream = _ask(client, "!words 20000", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens == 20000
    row = wait_for_log(stream.response.headers["x-request-id"])
    assert row.completion_tokens == 20000 and row.status_code == 200


def test_an_enormous_non_stream_answer_is_passed_through(client):
    completion = _ask(client, "!words 30000")
    assert len(completion.choices[0].message.content.split()) == 30000


@pytest.mark.parametrize("size_mb, status", [(21, 413), (40, 413)])
def test_oversized_bodies_get_413_in_the_envelope(strict_server, e2e_key, transactional_db, size_mb, status):
    body = (
        b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"x" * (size_mb << 20) + b'"}]}'
    )
    response = requests.post(
        f"{strict_server.url}/v1/chat/completions",
        data=body,
        timeout=60,
        headers={"Authorization": f"Bearer {e2e_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == status
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_deeply_nested_json_gets_a_clean_400(strict_server, e2e_key, transactional_db):
    body = '{"model": "gpt-4o", "messages": ' + "[" * 5000 + "]" * 5000 + "}"
    response = requests.post(
        f"{strict_server.url}/v1/chat/completions",
        data=body,
        timeout=30,
        headers={"Authorization": f"Bearer {e2e_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_invalid_utf8_gets_a_clean_400(strict_server, e2e_key, transactional_db):
    response = requests.post(
        f"{strict_server.url}/v1/chat/completions",
        data=b'{"model": "\xff\xfe"}',
        timeout=30,
        headers={"Authorization": f"Bearer {e2e_key}"},
    )
    assert response.status_code == 400
