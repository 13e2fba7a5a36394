"""A local HTTP server for tests of the providers' HTTP client: it answers each request with the bytes a test
scripts — well-formed, chunked, compressed, cut short, or not HTTP at all — and counts its connections."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def json_answer(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return OK_HEAD + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


class ScriptedServer:
    """Reads each request (head and Content-Length body), then sends `answer(request)`; a None answer, or
    `close_after`, closes the connection. `closed` counts the connections it has closed."""

    def __init__(self, answer: Callable[[bytes], bytes | None]):
        self.answer = answer
        self.close_after = False
        self.connections = 0
        self.closed = 0
        self._closing = threading.Condition()
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer_each(conn)
        finally:
            with self._closing:
                self.closed += 1
                self._closing.notify_all()

    def wait_closed(self, count: int, timeout: float = 5.0) -> None:
        """Until the server has closed `count` connections: a client that reads an answer may otherwise
        write its next request before the server's thread has closed the connection it answered on."""
        with self._closing:
            if not self._closing.wait_for(lambda: self.closed >= count, timeout):
                raise AssertionError(f"{self.closed} connections closed, not {count}")

    def _answer_each(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader, contextlib.suppress(OSError):  # the client may reset a connection it gave up on
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + reader.read(length)
                self.requests.append(request)
                answer = self.answer(request)
                close_after = self.close_after  # as set when the request came, not when the client has read
                if answer is None:
                    return
                conn.sendall(answer)
                if close_after:
                    return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: close() alone would not
        self.listener.close()
