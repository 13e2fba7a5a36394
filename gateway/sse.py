"""Server-sent events: an incremental decoder for upstream streams and the encoder for our own.

The decoder takes bytes split anywhere (even inside a CRLF) and yields whole events; lines end with CR, LF
or CRLF, `:` lines are comments, several `data:` lines join with a newline, and a blank line dispatches.
Work per chunk is proportional to the chunk, never to what came before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class SSEEvent:
    data: bytes
    event: str | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._partial = b""
        self._pieces: list[bytes] = []  # a long line arriving in many pieces: joined once, when it ends
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if b"\n" not in chunk and b"\r" not in chunk and not self._partial.endswith(b"\r"):
            if chunk:
                self._pieces.append(chunk)
            return []
        if self._pieces:
            self._pieces.append(chunk)
            chunk = b"".join(self._pieces)
            self._pieces = []
        buffer = self._partial + chunk
        if buffer.endswith(b"\r"):
            # a CR may be the first half of a CRLF: wait for the next byte before deciding
            buffer, self._partial = buffer[:-1], b"\r"
        else:
            self._partial = b""
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._partial = lines.pop() + self._partial
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """The body ended: dispatch what is pending, as clients do."""
        pending = self._partial.strip(b"\r") or self._pieces
        events = self.feed(b"\n") if pending else []
        if self._data:
            events.append(self._dispatch())
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._dispatch() if self._data or self._event is not None else None
        if line[0] == 0x3A:  # ':' comment
            return None
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        return None

    def _dispatch(self) -> SSEEvent:
        event = SSEEvent(data=b"\n".join(self._data), event=self._event)
        self._data = []
        self._event = None
        return event


def encode(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"
