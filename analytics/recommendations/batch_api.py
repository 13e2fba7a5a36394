"""batch_api: a key's non-streamed traffic that comes in bursts or at night could go through a Batch API.

OpenAI's Batch API and Anthropic's Message Batches API answer within 24 hours at half the price
(BATCH_DISCOUNTS). Traffic that nobody watches arrive — not streamed, and sent in bursts (a script working
through a list) or off-hours — can usually wait.

Batchable: a key's successful, non-streamed requests to a provider with a batch discount that fall in a
minute in which the key sent at least BURST_REQUESTS_PER_MINUTE such requests, or in OFF_HOURS_UTC (an
assumption: we do not know the key's time zone, so UTC night stands for "nobody is waiting").
Fires when a key has at least MIN_BATCHABLE_REQUESTS batchable requests and they are at least
MIN_BATCHABLE_SHARE of its non-streamed requests.

Savings = Σ per provider of its discount × the batchable requests' cost, scaled to a month.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Sum
from django.db.models.functions import TruncMinute

from analytics.models import Recommendation
from analytics.recommendations.common import Finding, Window, examples, money, percent, share, usd

KIND = Recommendation.Kind.BATCH_API
BATCH_DISCOUNTS = {"openai": Decimal("0.5"), "anthropic": Decimal("0.5")}  # both: 50 % off, answers ≤ 24 h
BURST_REQUESTS_PER_MINUTE = 20
OFF_HOURS_UTC = range(0, 6)  # 00:00–05:59 UTC
MIN_BATCHABLE_REQUESTS = 100
MIN_BATCHABLE_SHARE = 0.2
BASE_CONFIDENCE = 0.5  # only if these requests can wait up to a day for their answers


def find(window: Window) -> list[Finding]:
    rows = window.served().filter(stream=False, provider__in=BATCH_DISCOUNTS).exclude(api_key=None)
    minutes = (
        rows.annotate(minute=TruncMinute("created_at"))
        .values("api_key_id", "minute", "provider")
        .annotate(n=Count("id"), cost=Sum("cost_usd"))
        .order_by()
    )
    per_key: dict = defaultdict(lambda: defaultdict(list))
    for row in minutes:
        per_key[row["api_key_id"]][row["minute"]].append(row)
    findings = []
    for key_id, by_minute in per_key.items():
        finding = _key_finding(window, rows.filter(api_key_id=key_id), key_id, by_minute)
        if finding is not None:
            findings.append(finding)
    return findings


def _key_finding(window: Window, rows, key_id, by_minute: dict) -> Finding | None:
    total = batchable = burst_requests = night_requests = peak = 0
    cost_by_provider: dict[str, Decimal] = defaultdict(Decimal)
    recent_by_provider: dict[str, Decimal] = defaultdict(Decimal)
    latest = None  # the last batchable minute: its requests are the examples
    for minute, groups in by_minute.items():
        n = sum(group["n"] for group in groups)
        total += n
        peak = max(peak, n)
        burst, night = n >= BURST_REQUESTS_PER_MINUTE, minute.hour in OFF_HOURS_UTC
        if not (burst or night):
            continue
        batchable += n
        latest = max(latest or minute, minute)
        burst_requests += n if burst else 0
        night_requests += n if night and not burst else 0
        for group in groups:
            cost_by_provider[group["provider"]] += group["cost"] or 0
            if minute >= window.recent_start:
                recent_by_provider[group["provider"]] += group["cost"] or 0
    if batchable < MIN_BATCHABLE_REQUESTS or share(batchable, total) < MIN_BATCHABLE_SHARE:
        return None
    savings = sum((BATCH_DISCOUNTS[p] * cost for p, cost in cost_by_provider.items()), Decimal(0))
    recent = sum((BATCH_DISCOUNTS[p] * cost for p, cost in recent_by_provider.items()), Decimal(0))
    lines = [
        f"{provider}: {discount * 100:.0f} % × {usd(cost)} = {usd(discount * cost)}"
        for provider, cost in sorted(cost_by_provider.items())
        if (discount := BATCH_DISCOUNTS[provider])
    ]
    return Finding(
        kind=KIND,
        scope={"api_key_id": str(key_id), "api_key_ids": [str(key_id)]},
        title=f"Send {percent(share(batchable, total))} of this key's requests through the Batch API",
        detail=(
            f"{batchable:,} of this key's {total:,} non-streamed requests in the last {window.days} day(s) "
            f"came in bursts of {BURST_REQUESTS_PER_MINUTE}+ a minute ({burst_requests:,}) or between "
            f"{OFF_HOURS_UTC.start:02d}:00 and {OFF_HOURS_UTC.stop:02d}:00 UTC ({night_requests:,}): work "
            "that nobody waits for as it runs. OpenAI's Batch API and Anthropic's Message Batches take such "
            "requests as a file and answer within 24 hours at half the price. Worth it only if these "
            "requests can wait that long."
        ),
        savings=savings,
        recent_savings=recent,
        arithmetic="\n".join([*lines, f"Saved in the window: {usd(savings)}."]),
        requests=batchable,
        base_confidence=BASE_CONFIDENCE,
        evidence={
            "requests": total,
            "batchable_requests": batchable,
            "batchable_share": share(batchable, total),
            "burst_requests": burst_requests,
            "off_hours_requests": night_requests,
            "peak_requests_per_minute": peak,
            "cost_by_provider_usd": {p: money(c) for p, c in sorted(cost_by_provider.items())},
            "example_request_ids": examples(
                rows.filter(created_at__gte=latest, created_at__lt=latest + timedelta(minutes=1))
            ),
        },
    )
