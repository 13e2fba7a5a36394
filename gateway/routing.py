"""From a model id to the provider that serves it, and the calls that go there.

Resolution: an id or alias in the catalogue wins; otherwise `provider/model` forces that provider and passes
the upstream name through, so models the catalogue does not know yet still work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.catalog import ModelInfo, get_catalog
from gateway.errors import ModelNotFound
from gateway.metering import Call
from gateway.providers import get_provider, known_providers
from gateway.providers.base import Completion, Provider, Target
from gateway.validation import ChatRequest


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
        return Route(model_id, get_provider(info.provider), info.upstream, info)
    prefix, slash, upstream = model_id.partition("/")
    if slash and upstream and prefix in known_providers():
        return Route(model_id, get_provider(prefix), upstream, catalog.by_upstream(prefix, upstream))
    raise ModelNotFound(model_id)


def complete(call: Call, route: Route, chat: ChatRequest) -> Completion:
    """One non-stream call: the provider's answer, translated."""
    provider = route.provider
    upstream = provider.build_request(chat, route.target)
    started = time.perf_counter()
    try:
        response = provider.send(upstream, stream=False)
        data = provider.read_json(response)
    finally:
        call.add_upstream_time(time.perf_counter() - started)
    return provider.parse_response(data, chat)


def open_stream(call: Call, route: Route, chat: ChatRequest):
    """Start a streamed call; errors before the first byte raise here, so the client gets a real status."""
    provider = route.provider
    upstream = provider.build_request(chat, route.target)
    started = time.perf_counter()
    try:
        return provider.send(upstream, stream=True)
    finally:
        call.add_upstream_time(time.perf_counter() - started)
