"""Settings overrides that configure providers for a test, pointing at hosts `responses` can mock."""

from __future__ import annotations

import copy

from django.conf import settings
from django.test import override_settings


def with_providers(**base_urls: str) -> override_settings:
    """`with_providers(mistral="http://mistral.test/v1")`: those providers configured with a test key."""
    providers = copy.deepcopy(settings.PROVIDERS)
    for name, url in base_urls.items():
        entry = providers.setdefault(name, {"needs_key": False, "extra": True})
        entry.update(api_key=f"sk-test-{name}", base_url=url, configured=True)
    return override_settings(PROVIDERS=providers)
