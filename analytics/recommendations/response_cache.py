"""response_cache: a key sends the same request again and again, and pays for every answer.

Identical requests share a `request_hash` (analytics.hashing: the model, messages and parameters; not
`stream` or `user`). For each key, the successful requests are replayed in order through a simulated cache
of CACHE_TTL_SECONDS: the first request of a hash is a miss that stores the answer for the TTL, a request
of the same hash while it is stored is a hit (a "repeat"), and one after it expired is a miss that stores
it again — what the gateway's response cache would have done.

Fires when a key has at least MIN_REPEATS repeats and they are at least MIN_DUPLICATE_RATE of its
successful requests, unless its response cache is already on for at least the TTL.

Savings = the cost of the repeats (a cache hit costs nothing), scaled to a month. A cache returns the same
answer every time: right for deterministic requests (temperature 0, classification, extraction, lookups),
wrong where a fresh, sampled answer is the point — hence the base confidence below 1.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count

from accounts.models import ApiKey
from analytics.models import Recommendation
from analytics.recommendations.common import EXAMPLES, Finding, Window, money, percent, share, usd

KIND = Recommendation.Kind.RESPONSE_CACHE
CACHE_TTL_SECONDS = 3600  # the TTL the simulated cache (and the suggested setting) keeps answers for
MIN_REPEATS = 20  # repeats in 30 days
MIN_DUPLICATE_RATE = 0.05  # repeats / successful requests of the key
BASE_CONFIDENCE = 0.7
_CHUNK = 500


def find(window: Window) -> list[Finding]:
    rows = window.served().exclude(api_key=None).exclude(request_hash="")
    repeated = (
        rows.values("api_key_id", "request_hash")
        .annotate(n=Count("id"))
        .filter(n__gte=2)
        .order_by()
        .values_list("api_key_id", "request_hash")
    )
    hashes_by_key: dict = defaultdict(set)
    for key_id, request_hash in repeated:
        hashes_by_key[key_id].add(request_hash)
    if not hashes_by_key:
        return []
    cached_keys = set(
        ApiKey.objects.filter(id__in=hashes_by_key, cache_ttl_seconds__gte=CACHE_TTL_SECONDS).values_list(
            "id", flat=True
        )
    )
    totals = dict(
        window.served()
        .filter(api_key_id__in=hashes_by_key)
        .values("api_key_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("api_key_id", "n")
    )
    findings = []
    for key_id, hashes in hashes_by_key.items():
        if key_id in cached_keys:
            continue
        finding = _key_finding(window, rows.filter(api_key_id=key_id), key_id, hashes, totals.get(key_id, 0))
        if finding is not None:
            findings.append(finding)
    return findings


def _key_finding(window: Window, rows, key_id, hashes: set[str], total: int) -> Finding | None:
    ttl = timedelta(seconds=CACHE_TTL_SECONDS)
    repeats, cost, recent_cost = 0, Decimal(0), Decimal(0)
    repeated_requests: set[str] = set()
    models: dict[str, int] = defaultdict(int)
    example_ids: list[str] = []
    ordered = sorted(hashes)
    for start in range(0, len(ordered), _CHUNK):
        stored_at: dict[str, object] = {}
        chunk = (
            rows.filter(request_hash__in=ordered[start : start + _CHUNK])
            .order_by("created_at", "id")
            .values_list("request_hash", "created_at", "cost_usd", "model", "request_id")
        )
        for request_hash, created_at, row_cost, model, request_id in chunk.iterator():
            cached = stored_at.get(request_hash)
            if cached is not None and created_at - cached < ttl:
                repeats += 1
                cost += row_cost
                if created_at >= window.recent_start:
                    recent_cost += row_cost
                repeated_requests.add(request_hash)
                models[model] += 1
                example_ids.append(request_id)
            else:
                stored_at[request_hash] = created_at
    rate = share(repeats, total)
    if repeats < MIN_REPEATS or rate < MIN_DUPLICATE_RATE:
        return None
    return Finding(
        kind=KIND,
        scope={"api_key_id": str(key_id), "api_key_ids": [str(key_id)]},
        title=f"Cache repeated requests: {percent(rate)} of this key's requests are repeats",
        detail=(
            f"{repeats:,} of this key's {total:,} successful requests in the last {window.days} day(s) "
            f"repeated a request it had sent less than {CACHE_TTL_SECONDS // 60} minutes before — same "
            "model, messages and parameters — and each was paid for again. Turning on the gateway's "
            f"response cache for the key (TTL {CACHE_TTL_SECONDS} s) answers them from the cache for free. "
            "Do it where the same answer is the right answer (temperature 0, classification, lookups): a "
            "cache does not give a fresh sample."
        ),
        savings=cost,
        recent_savings=recent_cost,
        arithmetic=(
            f"{repeats:,} repeats within {CACHE_TTL_SECONDS} s of a cached identical request, costing "
            f"{usd(cost)} together; from the cache they would have cost $0.\n"
            f"Saved in the window: {usd(cost)}."
        ),
        requests=total,
        base_confidence=BASE_CONFIDENCE,
        evidence={
            "requests": total,
            "repeats": repeats,
            "duplicate_rate": rate,
            "distinct_repeated_requests": len(repeated_requests),
            "ttl_seconds": CACHE_TTL_SECONDS,
            "repeats_by_model": dict(sorted(models.items())),
            "cost_of_repeats_usd": money(cost),
            "example_request_ids": example_ids[-EXAMPLES:][::-1],
        },
    )
