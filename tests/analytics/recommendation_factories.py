"""Synthetic request-log rows for the recommendation rules: many rows at once, priced as the gateway prices
them, at a fixed "now" (NOW) so that the 30-day window and its monthly scaling are exact."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.test import override_settings

from analytics.models import RequestLog
from analytics.pricing import cost_usd
from analytics.recommendations import Window, generate_for_user
from tests.analytics.factories import GPT_4O

NOW = datetime.fromisoformat("2026-03-18T12:34:56+00:00")
MONTH_AGO = NOW - timedelta(days=29, hours=23)  # the first row: 30 observed days, so monthly = window

GPT_4O_MINI = {
    "input_per_mtok": "0.15",
    "cached_input_per_mtok": "0.075",
    "cache_write_per_mtok": None,
    "output_per_mtok": "0.6",
    "price_date": "2024-07-18",
}
CLAUDE_SONNET = {
    "input_per_mtok": "3",
    "cached_input_per_mtok": "0.3",
    "cache_write_per_mtok": "3.75",
    "output_per_mtok": "15",
    "price_date": "2024-10-22",
}
MILLION = M = Decimal(1_000_000)


def rows(
    user,
    key=None,
    *,
    n: int,
    first: datetime = MONTH_AGO,
    every: timedelta = timedelta(hours=1),
    model: str = "gpt-4o",
    provider: str = "openai",
    pricing: dict | None = GPT_4O,
    prompt: int = 1000,
    cached: int = 0,
    cache_write: int = 0,
    completion: int = 100,
    status: int = 200,
    task_type: str = "chat",
    **fields,
) -> list[RequestLog]:
    """`n` rows, `every` apart from `first`, all alike but for their request id."""
    if not prompt and not completion:
        cost = Decimal(0)
    else:
        cost = cost_usd(
            pricing,
            prompt_tokens=prompt,
            cached_tokens=cached,
            cache_write_tokens=cache_write,
            completion_tokens=completion,
        )
    objects = [
        RequestLog(
            request_id=f"req_{uuid.uuid4().hex}",
            user=user,
            api_key=key,
            created_at=first + i * every,
            requested_model=model,
            model=model,
            served_model=model,
            provider=provider,
            status_code=status,
            prompt_tokens=prompt,
            cached_tokens=cached,
            cache_write_tokens=cache_write,
            completion_tokens=completion,
            cost_usd=cost,
            cost_unknown=cost is None,
            pricing=pricing,
            task_type=task_type,
            **fields,
        )
        for i in range(n)
    ]
    return RequestLog.objects.bulk_create(objects)


def window(user) -> Window:
    return Window.ending(user_id=user.pk, now=NOW)


def generate(user):
    return generate_for_user(user_id=user.pk, now=NOW)


def only_openai() -> override_settings:
    """Providers as in the test settings, but only OpenAI configured (whatever the environment holds)."""
    providers = copy.deepcopy(settings.PROVIDERS)
    for name, entry in providers.items():
        entry["configured"] = name == "openai"
    providers["openai"].update(api_key="sk-test-provider-key", base_url="http://openai.test/v1")
    return override_settings(PROVIDERS=providers)


def generated(user, kind: str) -> list:
    """The recommendations of one kind that a generation run returns."""
    return [rec for rec in generate(user) if rec.kind == kind]
