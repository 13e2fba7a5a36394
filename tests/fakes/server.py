"""A fast fake LLM provider: a minimal HTTP/1.1 server on asyncio streams.

Tests: ``fake = FakeProvider(port=0).start(); ...; fake.stop()`` (the loop runs in a daemon thread).
Benchmark: ``python -m tests.fakes.server --host 127.0.0.1 --port 9100 --delay-ms 500 --no-record``.
Behaviour is driven by `!directives` in the last user message, see ``tests/fakes/scripts.py``.
"""

import argparse
import asyncio
import itertools
import threading
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

import orjson

from tests.fakes import anthropic_format, gemini_format, openai_format
from tests.fakes.scripts import make_plan
from tests.fakes.wire import ABORT, Resp, json_resp

_INVALID = object()
_REASONS = {s.value: s.phrase for s in HTTPStatus} | {529: "Overloaded"}
_GEMINI = "/v1beta/models/"


class RecordedRequest(dict):
    """A recorded request: a dict that also allows attribute access (``r.json``, ``r["json"]``)."""

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(slots=True)
class Call:
    """One API call handed to a wire-format module."""

    body: dict
    model: str
    rid: str
    action: str  # "chat" | "generate" | "stream"
    query: dict


def _route(method: str, path: str, headers: dict):
    """-> (format module, action, model) or None."""
    if method == "POST":
        if path == "/v1/chat/completions":
            return openai_format, "chat", None
        if path == "/v1/messages":
            return anthropic_format, "chat", None
        if path.startswith(_GEMINI):
            model, _, verb = path[len(_GEMINI) :].rpartition(":")
            if model and verb in ("generateContent", "streamGenerateContent"):
                return gemini_format, "generate" if verb == "generateContent" else "stream", model
        return None
    if method == "GET":
        anthropic = "x-api-key" in headers and "authorization" not in headers
        if anthropic and path in ("/v1/models", "/v1/models/"):
            return anthropic_format, "models", None
        if path == "/v1/models" or path.startswith("/v1/models/"):
            return openai_format, "models", None
        if path in ("/v1beta/models", "/v1beta/models/"):
            return gemini_format, "models", None
    return None


def _head(status: int, headers, length: int | None, keep: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
    if not keep:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class FakeProvider:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, delay_ms: float = 0, record: bool = True):
        self.host, self.port, self.delay_ms, self.record = host, port, delay_ms, record
        self.requests: list[RecordedRequest] = []
        self._failures: dict[str, int] = {}  # `!fail-first` counters, per last-message text
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # ---- public API -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def last(self) -> RecordedRequest | None:
        return self.requests[-1] if self.requests else None

    def clear(self) -> None:
        """Forget recorded requests and `!fail-first` counters."""
        self.requests.clear()
        self._failures.clear()

    def start(self) -> "FakeProvider":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-provider", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake provider did not start")
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or not loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "FakeProvider":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def serve_forever(self) -> None:
        await self._listen()
        print(f"fake provider listening on {self.url}", flush=True)
        async with self._server:
            await self._server.serve_forever()

    # ---- lifecycle ----------------------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported to start()
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=1 << 22, backlog=4096, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- HTTP -------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            host, port = writer.get_extra_info("peername")[:2]
            peer = f"{host}:{port}"
            while await self._one_request(reader, writer, peer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly (this task is the connection's top level)
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one_request(self, reader, writer, peer: str) -> bool:
        """Serve one request; False when the connection must be closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await self._send(writer, json_resp(400, {"error": {"message": "bad request line"}}), False)
            return False
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        conn = headers.get("connection", "").lower()
        keep = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        else:
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
        try:
            return await self._handle(method, target, headers, body, writer, keep, peer)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug or an odd body: answer 500 and drop the connection
            traceback.print_exc()
            error = {
                "message": f"fake provider crashed: {exc!r}",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            await self._send(writer, json_resp(500, {"error": error}), False)
            return False

    async def _send(self, writer, resp: Resp, keep: bool, rid: str = "") -> bool:
        status, headers, body = resp
        if rid:
            headers.append(("x-request-id", "req_" + rid))
        writer.write(_head(status, headers, len(body), keep) + body)
        await writer.drain()
        return keep

    async def _handle(self, method, target, headers, body, writer, keep, peer) -> bool:
        path, _, qs = target.partition("?")
        query = dict(parse_qsl(qs, keep_blank_values=True)) if qs else {}
        data = None
        if body:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = _INVALID
        if self.record:
            self.requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    query=query,
                    headers=headers,
                    json=None if data is _INVALID else data,
                    body=body,
                    peer=peer,
                )
            )
        rid = f"fake{next(self._ids):08d}"
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        route = _route(method, path, headers)
        if route is None:
            error = {
                "message": f"Unknown route: {method} {path}",
                "type": "invalid_request_error",
                "param": None,
                "code": "not_found",
            }
            return await self._send(writer, json_resp(404, {"error": error}), keep, rid)
        fmt, action, model = route
        denied = fmt.check_auth(headers, query)
        if denied:
            return await self._send(writer, denied, keep, rid)
        if action == "models":
            return await self._send(writer, fmt.models(path), keep, rid)
        if not isinstance(data, dict):
            return await self._send(writer, fmt.error(400, "Request body must be a JSON object."), keep, rid)
        bad = fmt.validate(data)
        if bad:
            return await self._send(writer, bad, keep, rid)
        call = Call(data, model or str(data.get("model", "")), rid, action, query)
        plan = make_plan(
            fmt.last_user_text(data), fmt.prompt_tokens(data), fmt.max_tokens(data), data, self._failures
        )
        if plan.slow_ms:
            await asyncio.sleep(plan.slow_ms / 1000)
        stream = fmt.is_stream(data, call)
        if plan.disconnect and not stream:
            return False
        if plan.error:
            resp = fmt.error(plan.error, quota=plan.quota, retry_after=plan.retry_after)
            return await self._send(writer, resp, keep, rid)
        if stream:
            return await self._stream(writer, fmt.stream(call, plan), plan, keep, rid)
        if plan.malformed:
            broken = (200, [("content-type", "application/json")], b'{"not json')
            return await self._send(writer, broken, keep, rid)
        return await self._send(writer, fmt.complete(call, plan), keep, rid)

    async def _stream(self, writer, events, plan, keep: bool, rid: str) -> bool:
        headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("x-request-id", "req_" + rid),
            ("request-id", "req_" + rid),
        ]
        events = iter(events)
        first = next(events, None)  # a crash here still gets a proper 500 from _one_request
        writer.write(_head(200, headers, None, keep))
        delay = plan.chunk_delay_ms / 1000
        try:
            for event in itertools.chain((first,) if first is not None else (), events):
                if event is ABORT:
                    writer.transport.abort()
                    return False
                if delay and event is not first:
                    await asyncio.sleep(delay)
                writer.write(b"%x\r\n%b\r\n" % (len(event), event))
                await writer.drain()
                if plan.disconnect:
                    return False
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # headers already sent: drop the connection
            traceback.print_exc()
            writer.transport.abort()
            return False
        if plan.linger_ms:
            await asyncio.sleep(plan.linger_ms / 1000)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep


def _raise_fd_limit() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Neurometric fake LLM provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0, help="wait before answering every request")
    parser.add_argument("--no-record", action="store_true", help="do not keep requests in memory")
    args = parser.parse_args(argv)
    _raise_fd_limit()
    fake = FakeProvider(args.host, args.port, args.delay_ms, record=not args.no_record)
    try:
        asyncio.run(fake.serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
