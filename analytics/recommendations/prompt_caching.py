"""prompt_caching: many requests start with the same long prefix, and the provider's prompt cache misses it.

A prefix is the tools, the system prompt and a leading shared message, when they are at least 1,024 tokens
(analytics.hashing: `prefix_hash`, `prefix_tokens`). Providers bill a cached prefix at a fraction of the
input price (OpenAI and Gemini: about a quarter to a tenth; Anthropic: a tenth, after a cache write at
1.25× the input price).

Fires for a model × prefix with at least MIN_SHARED_REQUESTS successful requests whose cached tokens are at
most MAX_CACHED_SHARE of their prefix tokens, on a model whose catalogue entry has a cached-input price.

Savings: the requests are replayed in order through a cache that lives CACHE_LIFETIME_SECONDS after its
last use (the providers' default, refreshed on every hit): a request within that time of the previous one
reads the prefix from the cache (a hit), any other writes it (a write).

    savings = hits × prefix tokens × (input price − cached price) / 1M
            − writes × prefix tokens × (cache-write price − input price) / 1M    (Anthropic only)
            − what the cached tokens already saved: cached tokens × (input price − cached price) / 1M

at the model's catalogue prices, scaled to a month.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Max, Sum

from analytics.models import Recommendation
from analytics.recommendations.common import (
    Finding,
    Window,
    examples,
    key_ids,
    per_mtok,
    percent,
    share,
    usd,
)
from gateway.catalog import ModelInfo, get_catalog

KIND = Recommendation.Kind.PROMPT_CACHING
MIN_SHARED_REQUESTS = 20  # requests sharing the prefix in 30 days
MAX_CACHED_SHARE = 0.10  # cached tokens / prefix tokens: "near 0"
CACHE_LIFETIME_SECONDS = 300  # a provider's prompt cache lives 5 minutes after its last use
BASE_CONFIDENCE = 0.6

HOW = {
    "anthropic": 'Mark the end of the shared prefix with `cache_control: {"type": "ephemeral"}`.',
    "openai": (
        "OpenAI caches a prompt's first 1,024+ tokens by itself when they are identical: keep the shared "
        "part first and unchanged, and send a `prompt_cache_key` so the requests reach the same cache."
    ),
    "gemini": "Put the shared prefix in a cached content (Gemini context caching) and refer to it.",
}


def find(window: Window) -> list[Finding]:
    rows = window.served().exclude(prefix_hash="")
    groups = (
        rows.values("model", "prefix_hash")
        .annotate(
            n=Count("id"),
            prefix_size=Max("prefix_tokens"),
            prefix_total=Sum("prefix_tokens"),
            cached=Sum("cached_tokens"),
            prompt=Sum("prompt_tokens"),
        )
        .filter(n__gte=MIN_SHARED_REQUESTS)
        .order_by("model", "prefix_hash")
    )
    catalog = get_catalog()
    findings = []
    for group in groups:
        model = catalog.get(group["model"])
        if model is None or not model.has_price or model.cached_input_per_mtok is None:
            continue
        if model.cached_input_per_mtok >= model.input_per_mtok:
            continue
        if share(group["cached"] or 0, group["prefix_total"] or 0) > MAX_CACHED_SHARE:
            continue
        finding = _finding(
            window, rows.filter(model=group["model"], prefix_hash=group["prefix_hash"]), model, group
        )
        if finding is not None:
            findings.append(finding)
    return findings


def _replay(times: list, lifetime: timedelta) -> tuple[int, int]:
    hits = writes = 0
    previous = None
    for created_at in times:
        if previous is not None and created_at - previous <= lifetime:
            hits += 1
        else:
            writes += 1
        previous = created_at
    return hits, writes


def _savings(model: ModelInfo, prefix: int, hits: int, writes: int, cached: int) -> tuple[Decimal, str]:
    discount = model.input_per_mtok - model.cached_input_per_mtok
    premium = (
        model.cache_write_per_mtok - model.input_per_mtok
        if model.cache_write_per_mtok is not None and model.cache_write_per_mtok > model.input_per_mtok
        else Decimal(0)
    )
    gained = per_mtok(hits * prefix, discount)
    paid = per_mtok(writes * prefix, premium)
    already = per_mtok(cached, discount)
    savings = gained - paid - already
    text = (
        f"{hits:,} hits × {prefix:,} prefix tokens × (${model.input_per_mtok} − "
        f"${model.cached_input_per_mtok}) / 1M = {usd(gained)}"
    )
    if premium:
        text += (
            f"\n− {writes:,} cache writes × {prefix:,} tokens × (${model.cache_write_per_mtok} − "
            f"${model.input_per_mtok}) / 1M = {usd(paid)}"
        )
    if cached:
        text += f"\n− already cached: {cached:,} tokens × ${discount} / 1M = {usd(already)}"
    return savings, text


def _finding(window: Window, scoped, model: ModelInfo, group: dict) -> Finding | None:
    prefix = group["prefix_size"] or 0
    lifetime = timedelta(seconds=CACHE_LIFETIME_SECONDS)
    times = list(scoped.order_by("created_at", "id").values_list("created_at", flat=True))
    hits, writes = _replay(times, lifetime)
    savings, text = _savings(model, prefix, hits, writes, group["cached"] or 0)
    recent_times = [t for t in times if t >= window.recent_start]
    recent_cached = scoped.filter(window.recent).aggregate(c=Sum("cached_tokens"))["c"] or 0
    recent_savings, _ = _savings(model, prefix, *_replay(recent_times, lifetime), recent_cached)
    if savings <= 0:
        return None
    n = group["n"]
    cached_share = share(group["cached"] or 0, group["prefix_total"] or 0)
    return Finding(
        kind=KIND,
        scope={"model": model.id, "prefix_hash": group["prefix_hash"], "api_key_ids": key_ids(scoped)},
        title=f"Cache a {prefix:,}-token prompt prefix shared by {n:,} {model.id} requests",
        detail=(
            f"{n:,} requests to {model.id} in the last {window.days} day(s) began with the same "
            f"~{prefix:,}-token prefix (tools, system prompt and first message), yet only "
            f"{percent(cached_share)} of those tokens were read from the provider's prompt cache, which "
            f"bills them at ${model.cached_input_per_mtok} instead of ${model.input_per_mtok} per 1M. "
            f"{HOW.get(model.provider, 'Use the provider’s prompt caching for the shared prefix.')} "
            f"{hits:,} of the requests came within {CACHE_LIFETIME_SECONDS // 60} minutes of the previous "
            "one and would have hit a warm cache. Prefix sizes are estimated (characters / 4)."
        ),
        savings=savings,
        recent_savings=recent_savings,
        arithmetic=f"{text}\nSaved in the window: {usd(savings)}.",
        requests=n,
        base_confidence=BASE_CONFIDENCE,
        evidence={
            "requests": n,
            "prefix_tokens": prefix,
            "prefix_share_of_input": share(prefix * n, group["prompt"] or 0),
            "cached_share": cached_share,
            "cache_hits": hits,
            "cache_writes": writes,
            "cache_lifetime_seconds": CACHE_LIFETIME_SECONDS,
            "example_request_ids": examples(scoped),
        },
    )
