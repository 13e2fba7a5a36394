"""From a model id to the provider that serves it, and the calls that go there — with retries and fallbacks.

Resolution: an id or alias in the catalogue wins (for a model served by several hosts, such as Llama, the
first configured host in LLAMA_HOSTS order); otherwise `provider/model` forces that provider and passes the
upstream name through, so models the catalogue does not know yet still work.

Retries: connection errors, timeouts, 429 and 5xx are retried with exponential backoff and jitter, honouring
`retry-after`, at most UPSTREAM_MAX_RETRIES times and within UPSTREAM_RETRY_BUDGET_SECONDS — and never once a
stream has started (a stream is only retried while opening it). Fallbacks: if a model still fails, the next
model of the request's `x-neurometric-fallbacks` list (or the key's default list) is tried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings

from gateway.catalog import ModelInfo, get_catalog
from gateway.errors import GatewayError, ModelNotFound
from gateway.metering import Call
from gateway.providers import get_provider, is_configured, known_providers
from gateway.providers.base import Completion, Provider, Target
from gateway.validation import ChatRequest

T = TypeVar("T")
MAX_FALLBACKS = 5
_FALLBACK_STATUSES = frozenset({401, 403, 404, 408, 409, 429})


@dataclass(frozen=True, slots=True)
class Route:
    requested_model: str
    provider: Provider
    upstream_model: str
    model: ModelInfo | None  # catalogue entry: prices and context window (None if unknown)

    @property
    def target(self) -> Target:
        return Target(self.upstream_model, self.model.max_output_tokens if self.model else None)


def resolve(model_id: str) -> Route:
    catalog = get_catalog()
    info = catalog.get(model_id)
    if info is not None:
        info = _pick_host(info)
        return Route(model_id, get_provider(info.provider), info.upstream, info)
    prefix, slash, upstream = model_id.partition("/")
    if slash and upstream and prefix in known_providers():
        return Route(model_id, get_provider(prefix), upstream, catalog.by_upstream(prefix, upstream))
    raise ModelNotFound(model_id)


def _pick_host(info: ModelInfo) -> ModelInfo:
    if not info.hosts:
        return info
    order = {name: i for i, name in enumerate(settings.LLAMA_HOSTS)}
    ranked = sorted((info, *info.hosts), key=lambda m: order.get(m.provider, len(order)))
    return next((m for m in ranked if is_configured(m.provider)), info)


def model_chain(chat: ChatRequest, header: str | None, key_fallbacks: tuple[str, ...] = ()) -> list[str]:
    """The requested model, then its fallbacks: the request's header, else the key's default list."""
    fallbacks = [m.strip() for m in header.split(",")] if header else list(key_fallbacks)
    chain = [chat.model]
    for model_id in fallbacks:
        if model_id and model_id not in chain:
            chain.append(model_id)
    return chain[: MAX_FALLBACKS + 1]


def complete(call: Call, chat: ChatRequest, chain: list[str]) -> tuple[Route, Completion]:
    """A non-stream answer from the first model of the chain that gives one."""

    def attempt(route: Route) -> Completion:
        provider = route.provider
        response = provider.send(provider.build_request(chat, route.target), stream=False)
        return provider.parse_response(provider.read_json(response), chat)

    return _serve(call, chain, attempt)


def open_stream(call: Call, chat: ChatRequest, chain: list[str]):
    """Open a stream; failures before its first byte raise here, so the client gets a real status."""

    def attempt(route: Route):
        return route.provider.send(route.provider.build_request(chat, route.target), stream=True)

    return _serve(call, chain, attempt)


def _serve(call: Call, chain: list[str], attempt: Callable[[Route], T]) -> tuple[Route, T]:
    error: GatewayError | None = None
    for position, model_id in enumerate(chain):
        try:
            route = resolve(model_id)
        except GatewayError as exc:
            if position == 0 and (len(chain) == 1 or isinstance(exc, ModelNotFound)):
                raise
            call.record_attempt(model_id, None, exc, 0.0)
            error = error or exc  # a fallback that cannot be used does not hide a real upstream error
            continue
        call.route = route
        try:
            result = _with_retries(call, route, attempt)
        except GatewayError as exc:
            if not _falls_back(exc):
                raise
            error = exc
            continue
        call.fallback_used = position > 0
        return route, result
    assert error is not None
    raise error


def _with_retries(call: Call, route: Route, attempt: Callable[[Route], T]) -> T:
    deadline = time.perf_counter() + settings.UPSTREAM_RETRY_BUDGET_SECONDS
    retries = 0
    while True:
        started = time.perf_counter()
        try:
            result = attempt(route)
        except GatewayError as exc:
            elapsed = time.perf_counter() - started
            call.add_upstream_time(elapsed)
            call.record_attempt(route.requested_model, route, exc, elapsed)
            wait = _retry_wait(exc, retries)
            if (
                wait is None
                or retries >= settings.UPSTREAM_MAX_RETRIES
                or time.perf_counter() + wait > deadline
            ):
                raise
            time.sleep(wait)
            call.add_upstream_time(wait)
            retries += 1
            continue
        elapsed = time.perf_counter() - started
        call.add_upstream_time(elapsed)
        call.record_attempt(route.requested_model, route, None, elapsed)
        return result


def _retryable(error: GatewayError) -> bool:
    if error.headers.get("x-should-retry") == "false":
        return False
    return error.status == 429 or error.status >= 500


def _retry_wait(error: GatewayError, retries: int) -> float | None:
    """Seconds to wait before retrying, or None: do not retry (not retryable, or told to wait too long)."""
    if not _retryable(error):
        return None
    told = _told_wait(error.headers)
    if told is not None:
        return told if told <= settings.UPSTREAM_RETRY_MAX_WAIT_SECONDS else None
    return min(0.25 * 2**retries, 4.0) * random.uniform(0.5, 1.0)


def _told_wait(headers: dict[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
        if value >= 0:
            return value
    return None


def _falls_back(error: GatewayError) -> bool:
    return (
        error.status >= 500 or error.status in _FALLBACK_STATUSES or error.code == "provider_not_configured"
    )
