"""What every provider adapter is: four translations, plus the pooled HTTP transport they share.

An adapter builds the upstream request from an OpenAI request, parses the upstream response into an OpenAI
completion, turns the upstream stream into OpenAI chunks, and maps upstream errors into the envelope.
Nothing else: no logging, pricing or limits inside adapters.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
import requests
from requests.structures import CaseInsensitiveDict

from gateway.errors import GatewayError, UpstreamError
from gateway.providers.pool import PooledAdapter
from gateway.sse import SSEDecoder, SSEEvent
from gateway.usage import Usage
from gateway.validation import ChatRequest

# Upstream headers that mean the same thing to an OpenAI client, passed on with errors.
_PASSED_HEADERS = ("retry-after", "retry-after-ms")
_READ_SIZE = 64 * 1024
_FINISH_SECONDS = 1.0  # to read the body's end after the last event
_FINISH_EVENTS = 8


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    json: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Target:
    """What the adapter needs to know of the model it calls."""

    model: str  # the upstream model name
    max_output_tokens: int | None = None  # from the catalogue: the default where a provider requires one


@dataclass(slots=True)
class Completion:
    """A parsed non-stream answer: the OpenAI body to send, and the usage it reports (None: none)."""

    body: dict[str, Any]
    usage: Usage | None


class Provider:
    name: str = ""

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
    ):
        self.name = name
        self.api_key = api_key
        self.base_url = base_url
        self.timeout = (connect_timeout, read_timeout)
        # requests' transport adapter, used directly: keep-alive connection pooling without a Session's
        # per-call cookie jar, environment scan and redirect handling. (Proxy variables are read once.)
        self.adapter = PooledAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.proxies = requests.utils.get_environ_proxies(base_url)

    def close(self) -> None:
        self.adapter.close()

    # --- translations: each adapter implements these -------------------------------------------------
    def build_request(self, request: ChatRequest, target: Target) -> UpstreamRequest:
        raise NotImplementedError

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> Completion:
        raise NotImplementedError

    def translate_stream(self, events: Iterator[SSEEvent], request: ChatRequest) -> Iterator[dict[str, Any]]:
        """OpenAI chunks, in order; a chunk with `usage` set carries the final usage."""
        raise NotImplementedError

    def map_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        raise NotImplementedError

    # --- transport ----------------------------------------------------------------------------------
    def send(self, upstream: UpstreamRequest, *, stream: bool) -> requests.Response:
        """POST the request; an error status or a transport failure raises the client-facing error."""
        request = _prepared(upstream)
        try:
            response = self.adapter.send(request, stream=stream, timeout=self.timeout, proxies=self.proxies)
            response.request = None  # sent: its headers and body need not live as long as a stream does
        except requests.Timeout as exc:
            raise UpstreamError(
                f"The {self.name} provider did not answer in time.", status=504, code="upstream_timeout"
            ) from exc
        except requests.RequestException as exc:
            raise UpstreamError(
                f"Could not reach the {self.name} provider.", status=502, code="upstream_unreachable"
            ) from exc
        if response.status_code >= 400:
            try:
                body = response.content
            except requests.RequestException:
                body = b""
            finally:
                response.close()
            raise self.scrub(self.map_error(response.status_code, body, response.headers))
        return response

    def read_json(self, response: requests.Response) -> dict[str, Any]:
        try:
            data = orjson.loads(response.content)
        except requests.Timeout as exc:
            raise UpstreamError(
                f"The {self.name} provider did not answer in time.", status=504, code="upstream_timeout"
            ) from exc
        except (requests.RequestException, orjson.JSONDecodeError) as exc:
            raise UpstreamError(
                f"The {self.name} provider sent an answer that is not valid JSON.", code="upstream_malformed"
            ) from exc
        if not isinstance(data, dict):
            raise UpstreamError(
                f"The {self.name} provider sent an unexpected answer.", code="upstream_malformed"
            )
        return data

    def decode_event(self, data: bytes) -> dict[str, Any]:
        """One stream event's JSON object (a one-element array is unwrapped: Gemini without alt=sse)."""
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise self._malformed_event() from exc
        if isinstance(event, list) and len(event) == 1:
            event = event[0]
        if not isinstance(event, dict):
            raise self._malformed_event()
        return event

    def _malformed_event(self) -> UpstreamError:
        message = f"The {self.name} provider sent a malformed stream event."
        return UpstreamError(message, code="upstream_malformed")

    def events(self, response: requests.Response, on_wait: Callable[[float], None]) -> Iterator[SSEEvent]:
        """The upstream body as SSE events, as the bytes arrive; `on_wait` learns the time spent waiting."""
        decoder = SSEDecoder()
        arriving = _arriving(response.raw)
        clock = time.perf_counter
        try:
            while True:
                started = clock()
                chunk = next(arriving, None)
                on_wait(clock() - started)
                if chunk is None:
                    break
                yield from decoder.feed(chunk)
        except Exception as exc:  # urllib3's read and protocol errors, timeouts, resets
            raise UpstreamError(
                f"The connection to the {self.name} provider failed mid-stream.",
                code="upstream_stream_broken",
            ) from exc
        yield from decoder.close()

    def finish_body(self, response: requests.Response, events: Iterator[SSEEvent]) -> None:
        """After the provider's end event ([DONE], message_stop): read the rest of the body — its terminating
        chunk — so that the connection goes back to the pool. Closed unread, urllib3 drops it and the next
        stream pays a new TCP and TLS handshake. A provider that sends more than a few more events, or
        stalls, loses the connection instead of holding the client."""
        connection = response.raw.connection
        if connection is None or connection.sock is None:
            return
        connection.sock.settimeout(_FINISH_SECONDS)  # set again by the pool on its next request
        try:
            for _ in itertools.islice(events, _FINISH_EVENTS):
                pass
        except GatewayError:
            pass  # the connection is dropped on close, as before

    def scrub(self, error: GatewayError) -> GatewayError:
        """A provider key never reaches a client: remove it from anything an upstream said."""
        if self.api_key and self.api_key in error.message:
            error.message = error.message.replace(self.api_key, "***")
        return error

    @staticmethod
    def passed_headers(headers) -> dict[str, str]:
        return {name: headers[name] for name in _PASSED_HEADERS if name in headers}


def _arriving(raw) -> Iterator[bytes]:
    """Body bytes as they arrive: chunk by chunk, or one socket read at a time without chunking."""
    if raw.chunked:
        yield from raw.stream(_READ_SIZE, decode_content=True)
        return
    while chunk := raw.read1(_READ_SIZE, decode_content=True):
        yield chunk


def _prepared(upstream: UpstreamRequest) -> requests.PreparedRequest:
    """The request for requests' adapter, built directly: the URL, headers and JSON body are ours and
    already well-formed, so requests' general preparation (URL re-parsing, IDNA, hooks) is not needed."""
    # orjson's bytes keep the 4 KB it was written into, however short; this one lives as long as the call
    # (a stream's: minutes), so it is copied to its own size.
    body = memoryview(orjson.dumps(upstream.json)).tobytes()
    request = requests.PreparedRequest()
    request.method = "POST"
    request.url = f"{upstream.url}?{urlencode(upstream.params)}" if upstream.params else upstream.url
    request.headers = CaseInsensitiveDict(upstream.headers)
    request.headers["Content-Length"] = str(len(body))
    request.body = body
    request.hooks = {"response": []}
    return request
