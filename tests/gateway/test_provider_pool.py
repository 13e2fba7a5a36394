"""Keep-alive connections to providers (gateway/providers/pool.py and http1.py), against a real local HTTP
server."""

from __future__ import annotations

import socket

import pytest
import requests

from gateway.providers.http1 import still_open
from gateway.providers.pool import PooledAdapter
from tests.gateway.scripted_server import ScriptedServer, json_answer


def test_still_open_tells_an_idle_socket_from_a_closed_or_dirty_one():
    mine, theirs = socket.socketpair()
    try:
        assert still_open(mine)
        theirs.sendall(b"x")  # bytes no request asked for: not reusable
        assert not still_open(mine)
        mine.recv(1)
        assert still_open(mine)
        theirs.close()  # end of file
        assert not still_open(mine)
    finally:
        mine.close()
        theirs.close()


def _serving():
    server = ScriptedServer(lambda request: json_answer())
    yield server
    server.close()


server = pytest.fixture(_serving, name="server")
other_server = pytest.fixture(_serving, name="other_server")


def _post(adapter: PooledAdapter, url: str, body: bytes | None = b"{}", method="POST") -> requests.Response:
    request = requests.Request(method, url, data=body, headers={"Content-Type": "application/json"})
    response = adapter.send(request.prepare(), timeout=(2, 5))
    assert response.json() == {"ok": True}
    return response


def test_a_connection_is_reused_while_open_and_replaced_once_closed(server):
    adapter = PooledAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
    url = f"{server.url}/v1/chat/completions"
    for _ in range(3):
        _post(adapter, url)
    assert server.connections == 1  # kept alive and reused
    server.close_after = True
    _post(adapter, url)  # answered, then closed by the server while pooled
    server.close_after = False
    server.wait_closed(1)
    _post(adapter, url)  # the closed connection is noticed and replaced, not written to
    assert server.connections == 2
    _post(adapter, url)
    assert server.connections == 2
    adapter.close()


def test_a_request_leaves_in_one_write(server, monkeypatch):
    """Head and body in one system call (one TCP segment); a large body after its head, not copied."""
    writes: list[bytes] = []
    send_all = socket.socket.sendall
    port = server.port

    def counted(sock, data, *args):
        if sock.getpeername()[1] == port:  # the client's writes, not the server's answers
            writes.append(bytes(data))
        return send_all(sock, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", counted)
    adapter = PooledAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    for _ in range(2):  # on a new connection, then on the kept one
        writes.clear()
        _post(adapter, url, b'{"model": "gpt-4o"}')
        assert len(writes) == 1
        assert writes[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert writes[0].endswith(b'\r\n\r\n{"model": "gpt-4o"}')
    writes.clear()
    large = b"x" * (100 * 1024)
    _post(adapter, url, large)
    assert len(writes) == 2
    assert writes[0].endswith(b"\r\n\r\n")
    assert writes[1] == large
    writes.clear()
    _post(adapter, url, None, method="GET")  # no body: the head alone, before the answer is read
    assert len(writes) == 1
    assert writes[0].startswith(b"GET ") and writes[0].endswith(b"\r\n\r\n")
    assert server.connections == 1
    adapter.close()


def test_the_pool_is_found_per_origin_and_dropped_on_close(server, other_server):
    """A pool is remembered per origin (scheme, host, port), whatever the path and query; close() drops
    them all, so that no connection is reused after it."""
    adapter = PooledAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
    first = server.url
    other = other_server.url
    a = _post(adapter, f"{first}/v1/chat/completions").raw._pool
    assert _post(adapter, f"{first}/v1/embeddings?x=1").raw._pool is a
    assert _post(adapter, f"{other}/v1/chat/completions").raw._pool is not a
    assert _post(adapter, f"{first.upper()}/v1/chat/completions").raw._pool is a  # scheme and host: any case
    assert server.connections == 1
    adapter.close()
    assert _post(adapter, f"{first}/v1/chat/completions").raw._pool is not a
    assert server.connections == 2
    adapter.close()


def test_a_response_reads_through_a_small_buffer_and_gives_its_socket_back(server):
    """A response lives as long as its call (a stream's: minutes), and so does its read buffer: 2 KB, not
    http.client's 8 KB. Closing the connection closes the socket."""
    import sys

    adapter = PooledAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    url = f"{server.url}/v1/chat/completions"
    streamed = adapter.send(requests.Request("POST", url, data=b"{}").prepare(), stream=True, timeout=(2, 5))
    connection = streamed.raw.connection
    assert 2048 <= sys.getsizeof(connection.reader) < 4096  # the buffer counts in a reader's size
    sock = connection.sock
    assert streamed.raw.read() == b'{"ok": true}'
    assert streamed.raw.connection is None  # read to its end: back in the pool
    connection.close()
    assert sock.fileno() == -1  # no reader left holding it open
    adapter.close()


def test_a_provider_request_body_takes_its_own_size():
    """orjson's bytes keep the 4 KB buffer they were written into; the request body, kept for the call's
    life, is copied to its size."""
    import tracemalloc

    from gateway.providers.base import UpstreamRequest, _prepared

    upstream = UpstreamRequest("http://provider/v1/chat/completions", {}, {"model": "m", "messages": []})
    tracemalloc.start()
    try:
        bodies = [_prepared(upstream).body for _ in range(100)]
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bodies[0] == b'{"model":"m","messages":[]}'
    assert size < 100 * 1024  # 100 requests; orjson's own bytes: 400 KB


def test_a_provider_response_does_not_keep_the_request_it_answered(server):
    """A stream's response lives for minutes; the request it answered (headers, body) is not kept with it."""
    from gateway.providers import get_provider
    from gateway.providers.base import UpstreamRequest

    provider = get_provider("openai")
    url = f"{server.url}/v1/chat/completions"
    response = provider.send(UpstreamRequest(url, {"Authorization": "Bearer k"}, {"model": "m"}), stream=True)
    assert response.request is None
    assert response.raw.read() == b'{"ok": true}'
    response.close()


def test_a_response_answers_header_lookups_in_any_case_without_a_copy(server):
    adapter = PooledAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    url = f"{server.url}/v1/chat/completions"
    response = _post(adapter, url)
    assert response.headers["content-type"] == response.headers["Content-Type"] == "application/json"
    assert "CONTENT-LENGTH" in response.headers and response.headers.get("x-absent") is None
    assert response.status_code == 200 and response.reason == "OK" and response.url == url
    assert response.headers is response.raw.headers  # urllib3's, not a second dictionary per response
    adapter.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://h:1/v1/chat?x=1",
        "http://h:1",
        "http://h:1?x=1",
        "https://h/v1/a/b",
        "http://[::1]:80/p?a=b&c=d",
    ],
)
def test_the_request_line_path_is_the_one_requests_would_send(url):
    prepared = requests.Request("POST", url).prepare()
    expected = requests.adapters.HTTPAdapter().request_url(prepared, {})
    assert PooledAdapter().request_url(prepared, {}) == expected
