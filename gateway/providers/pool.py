"""Connections to providers: kept alive, checked for reuse without a trip through the event loop, and
written to once per request.

Before it reuses a pooled connection, urllib3 asks whether the provider has closed it meanwhile: a poll of
the socket with a zero timeout. Under gevent that poll is gevent's, which registers watchers and switches to
the event loop even with a zero timeout — 4 % of a chat completion's CPU at 32 connections (py-spy). The
operating system's poll() with a zero timeout answers the same question in one system call and never
blocks, so the pools here use it (and so does any process without gevent: it is then the same function).

requests finds the pool for a request by parsing its URL and building urllib3's pool key on every call
(2 % of a chat completion's CPU); the adapter here remembers the pool per origin.

urllib3 writes a request in two system calls, the head and then the body, so the provider gets two TCP
segments for every call. Here a body up to 64 KB leaves with its head in one write (larger ones as before,
rather than copied).

A response reads its socket through a buffer of 2 KB rather than http.client's 8 KB: the buffer lives as
long as the response, and a gateway holding 1,000 streams holds 1,000 of them. Stream events arrive a few
hundred bytes at a time; larger reads (a whole body, a long chunk) bypass the buffer anyway.
"""

from __future__ import annotations

import http.client
import select

from gevent.monkey import get_original
from requests import Response
from requests.adapters import HTTPAdapter
from requests.utils import get_encoding_from_headers, select_proxy
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

_poll = get_original("select", "poll")  # select.poll itself where gevent has not patched it
_JOIN_MAX = 64 * 1024  # a body up to this size is sent with the request's head
_MAX_REMEMBERED = 16  # origins whose pool an adapter remembers (a provider has one or two)
_READ_BUFFER = 2048  # bytes of a response's read buffer


def still_open(sock) -> bool:
    """An idle keep-alive socket is still usable when nothing is readable on it: a readable idle socket was
    closed by the other end (end of file, reset) or holds bytes no request asked for. urllib3's own test."""
    poller = _poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class _ProviderResponse(http.client.HTTPResponse):
    """http.client's response, reading through a small buffer."""

    def __init__(self, sock, *args, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # the 8 KB reader http.client opened: freed now, and no longer counted on the socket
        self.fp = sock.makefile("rb", _READ_BUFFER)


class _ProviderConnection:
    """For urllib3's connection classes: `is_connected` with the system's poll; and the head that
    `endheaders` would send is held, and sent with the first piece of body that follows (or alone, before
    the response is read)."""

    response_class = _ProviderResponse
    _holding = False
    _head: bytes | None = None

    @property
    def is_connected(self) -> bool:
        return self.sock is not None and still_open(self.sock)

    def endheaders(self, message_body=None, *, encode_chunked=False) -> None:
        if message_body is not None:
            return super().endheaders(message_body, encode_chunked=encode_chunked)
        if self.sock is None:
            self.connect()  # as the head's send would have: connection errors surface at the same step
        self._holding = True
        try:
            super().endheaders(encode_chunked=encode_chunked)
        finally:
            self._holding = False

    def send(self, data) -> None:
        if self._holding:
            self._head = bytes(data)
            return
        head, self._head = self._head, None
        if head is not None:
            if isinstance(data, bytes | bytearray) and len(data) <= _JOIN_MAX:
                data = head + data
            else:
                super().send(head)
        super().send(data)

    def getresponse(self):
        head, self._head = self._head, None
        if head is not None:  # a request without a body
            super().send(head)
        return super().getresponse()


class _Connection(_ProviderConnection, HTTPConnection):
    pass


class _TLSConnection(_ProviderConnection, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class PooledAdapter(HTTPAdapter):
    """requests' transport adapter, with the pools above for direct connections (through a proxy, urllib3's
    own)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        self._pools: dict[tuple, HTTPConnectionPool] = {}

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if proxies and select_proxy(request.url, proxies):
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (_origin(request.url), verify, cert)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # not yet asked for, or closed since
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            if len(self._pools) >= _MAX_REMEMBERED:
                self._pools.clear()
            self._pools[key] = pool
        return pool

    def build_response(self, req, resp) -> Response:
        """requests' response, without what providers' answers never need and every call paid for: a
        case-insensitive copy of the headers (urllib3's are case-insensitive already, and a stream's
        response keeps them for minutes) and a search for cookies to store."""
        response = Response()
        response.status_code = resp.status
        response.headers = resp.headers
        response.encoding = get_encoding_from_headers(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        """Drop every pool, so that no connection is reused after it (the pool manager only forgets its
        own)."""
        self._pools.clear()
        super().close()


def _origin(url: str) -> str:
    """ "scheme://host:port" of a URL ("https://api.openai.com/v1/chat" -> "https://api.openai.com")."""
    scheme, _, rest = url.partition("://")
    return scheme.lower() + "://" + rest.split("/", 1)[0].split("?", 1)[0].lower()
