"""The provider registry: provider name → adapter class, and one configured instance per process."""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.signals import setting_changed

from gateway.errors import InvalidRequest
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider
from gateway.providers.gemini import GeminiProvider
from gateway.providers.mistral import MistralProvider
from gateway.providers.openai import OpenAIProvider
from gateway.providers.openai_compatible import OpenAICompatibleProvider

ADAPTERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "mistral": MistralProvider,
    "groq": OpenAICompatibleProvider,
    "together": OpenAICompatibleProvider,
    "ollama": OpenAICompatibleProvider,
}

_instances: dict[str, Provider] = {}
_lock = threading.Lock()


class ProviderNotConfigured(InvalidRequest):
    code = "provider_not_configured"


def known_providers() -> frozenset[str]:
    return frozenset(settings.PROVIDERS)


def get_provider(name: str) -> Provider:
    provider = _instances.get(name)
    if provider is not None:
        return provider
    with _lock:
        if name not in _instances:
            _instances[name] = _build(name)
    return _instances[name]


def is_configured(name: str) -> bool:
    """Has the operator set this provider up (a key, or for a keyless one, its URL)?"""
    config = settings.PROVIDERS.get(name)
    return bool(config and config.get("configured"))


def _build(name: str) -> Provider:
    config = settings.PROVIDERS.get(name)
    # Extra providers named in EXTRA_PROVIDERS all speak OpenAI's format.
    adapter = ADAPTERS.get(name) or (OpenAICompatibleProvider if config and config.get("extra") else None)
    if config is None or adapter is None:
        raise ProviderNotConfigured(f"The provider `{name}` is not supported by this gateway.", param="model")
    if config["needs_key"] and not config["api_key"]:
        raise ProviderNotConfigured(
            f"The provider `{name}` is not configured: the operator must set {name.upper()}_API_KEY.",
            param="model",
        )
    return adapter(
        name,
        api_key=config["api_key"],
        base_url=config["base_url"],
        connect_timeout=settings.UPSTREAM_CONNECT_TIMEOUT,
        read_timeout=settings.UPSTREAM_READ_TIMEOUT,
        pool_size=settings.UPSTREAM_POOL_SIZE,
    )


def reset_providers(**kwargs) -> None:
    with _lock:
        for provider in _instances.values():
            provider.close()
        _instances.clear()


setting_changed.connect(reset_providers)
