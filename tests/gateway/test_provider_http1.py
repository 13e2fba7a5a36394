"""The providers' HTTP/1.1 client (gateway/providers/http1.py), through requests' adapter as the gateway calls
it, against a local server that answers each request with the bytes a test scripts — well-formed, chunked,
compressed, cut short, or not HTTP at all."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest
import requests

from gateway.providers import http1
from gateway.providers.pool import PooledAdapter
from tests.gateway.scripted_server import ScriptedServer, json_answer


@pytest.fixture
def scripted():
    servers = []

    def start(answer):
        servers.append(ScriptedServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def adapter():
    adapter = PooledAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
    yield adapter
    adapter.close()


def _send(adapter, url: str, *, stream=False, body: bytes | None = b"{}", headers=None, timeout=(2, 5), **kw):
    request = requests.Request("POST", url + "/v1/chat/completions", data=body, headers=headers or {})
    return adapter.send(request.prepare(), stream=stream, timeout=timeout, **kw)


def test_the_request_head_names_host_encoding_and_length(scripted, adapter):
    server = scripted(lambda request: json_answer())
    response = _send(adapter, server.url, body=b'{"a": 1}', headers={"Authorization": "Bearer k"})
    assert response.json() == {"ok": True}
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert lines[1] == f"Host: 127.0.0.1:{server.port}".encode()
    assert b"Authorization: Bearer k" in lines
    assert b"Accept-Encoding: identity" in lines  # never a compressed answer we did not ask for
    assert b"Content-Length: 8" in lines
    assert body == b'{"a": 1}'


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(scripted, adapter):
    """The gateway builds its requests without requests' checks (gateway/providers/base.py `_prepared`): a
    provider key or header with a line break in it is refused here, not sent as two headers."""
    from gateway.providers.base import UpstreamRequest, _prepared

    server = scripted(lambda request: json_answer())
    upstream = UpstreamRequest(f"{server.url}/v1/chat", {"Authorization": "Bearer k\r\nX-Injected: 1"}, {})
    with pytest.raises(ValueError, match="line break"):
        adapter.send(_prepared(upstream), timeout=(2, 5))
    assert server.requests == []


def test_a_chunked_answer_is_read_whole_or_chunk_by_chunk_and_its_connection_reused(scripted, adapter):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
        b"7\r\ndata: 1\r\n"
        b"8;ext=1\r\ndata: 22\r\n"  # a chunk extension, ignored
        b"0\r\nX-Trailer: yes\r\n\r\n"  # a trailer, read and dropped
    )
    server = scripted(lambda request: chunked)
    assert _send(adapter, server.url).content == b"data: 1data: 22"
    streamed = _send(adapter, server.url, stream=True)
    assert streamed.raw.chunked
    assert list(streamed.raw.stream(65536)) == [b"data: 1", b"data: 22"]
    assert streamed.raw.connection is None  # read to the end: pooled
    assert _send(adapter, server.url).content == b"data: 1data: 22"
    assert server.connections == 1


def test_an_answer_without_a_length_ends_with_its_connection_which_is_not_reused(scripted, adapter):
    server = scripted(lambda request: b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ok": 1}')
    server.close_after = True
    assert _send(adapter, server.url).json() == {"ok": 1}
    streamed = _send(adapter, server.url, stream=True)
    assert streamed.raw.read1(65536) == b'{"ok": 1}'
    assert streamed.raw.read1(65536) == b""
    assert server.connections == 2


def test_connection_close_and_http_1_0_answers_are_not_reused(scripted, adapter):
    answers = iter(
        [
            json_answer(extra=b"Connection: close\r\n"),
            json_answer().replace(b"HTTP/1.1", b"HTTP/1.0"),
            json_answer(extra=b"Connection: keep-alive\r\n").replace(b"HTTP/1.1", b"HTTP/1.0"),
            json_answer(),
        ]
    )
    server = scripted(lambda request: next(answers))
    for _ in range(4):
        assert _send(adapter, server.url).json() == {"ok": True}
    assert server.connections == 3  # the keep-alive 1.0 answer's connection served the last request


def test_a_gzip_answer_is_decoded_whole_and_streamed(scripted, adapter):
    body = b'{"text": "' + b"hello " * 2000 + b'"}'
    packed = gzip.compress(body)
    server = scripted(lambda request: json_answer(packed, b"Content-Encoding: gzip\r\n"))
    assert _send(adapter, server.url).content == body
    streamed = _send(adapter, server.url, stream=True)
    assert b"".join(streamed.raw.stream(1024)) == body
    # A byte at a time: the first reads decode to nothing yet (the gzip header), which is not the end.
    streamed, pieces = _send(adapter, server.url, stream=True), []
    while piece := streamed.raw.read1(1):
        pieces.append(piece)
    assert b"".join(pieces) == body


def test_an_interim_answer_is_skipped_and_a_bodiless_one_reuses_its_connection(scripted, adapter):
    answers = iter(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n" + json_answer(),
            b"HTTP/1.1 204 No Content\r\nContent-Type: application/json\r\n\r\n",
            json_answer(extra=b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"),
        ]
    )
    server = scripted(lambda request: next(answers))
    assert _send(adapter, server.url).json() == {"ok": True}
    empty = _send(adapter, server.url, stream=True)
    assert empty.status_code == 204 and empty.raw.connection is None and empty.content == b""
    both = _send(adapter, server.url)
    assert both.headers["set-cookie"] == "a=1, b=2"
    assert server.connections == 1


def test_an_unread_stream_closed_early_does_not_return_its_connection(scripted, adapter):
    server = scripted(lambda request: json_answer(b"x" * 100_000))
    streamed = _send(adapter, server.url, stream=True)
    assert len(streamed.raw.read1(1024)) > 0
    streamed.close()
    assert len(_send(adapter, server.url).content) == 100_000
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (None, requests.ConnectionError),  # closed without an answer
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", requests.ConnectionError),  # not HTTP
        (b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", requests.ConnectionError),
    ],
)
def test_a_broken_answer_head_is_requests_connection_error(scripted, adapter, answer, error):
    server = scripted(lambda request: answer)
    server.close_after = True
    with pytest.raises(error):
        _send(adapter, server.url)


@pytest.mark.parametrize(
    "answer",
    [
        json_answer(b'{"ok": true}')[:-4],  # fewer bytes than its Content-Length, then closed
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",  # cut inside a chunk
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # not a chunk size
    ],
)
def test_a_body_cut_short_is_a_requests_error_and_its_connection_dropped(scripted, adapter, answer):
    server = scripted(lambda request: answer)
    server.close_after = True
    response = _send(adapter, server.url, stream=True)
    with pytest.raises(requests.RequestException):
        response.content  # noqa: B018
    assert response.raw.connection is None


def test_a_provider_that_does_not_answer_in_time_is_a_read_timeout(scripted, adapter):
    def slow(request):
        time.sleep(1.0)
        return json_answer()

    server = scripted(slow)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        _send(adapter, server.url, timeout=(2, 0.2))
    assert time.monotonic() - started < 0.9


def test_a_refused_connection_is_requests_connection_error(adapter):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(requests.ConnectionError):
            _send(adapter, f"http://127.0.0.1:{port}")


@pytest.fixture
def https_server(tmp_path):
    """A local HTTPS server whose certificate a throwaway CA signed: yields its URL and the CA's file."""
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}", ca_path
    server.shutdown()
    server.server_close()


def test_https_checks_the_certificate(https_server):
    """TLS with the provider's certificate verified against the CA bundle requests names (certifi's by
    default, or `verify`); a certificate no trusted CA signed is refused; verify=False skips the check."""
    url, ca_path = https_server
    adapter = PooledAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
    try:
        with pytest.raises(requests.exceptions.SSLError):
            _send(adapter, url)  # certifi's bundle: our test CA is not in it
        assert _send(adapter, url, verify=str(ca_path)).json() == {}
        assert _send(adapter, url, verify=str(ca_path)).json() == {}  # on the kept connection
        with pytest.raises(requests.exceptions.SSLError):
            _send(adapter, url)  # not on that connection: it was checked against another CA
        assert _send(adapter, url, verify=False).json() == {}
    finally:
        adapter.close()


def test_https_under_gevent_as_the_web_workers_run_it(https_server):
    """The web workers patch the standard library with gevent before anything is imported
    (gunicorn.conf.py), so sockets and TLS are gevent's: 20 greenlets share the pool, and an unknown
    certificate is still refused."""
    import subprocess
    import sys
    from pathlib import Path

    url, ca_path = https_server
    script = f"""
from gevent import monkey
monkey.patch_all()
import gevent, requests
from gateway.providers.pool import PooledAdapter

adapter = PooledAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
def call(verify):
    request = requests.Request("POST", {url!r} + "/v1/chat/completions", data=b"{{}}").prepare()
    return adapter.send(request, timeout=(2, 5), verify=verify).json()
jobs = [gevent.spawn(call, {str(ca_path)!r}) for _ in range(20)]
gevent.joinall(jobs, raise_error=True)
print(sum(job.value == {{}} for job in jobs))
try:
    call(True)
except requests.exceptions.SSLError:
    print("refused")
"""
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-c", script]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=root)
    assert done.stdout.split() == ["20", "refused"], done.stderr


def test_threads_sharing_a_pool_each_get_a_connection_of_their_own(scripted):
    """Outside gevent (runserver, Celery's threads) several threads share a provider's pool: each request
    takes a connection no other holds, and at most `pool_maxsize` stay pooled."""
    server = scripted(lambda request: json_answer(request.rpartition(b"\r\n\r\n")[2]))
    adapter = PooledAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
    failures: list[BaseException] = []

    def client(number: int) -> None:
        try:
            for i in range(50):
                body = f'{{"n": "{number}-{i}"}}'.encode()
                assert _send(adapter, server.url, body=body).content == body  # its own answer, not another's
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    adapter.close()
    assert failures == []
    assert len(server.requests) == 400
    assert server.connections < 400  # pooled connections were reused


def test_through_a_proxy_urllib3_sends_the_request(scripted, adapter):
    """With a proxy for the provider's URL (HTTPS_PROXY and the like, read by the provider at start), the
    request goes through urllib3's proxy pools, as requests sends it: the absolute URL in the request line."""
    proxy = scripted(lambda request: json_answer())
    request = requests.Request("POST", "http://provider.invalid/v1/chat/completions", data=b"{}").prepare()
    response = adapter.send(request, timeout=(2, 5), proxies={"http": proxy.url})
    assert response.json() == {"ok": True}
    assert proxy.requests[0].startswith(b"POST http://provider.invalid/v1/chat/completions HTTP/1.1\r\n")
    assert not isinstance(response.raw, http1.Response)


def test_debug_logs_name_connections_and_answers_but_never_the_query(scripted, adapter, caplog):
    """At DEBUG, as urllib3 logged: each new connection, and each answer's method, path and status. The
    query is left out: a provider may take its key there (Gemini's `?key=`)."""
    import logging

    server = scripted(lambda request: json_answer())
    with caplog.at_level(logging.DEBUG, logger="gateway.providers.http1"):
        for _ in range(2):
            request = requests.Request("POST", f"{server.url}/v1/chat?key=secret-in-query", data=b"{}")
            adapter.send(request.prepare(), timeout=(2, 5)).content  # noqa: B018
    lines = [record.getMessage() for record in caplog.records]
    assert lines.count(f"New connection to http://127.0.0.1:{server.port}") == 1
    assert lines.count(f'http://127.0.0.1:{server.port} "POST /v1/chat" 200') == 2
    assert "secret-in-query" not in caplog.text
