"""The response cache: an identical request from the same user, within its TTL, is answered from the cache.

Opt in per key (`ApiKey.cache_ttl_seconds`; null is off) or per request with `x-neurometric-cache: true`
and `x-neurometric-cache-ttl: <seconds>`. The headers win: `x-neurometric-cache: false` turns the cache off
for one request; a TTL header alone turns it on with that TTL; `true` alone uses the key's TTL, else
RESPONSE_CACHE_DEFAULT_TTL_SECONDS. Every TTL is capped at RESPONSE_CACHE_MAX_TTL_SECONDS.

Identical means the same user and the same body as canonical JSON (sorted keys) without `stream`,
`stream_options` and `user`: a streamed and a non-streamed request share their answer. The user's id is
part of the key, so an answer never crosses from one user to another (two keys of one user share it).

Stored: the final non-stream completion body, exactly as the client got it (a streamed answer is put
together from its chunks by `StreamAssembler`), for 200 answers only, whatever the finish reason, `n` or
temperature — the client opted in. It is stored after the answer was sent, so the first request pays
nothing for it. A hit answers with that body, or replays it as a stream in OpenAI's framing
(`replay_chunks`); the body keeps the original usage numbers.

Backends: with REDIS_URL, Redis (SETEX; key `nm:cache:{user_id}:{sha256}`); without it, the
`ResponseCacheEntry` table: an expired row is ignored when read and replaced when stored, and expired rows
are deleted at most once a minute per process, after a store. Like the limits, the cache fails open:
when Redis or the database cannot be reached, requests simply go to the provider.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.utils import timezone

from gateway.db import released
from gateway.errors import InvalidRequest
from gateway.sse import DONE, encode

if TYPE_CHECKING:
    from gateway.auth import KeyPrincipal
    from gateway.metering import Call
    from gateway.validation import ChatRequest

log = logging.getLogger(__name__)

IGNORED_FIELDS = frozenset({"stream", "stream_options", "user"})  # do not change the answer
PURGE_EVERY_SECONDS = 60.0
_REDIS_RETRY_SECONDS = 5.0
_ON, _OFF = frozenset({"true"}), frozenset({"false"})


@dataclass(frozen=True, slots=True)
class CacheSlot:
    """Where one request's answer lives in the cache, and how long it is kept there."""

    user_id: int
    digest: str  # SHA-256 of the request's canonical JSON
    ttl: int  # seconds

    @property
    def key(self) -> str:
        return f"{self.user_id}:{self.digest}"

    def get(self) -> bytes | None:
        """The cached completion body (JSON bytes), or None on a miss."""
        return get_response_cache().get(self)

    def put(self, body: bytes | dict) -> None:
        """Store a 200 answer's completion body. Never raises into serving."""
        try:
            get_response_cache().put(self, body if isinstance(body, bytes) else orjson.dumps(body))
        except Exception:
            log.exception("Could not store an answer in the response cache")


def cache_slot(meta: dict, principal: KeyPrincipal, chat: ChatRequest) -> CacheSlot | None:
    """The request's place in the cache, or None when caching is off for it."""
    ttl = cache_ttl(meta, principal.cache_ttl_seconds)
    if ttl is None:
        return None
    return CacheSlot(principal.user_id, request_digest(chat.body), ttl)


def cache_ttl(meta: dict, key_ttl: int | None) -> int | None:
    """Seconds to cache this request's answer (None: off), from its headers, else its key."""
    switch = meta.get("HTTP_X_NEUROMETRIC_CACHE")
    ttl_header = meta.get("HTTP_X_NEUROMETRIC_CACHE_TTL")
    if switch is not None:
        value = switch.strip().lower()
        if value in _OFF:
            return None
        if value not in _ON:
            raise InvalidRequest(
                f"Invalid x-neurometric-cache header {switch!r}: expected true or false.",
                code="invalid_header",
            )
    if ttl_header is not None:
        ttl = _seconds(ttl_header)
    elif switch is not None:
        ttl = key_ttl or settings.RESPONSE_CACHE_DEFAULT_TTL_SECONDS
    elif key_ttl:
        ttl = key_ttl
    else:
        return None
    return min(ttl, settings.RESPONSE_CACHE_MAX_TTL_SECONDS)


def _seconds(header: str) -> int:
    try:
        ttl = int(header.strip())
    except ValueError:
        ttl = 0
    if ttl < 1:
        raise InvalidRequest(
            f"Invalid x-neurometric-cache-ttl header {header!r}: expected a whole number of seconds, "
            f"at least 1 (at most {settings.RESPONSE_CACHE_MAX_TTL_SECONDS} is used).",
            code="invalid_header",
        )
    return ttl


def request_digest(body: dict[str, Any]) -> str:
    """SHA-256 of the body as canonical JSON (keys sorted at every level), without the fields that do not
    change the answer."""
    canonical = {name: value for name, value in body.items() if name not in IGNORED_FIELDS}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


# --- Backends ------------------------------------------------------------------------------------------
class RedisResponseCache:
    """Shared by every process and machine: one GET per lookup, one SETEX per store."""

    def __init__(self, url: str):
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._down_until = 0.0

    def get(self, slot: CacheSlot) -> bytes | None:
        return self._call(self.redis.get, f"nm:cache:{slot.key}")

    def put(self, slot: CacheSlot, body: bytes) -> None:
        self._call(self.redis.set, f"nm:cache:{slot.key}", body, slot.ttl)  # SET key body EX ttl

    def _call(self, method, *args):
        import redis

        if time.monotonic() < self._down_until:
            return None
        try:
            return method(*args)
        except redis.RedisError:
            self._down_until = time.monotonic() + _REDIS_RETRY_SECONDS
            log.exception("Redis is unreachable: the response cache is skipped (fail open)")
            return None


class DatabaseResponseCache:
    """The embedded default: the `ResponseCacheEntry` table."""

    def __init__(self):
        self._next_purge = 0.0

    def get(self, slot: CacheSlot) -> bytes | None:
        from gateway.models import ResponseCacheEntry

        try:
            with released():
                row = (
                    ResponseCacheEntry.objects.filter(key=slot.key).values_list("body", "expires_at").first()
                )
        except DatabaseError:
            log.exception("Could not read the response cache; answering from the provider")
            return None
        if row is None or row[1] <= timezone.now():
            return None  # an expired row is replaced by the next store, or deleted by the purge
        return bytes(row[0])

    def put(self, slot: CacheSlot, body: bytes) -> None:
        from gateway.models import ResponseCacheEntry

        now = timezone.now()
        entry = ResponseCacheEntry(
            key=slot.key,
            user_id=slot.user_id,
            body=body,
            created_at=now,
            expires_at=now + timedelta(seconds=slot.ttl),
        )
        with released():
            ResponseCacheEntry.objects.bulk_create(
                [entry],
                update_conflicts=True,
                unique_fields=["key"],
                update_fields=["body", "created_at", "expires_at"],
            )
            if time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                response_cache_purge()


def response_cache_purge() -> int:
    """Delete the expired entries of the database backend; returns how many."""
    from gateway.models import ResponseCacheEntry

    deleted, _ = ResponseCacheEntry.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


_cache: RedisResponseCache | DatabaseResponseCache | None = None


def get_response_cache() -> RedisResponseCache | DatabaseResponseCache:
    global _cache
    if _cache is None:
        _cache = RedisResponseCache(settings.REDIS_URL) if settings.REDIS_URL else DatabaseResponseCache()
    return _cache


def reset_response_cache(**kwargs) -> None:
    global _cache
    _cache = None


setting_changed.connect(reset_response_cache)


# --- Streams ---------------------------------------------------------------------------------------------
class StreamAssembler:
    """The final completion of a relayed stream, put together from its chunks as the SDK's stream helper
    does: content, refusal and tool-call arguments concatenated, per choice and tool-call index."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: dict) -> None:
        if not self._head:
            self._head = {
                key: chunk[key] for key in ("id", "created", "model", "system_fingerprint") if key in chunk
            }
        for choice in chunk.get("choices") or ():
            state = self._choices.setdefault(
                choice.get("index") or 0, {"content": [], "refusal": [], "tools": {}, "finish_reason": None}
            )
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                state["content"].append(delta["content"])
            if isinstance(delta.get("refusal"), str):
                state["refusal"].append(delta["refusal"])
            for fragment in delta.get("tool_calls") or ():
                tool = state["tools"].setdefault(
                    fragment.get("index") or 0, {"id": None, "type": "function", "name": [], "arguments": []}
                )
                tool["id"] = fragment.get("id") or tool["id"]
                tool["type"] = fragment.get("type") or tool["type"]
                function = fragment.get("function") or {}
                if function.get("name"):
                    tool["name"].append(function["name"])
                if function.get("arguments"):
                    tool["arguments"].append(function["arguments"])
            if choice.get("finish_reason"):
                state["finish_reason"] = choice["finish_reason"]

    def completion(self, usage: dict | None) -> dict:
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            tools = [
                {
                    "id": tool["id"],
                    "type": tool["type"],
                    "function": {"name": "".join(tool["name"]), "arguments": "".join(tool["arguments"])},
                }
                for _, tool in sorted(state["tools"].items())
            ]
            content = "".join(state["content"])
            message: dict[str, Any] = {
                "role": "assistant",
                "content": content if content or not tools else None,
                "refusal": "".join(state["refusal"]) or None,
            }
            if tools:
                message["tool_calls"] = tools
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": state["finish_reason"],
                }
            )
        return {
            "id": self._head.get("id"),
            "object": "chat.completion",
            "created": self._head.get("created"),
            "model": self._head.get("model"),
            "choices": choices,
            "usage": usage,
            "system_fingerprint": self._head.get("system_fingerprint"),
        }


def replay_chunks(body: dict, *, include_usage: bool, usage: dict | None) -> list[bytes]:
    """A cached completion as the stream OpenAI would have sent: per choice a role chunk, its content,
    its tool calls (a header fragment, then the arguments, indexes from 0) and its finish chunk; then the
    usage chunk when the client asked for `include_usage`, and `data: [DONE]`."""
    head: dict[str, Any] = {
        "id": body.get("id"),
        "object": "chat.completion.chunk",
        "created": body.get("created"),
        "model": body.get("model"),
    }
    if "system_fingerprint" in body:
        head["system_fingerprint"] = body["system_fingerprint"]

    def chunk(index: int, delta: dict, finish_reason: str | None = None, logprobs: Any = None) -> bytes:
        data = {
            **head,
            "choices": [
                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            data["usage"] = None
        return encode(data)

    chunks = []
    for position, choice in enumerate(body.get("choices") or ()):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        chunks.append(chunk(index, {"role": "assistant", "content": ""}))
        if isinstance(message.get("content"), str) and message["content"]:
            chunks.append(chunk(index, {"content": message["content"]}, logprobs=choice.get("logprobs")))
        if message.get("refusal"):
            chunks.append(chunk(index, {"refusal": message["refusal"]}))
        for number, tool in enumerate(message.get("tool_calls") or ()):
            function = tool.get("function") or {}
            opening = {
                "index": number,
                "id": tool.get("id"),
                "type": tool.get("type") or "function",
                "function": {"name": function.get("name") or "", "arguments": ""},
            }
            chunks.append(chunk(index, {"tool_calls": [opening]}))
            if function.get("arguments"):
                fragment = {"index": number, "function": {"arguments": function["arguments"]}}
                chunks.append(chunk(index, {"tool_calls": [fragment]}))
        chunks.append(chunk(index, {}, choice.get("finish_reason") or "stop"))
    if include_usage:
        chunks.append(encode({**head, "choices": [], "usage": usage}))
    chunks.append(DONE)
    return chunks


class ReplayStream:
    """The response body of a streamed hit. Ends the call once, however the client leaves."""

    def __init__(self, call: Call, chunks: list[bytes]):
        self._call = call
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        from gateway.metering import CLIENT_CLOSED

        status = CLIENT_CLOSED
        try:
            for chunk in self._chunks:
                self._call.first_token()
                yield chunk
            status = 200
        finally:
            self._call.finish(status)

    def close(self) -> None:
        from gateway.metering import CLIENT_CLOSED

        self._call.finish(CLIENT_CLOSED)  # no-op when the replay was sent whole
