"""Keep-alive connections to providers, checked for reuse without a trip through the event loop.

Before it reuses a pooled connection, urllib3 asks whether the provider has closed it meanwhile: a poll of
the socket with a zero timeout. Under gevent that poll is gevent's, which registers watchers and switches to
the event loop even with a zero timeout — 4 % of a chat completion's CPU at 32 connections (py-spy). The
operating system's poll() with a zero timeout answers the same question in one system call and never
blocks, so the pools here use it (and so does any process without gevent: it is then the same function).
"""

from __future__ import annotations

import select

from gevent.monkey import get_original
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

_poll = get_original("select", "poll")  # select.poll itself where gevent has not patched it


def still_open(sock) -> bool:
    """An idle keep-alive socket is still usable when nothing is readable on it: a readable idle socket was
    closed by the other end (end of file, reset) or holds bytes no request asked for. urllib3's own test."""
    poller = _poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class _Connection(HTTPConnection):
    @property
    def is_connected(self) -> bool:
        return self.sock is not None and still_open(self.sock)


class _TLSConnection(HTTPSConnection):
    @property
    def is_connected(self) -> bool:
        return self.sock is not None and still_open(self.sock)


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
