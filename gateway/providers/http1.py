"""HTTP/1.1 to the providers: keep-alive connections, one write per request, a small response reader.

requests' adapter hands a pool `urlopen(...)` and reads what it returns as urllib3's response. Through
urllib3 and http.client that took about 800 Python calls per request (the head built a header at a time,
the answer's head parsed by the email package, Retry and Timeout objects, two response objects). The pool
here answers the same `urlopen` call, and its response is the part of urllib3's that requests and the
adapters read: `status`, `reason`, `headers`, `chunked`, `connection`, `read`, `read1`, `stream`,
`release_conn`, `close`. Its errors are urllib3's, so requests maps them as before. CPU per provider call
(`python -m bench.transport`, 2-core machine): 0.60 ms through requests' stock adapter, 0.18 ms through
this one, 0.06 ms for a bare socket.

What a provider's API needs and this does: HTTPS with the certificate checked, bodies framed by
Content-Length, chunked or the connection's end, gzip and deflate (we ask for none: "Accept-Encoding:
identity"), keep-alive as HTTP/1.1 says, interim 1xx answers skipped. Not done, and not needed by a JSON
API: "Expect: 100-continue", upgrades, pipelining. Proxies stay with urllib3 (gateway/providers/pool.py).

- Before reusing a pooled connection, it is checked with the operating system's poll() and a zero timeout
  (still_open). Under gevent, gevent's poll switches to the event loop even with a zero timeout.
- A body up to 64 KB leaves with its head in one write (one TCP segment); larger ones after it, not copied.
- A response reads its socket through a 2 KB buffer: it lives as long as the response, and a gateway
  holding 1,000 streams holds 1,000 of them. Larger reads bypass it.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import ssl
import zlib
from collections.abc import Iterator

from gevent.monkey import get_original
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProtocolError, ReadTimeoutError, SSLError
from urllib3.util import Timeout, parse_url

log = logging.getLogger(__name__)
_poll = get_original("select", "poll")  # select.poll itself where gevent has not patched it
_JOIN_MAX = 64 * 1024  # a body up to this size is sent with the request's head
_READ_BUFFER = 2048  # bytes of a response's read buffer
_MAX_LINE = 65536  # longest status, header or chunk-size line accepted
_MAX_HEADERS = 100
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_STATUS = frozenset({204, 304})
_USER_AGENT = "neurometric"
_UNSAFE_PATH = re.compile("[\x00-\x20\x7f]")  # as http.client refuses them
_UNSAFE_HEADER = re.compile("[\r\n\x00]")


def still_open(sock) -> bool:
    """An idle keep-alive socket is still usable when nothing is readable on it: a readable idle socket was
    closed by the other end (end of file, reset) or holds bytes no request asked for. urllib3's own test."""
    poller = _poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class Connection:
    """A socket to the provider and the buffered reader of its answers."""

    __slots__ = ("sock", "reader")

    def __init__(self, sock):
        self.sock = sock
        self.reader = sock.makefile("rb", _READ_BUFFER)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self.reader.close()
            sock.close()


class Pool:
    """Idle keep-alive connections to one origin (scheme, host, port), most recently used first. More
    connections than `maxsize` may be open at once; those beyond it are closed when their answer is read.

    `cert_reqs`, `ca_certs`, `ca_cert_dir`, `cert_file` and `key_file` are set by requests' adapter before
    each request (`HTTPAdapter.cert_verify`), as on urllib3's pools."""

    def __init__(self, url: str, maxsize: int):
        parsed = parse_url(url)
        self.scheme = (parsed.scheme or "http").lower()
        self.host = parsed.host or ""
        self.port = parsed.port or _DEFAULT_PORTS[self.scheme]
        default = self.port == _DEFAULT_PORTS[self.scheme]
        self.host_header = self.host if default else f"{self.host}:{self.port}"
        self.maxsize = maxsize
        self.idle: list[Connection] = []
        self.closed = False
        self.cert_reqs: str | None = "CERT_REQUIRED"
        self.ca_certs: str | None = None
        self.ca_cert_dir: str | None = None
        self.cert_file: str | None = None
        self.key_file: str | None = None
        self._tls: tuple[tuple, ssl.SSLContext] | None = None

    def urlopen(self, method: str, url: str, body=None, headers=None, *, timeout=None, chunked=False, **_):
        """Send one request (`url` is the path and query) and read the head of its answer. The keyword
        arguments are those of requests' adapter; redirects and retries are never taken (it asks for none),
        and the body is always left to read (it asks preload_content=False)."""
        if chunked or not isinstance(body, bytes | bytearray | memoryview | str | None):
            raise TypeError("a provider request's body is bytes")
        if isinstance(body, str):
            body = body.encode()
        timeout = timeout if isinstance(timeout, Timeout) else Timeout.from_float(timeout)
        read_timeout = Timeout.resolve_default_timeout(timeout.read_timeout)
        head = self._head(method, url, headers or {}, body)
        connection = self._idle_connection() or self._connect(url, timeout.connect_timeout)
        try:
            connection.sock.settimeout(read_timeout)
            if body is not None and len(body) <= _JOIN_MAX:
                connection.sock.sendall(head + body)
            else:
                connection.sock.sendall(head)
                if body:
                    connection.sock.sendall(body)
            response = Response.read_head(self, connection, method)
        except BaseException:
            connection.close()
            raise
        if log.isEnabledFor(logging.DEBUG):  # as urllib3 logged it; never the query, which may hold a key
            path = url.split("?", 1)[0]
            log.debug('%s://%s "%s %s" %s', self.scheme, self.host_header, method, path, response.status)
        return response

    def put(self, connection: Connection) -> None:
        """An answered connection, back in the pool (closed if the pool is full or closed)."""
        if self.closed or len(self.idle) >= self.maxsize:
            connection.close()
        else:
            self.idle.append(connection)

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()

    def _idle_connection(self) -> Connection | None:
        while True:
            try:
                connection = self.idle.pop()  # atomic: threads (runserver, Celery) may share a pool
            except IndexError:
                return None
            if still_open(connection.sock):
                return connection
            connection.close()

    def _connect(self, url: str, connect_timeout) -> Connection:
        connect_timeout = Timeout.resolve_default_timeout(connect_timeout)
        try:
            sock = socket.create_connection((self.host, self.port), connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.scheme == "https":
                    sock = self._tls_context().wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        except TimeoutError as exc:
            reason = ConnectTimeoutError(self, f"Connection to {self.host} timed out.")
            raise MaxRetryError(self, url, reason) from exc  # requests: ConnectTimeout
        except ssl.SSLError as exc:  # the certificate did not verify, or no protocol in common
            raise SSLError(f"TLS with {self.host} failed: {exc}") from exc  # requests: SSLError
        log.debug("New connection to %s://%s", self.scheme, self.host_header)
        return Connection(sock)

    def _tls_context(self) -> ssl.SSLContext:
        settings = (self.cert_reqs, self.ca_certs, self.ca_cert_dir, self.cert_file, self.key_file)
        if self._tls is None or self._tls[0] != settings:
            context = ssl.create_default_context(cafile=self.ca_certs, capath=self.ca_cert_dir)
            if self.cert_reqs == "CERT_NONE":  # requests' verify=False
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
            context.set_alpn_protocols(["http/1.1"])
            self._tls = (settings, context)
        return self._tls[1]

    def _head(self, method: str, path: str, headers, body) -> bytes:
        if _UNSAFE_PATH.search(path):
            raise ValueError(f"The provider request's path contains a control character or space: {path!r}")
        lines = [f"{method} {path} HTTP/1.1", ""]  # the second: Host, where the request has none
        given = set()
        for name, value in headers.items():
            if _UNSAFE_HEADER.search(name) or _UNSAFE_HEADER.search(value):
                raise ValueError(f"The provider request's header {name!r} contains a line break.")
            given.add(name.lower())
            lines.append(f"{name}: {value}")
        if "host" in given:
            del lines[1]
        else:
            lines[1] = f"Host: {self.host_header}"
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")
        if "user-agent" not in given:
            lines.append(f"User-Agent: {_USER_AGENT}")
        if "content-length" not in given and (body is not None or method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(body) if body is not None else 0}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")


class Response:
    """An answer being read: its head parsed, its body read on demand. When the whole body has been read,
    the connection goes back to its pool (or is closed, if the provider said it would close it)."""

    chunked = False

    def __init__(self, pool: Pool, connection: Connection, status: int, reason: str, headers, version: int):
        self._pool = pool
        self._connection: Connection | None = connection
        self.status = status
        self.reason = reason
        self.headers = headers
        self.version = version  # 11 or 10, as urllib3 gives it
        self._remaining: int | None = None  # bytes of body left, None: until the connection's end
        self._chunks: Iterator[bytes] | None = None
        self._done = False
        self._decoder = _decoder(headers.get("content-encoding"))
        connection_header = (headers.get("connection") or "").lower()
        self._reusable = "close" not in connection_header and (
            version == 11 or "keep-alive" in connection_header
        )

    @classmethod
    def read_head(cls, pool: Pool, connection: Connection, method: str) -> Response:
        with _Reading(pool):
            while True:
                status, reason, version = _status_line(connection.reader)
                headers = _header_block(connection.reader)
                if not 100 <= status < 200:
                    break  # 1xx: an interim answer (100 Continue, 103 Early Hints) before the real one
        response = cls(pool, connection, status, reason, headers, version)
        response._frame(method)
        return response

    def _frame(self, method: str) -> None:
        headers = self.headers
        if method == "HEAD" or self.status in _NO_BODY_STATUS:
            self._remaining = 0
        elif "chunked" in (headers.get("transfer-encoding") or "").lower():
            self.chunked = True
            self._chunks = self._read_chunks()
        elif (length := headers.get("content-length")) is not None:
            lengths = {value.strip() for value in length.split(",")}
            if len(lengths) != 1 or not (value := lengths.pop()).isdigit():
                raise ProtocolError(f"Invalid Content-Length in the provider's answer: {length!r}")
            self._remaining = int(value)
        else:
            self._reusable = False  # the body ends when the connection does
        if self._remaining == 0:
            self._finish()

    # --- urllib3's response, as far as requests and the adapters read it ----------------------------
    @property
    def connection(self) -> Connection | None:
        return self._connection

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        """Up to `amt` bytes of body (a chunk at most when chunked; all of it without `amt`); b"" once it
        has all been read."""
        if amt is None:
            return b"".join(self.stream(_JOIN_MAX, decode_content))
        return next(self.stream(amt, decode_content), b"")

    def read1(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        """What is there to read now, up to `amt` bytes (waiting for some if nothing is); b"" at the end."""
        return next(self.stream(amt, decode_content, whole=False), b"")

    def stream(self, amt: int | None = 65536, decode_content: bool = True, *, whole=True) -> Iterator[bytes]:
        """The body, piece by piece as it arrives: a chunk at a time when chunked, else up to `amt` bytes
        (`whole`: waiting for all `amt`, else what one read gives). Never an empty piece: compressed bytes
        that decode to nothing yet are followed by more."""
        amt = amt or _JOIN_MAX
        while not self._done:
            data = next(self._chunks, b"") if self.chunked else self._raw(amt, whole=whole)
            data = self._decode(data, decode_content)
            if data:
                yield data
        if decode_content and self._decoder is not None:  # what the decompressor still holds
            tail, self._decoder = self._decoder.flush(), None
            if tail:
                yield tail

    def release_conn(self) -> None:
        """Done with the answer: its connection is pooled if the body was read to its end, else closed."""
        if self._connection is not None and not self._done:
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        self._done = True
        if connection is not None:
            connection.close()

    # --- reading --------------------------------------------------------------------------------------
    def _raw(self, amt: int, *, whole: bool) -> bytes:
        """Up to `amt` body bytes, not chunked: all of them (whole) or what one read gives."""
        if self._done:
            return b""
        if self._remaining is not None:
            amt = min(amt, self._remaining)
        reader = self._connection.reader
        with _Reading(self._pool, self):
            data = reader.read(amt) if whole else reader.read1(amt)
        if self._remaining is None:
            if not data:
                self._finish()
            return data
        if not data:
            self.close()
            raise ProtocolError(f"Connection broken: {self._remaining} bytes of the answer never came")
        self._remaining -= len(data)
        if self._remaining == 0:
            self._finish()
        return data

    def _read_chunks(self) -> Iterator[bytes]:
        reader = self._connection.reader
        while True:
            with _Reading(self._pool, self):
                line = reader.readline(_MAX_LINE + 1)
                if not line.endswith(b"\n"):
                    raise ProtocolError("Connection broken: the answer ended inside a chunk's size")
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(
                        f"Invalid chunk size in the provider's answer: {line[:40]!r}"
                    ) from None
                if size == 0:
                    _header_block(reader)  # trailers, read and dropped
                    self._finish()
                    return
                data = reader.read(size)
                if len(data) < size or reader.read(2) not in (b"\r\n", b"\n"):
                    raise ProtocolError("Connection broken: the answer ended inside a chunk")
            yield data

    def _finish(self) -> None:
        connection, self._connection = self._connection, None
        self._done = True
        if connection is not None:
            if self._reusable:
                self._pool.put(connection)
            else:
                connection.close()

    def _decode(self, data: bytes, decode_content: bool) -> bytes:
        if not decode_content or self._decoder is None or not data:
            return data
        try:
            return self._decoder.decompress(data)
        except zlib.error as exc:
            self.close()
            raise ProtocolError(f"The provider's answer could not be decompressed: {exc}") from exc


class _Reading:
    """Around a read: a socket timeout is urllib3's read timeout, a broken connection its protocol error
    (requests maps both). Mid-body, the response is closed: its connection is never reusable. (While the
    head is read there is no response yet; `Pool.urlopen` closes the connection.)"""

    __slots__ = ("pool", "response")

    def __init__(self, pool: Pool, response: Response | None = None):
        self.pool = pool
        self.response = response

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None:
            return False
        if self.response is not None:
            self.response.close()
        if isinstance(exc, TimeoutError):
            raise ReadTimeoutError(self.pool, None, "Read timed out.") from exc
        if isinstance(exc, OSError | ValueError):  # ValueError: a read of a file closed meanwhile
            raise ProtocolError(f"Connection broken: {exc!r}", exc) from exc
        return False


def _status_line(reader) -> tuple[int, str, int]:
    line = reader.readline(_MAX_LINE + 1)
    if not line:
        raise ProtocolError("Connection aborted.", "the provider closed the connection without an answer")
    parts = line.decode("latin-1").rstrip("\r\n").split(None, 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].isdigit():
        raise ProtocolError("Connection aborted.", f"not an HTTP/1.x status line: {line[:60]!r}")
    status = int(parts[1])
    if not 100 <= status <= 999:
        raise ProtocolError("Connection aborted.", f"invalid status {status}")
    return status, parts[2] if len(parts) > 2 else "", 11 if parts[0] == "HTTP/1.1" else 10


def _header_block(reader) -> HTTPHeaderDict:
    headers = HTTPHeaderDict()
    last = None
    for _ in range(_MAX_HEADERS + 1):
        line = reader.readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            return headers
        if len(line) > _MAX_LINE:
            raise ProtocolError("Connection aborted.", "a header line of the answer is too long")
        text = line.decode("latin-1").rstrip("\r\n")
        if text[0] in " \t" and last is not None:  # an obsolete folded continuation
            value = headers.pop(last)
            headers[last] = f"{value} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError("Connection aborted.", f"invalid header line: {line[:60]!r}")
        headers.add(name, value.strip())
        last = name
    raise ProtocolError("Connection aborted.", f"more than {_MAX_HEADERS} headers in the answer")


def _decoder(encoding: str | None):
    """A decompressor for the answer's Content-Encoding, or None (none, identity or one we do not know,
    whose bytes pass through as urllib3 passes them)."""
    encoding = (encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None
