"""output_length: answers cut off by their length limit and asked again, or limits far above what answers use.

Two signals per model, each its own recommendation (scope `signal`):

**truncated** — answers that stopped at their limit (`finish_reason` "length") are at least
TRUNCATED_MIN_SHARE of the model's successful requests (and at least MIN_TRUNCATED of them). A truncated
answer is counted as retried when the same key sent the same model a request with exactly the same number of
prompt tokens within RETRY_WINDOW_SECONDS after it — the log keeps no bodies by default, so the retry is
inferred (hence the low base confidence).
    savings = the cost of the truncated answers that were retried (paid for, then thrown away)

**max_tokens** — requests that set `max_tokens` (at least MIN_REQUESTS), whose median limit is at least
OVERSIZED_RATIO × the p95 of the answers' length. A limit that high does not cost anything by itself; what
it costs is the rare runaway answer. The suggested limit is CAP_HEADROOM × p95 (rounded up to 16 tokens):
    savings = Σ over the requests of max(completion tokens − suggested limit, 0) × the output price / 1M
The saving is indirect, and the longest answers would be cut: the base confidence is the lowest of all.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Greatest

from analytics.models import Recommendation
from analytics.recommendations.common import (
    EXAMPLES,
    Finding,
    Window,
    examples,
    key_ids,
    per_mtok,
    percent,
    percentile,
    share,
    usd,
)

KIND = Recommendation.Kind.OUTPUT_LENGTH
TRUNCATED_MIN_SHARE = 0.05
MIN_TRUNCATED = 10
RETRY_WINDOW_SECONDS = 600
BASE_CONFIDENCE_TRUNCATED = 0.4

MIN_REQUESTS = 50
OVERSIZED_RATIO = 4
CAP_HEADROOM = 1.5
BASE_CONFIDENCE_MAX_TOKENS = 0.3


def find(window: Window) -> list[Finding]:
    rows = window.served().exclude(model="")
    counts = rows.values("model").annotate(
        n=Count("id"),
        truncated=Count("id", filter=Q(finish_reason="length")),
        limited=Count("id", filter=Q(max_tokens__isnull=False)),
    )
    findings = []
    for group in counts.order_by("model"):
        scoped = rows.filter(model=group["model"])
        if (
            group["truncated"] >= MIN_TRUNCATED
            and share(group["truncated"], group["n"]) >= TRUNCATED_MIN_SHARE
        ):
            finding = _truncated(window, scoped, group)
            if finding is not None:
                findings.append(finding)
        if group["limited"] >= MIN_REQUESTS:
            finding = _max_tokens(window, scoped.filter(max_tokens__isnull=False), group)
            if finding is not None:
                findings.append(finding)
    return findings


def _truncated(window: Window, scoped, group: dict) -> Finding | None:
    truncated = list(
        scoped.filter(finish_reason="length")
        .exclude(api_key=None)
        .order_by("created_at")
        .values_list("api_key_id", "prompt_tokens", "created_at", "cost_usd", "request_id")
    )
    # Later requests of the same keys and prompt sizes: the possible retries, sorted by time per (key, size).
    followers: dict[tuple, list] = defaultdict(list)
    for key_id, prompt, created_at in (
        scoped.filter(api_key_id__in={t[0] for t in truncated}, prompt_tokens__in={t[1] for t in truncated})
        .order_by("created_at")
        .values_list("api_key_id", "prompt_tokens", "created_at")
    ):
        followers[(key_id, prompt)].append(created_at)
    window_after = timedelta(seconds=RETRY_WINDOW_SECONDS)
    retried, cost, recent_cost, retried_ids = 0, Decimal(0), Decimal(0), []
    for key_id, prompt, created_at, row_cost, request_id in truncated:
        times = followers[(key_id, prompt)]
        after = bisect_right(times, created_at)
        if after < len(times) and times[after] - created_at <= window_after:
            retried += 1
            cost += row_cost
            recent_cost += row_cost if created_at >= window.recent_start else 0
            retried_ids.append(request_id)
    if not retried:
        return None
    n, cut = group["n"], group["truncated"]
    return Finding(
        kind=KIND,
        scope={"model": group["model"], "signal": "truncated", "api_key_ids": key_ids(scoped)},
        title=f"{percent(share(cut, n))} of {group['model']} answers are cut off and asked again",
        detail=(
            f"{cut:,} of {n:,} successful {group['model']} answers stopped at their length limit "
            f'(finish_reason "length"), and {retried:,} of them were followed within '
            f"{RETRY_WINDOW_SECONDS // 60} minutes by a request of the same size from the same key — "
            "apparently asked again. Each cut-off answer was paid for and thrown away. Raise max_tokens "
            "for these requests, or ask for shorter answers (a word limit, a schema). The retries are "
            "inferred from prompt sizes, not read from the requests."
        ),
        savings=cost,
        recent_savings=recent_cost,
        arithmetic=(
            f"{retried:,} truncated answers followed by a retry cost {usd(cost)} together: the waste.\n"
            f"Saved in the window: {usd(cost)}."
        ),
        requests=cut,
        base_confidence=BASE_CONFIDENCE_TRUNCATED,
        evidence={
            "requests": n,
            "truncated": cut,
            "truncated_share": share(cut, n),
            "retried": retried,
            "retry_window_seconds": RETRY_WINDOW_SECONDS,
            "example_request_ids": retried_ids[-EXAMPLES:][::-1],
        },
    )


def _max_tokens(window: Window, limited, group: dict) -> Finding | None:
    n = group["limited"]
    p95 = percentile(limited, "completion_tokens", 0.95, n) or 0
    median_limit = percentile(limited, "max_tokens", 0.5, n) or 0
    if median_limit < OVERSIZED_RATIO * max(p95, 1):
        return None
    cap = max(math.ceil(p95 * CAP_HEADROOM / 16) * 16, 16)
    beyond = Greatest(F("completion_tokens") - Value(cap), Value(0))
    over = Q(completion_tokens__gt=cap)
    per_price = (
        limited.filter(pricing__isnull=False)
        .values("pricing")
        .annotate(
            extra=Sum(beyond),
            recent_extra=Sum(beyond, filter=window.recent),
            cut=Count("id", filter=over),
        )
        .order_by()
    )
    savings, recent_savings, cut, lines = Decimal(0), Decimal(0), 0, []
    for row in per_price:
        price = Decimal(row["pricing"]["output_per_mtok"])
        savings += per_mtok(row["extra"] or 0, price)
        recent_savings += per_mtok(row["recent_extra"] or 0, price)
        cut += row["cut"]
        if row["extra"]:
            lines.append(
                f"{row['extra']:,} output tokens beyond {cap:,} × ${price} / 1M = "
                f"{usd(per_mtok(row['extra'], price))}"
            )
    if savings <= 0:
        return None
    p50 = percentile(limited, "completion_tokens", 0.5, n)
    return Finding(
        kind=KIND,
        scope={"model": group["model"], "signal": "max_tokens", "api_key_ids": key_ids(limited)},
        title=f"Lower max_tokens for {group['model']} to about {cap:,}",
        detail=(
            f"{n:,} {group['model']} requests set max_tokens, typically to {median_limit:,}, but 95 % of the "
            f"answers are at most {p95:,} tokens long. The limit costs nothing by itself; the few answers "
            f"that ran far past the usual length did: {cut:,} answers ({percent(share(cut, n))}) were longer "
            f"than {cap:,} tokens. A limit of {cap:,} would have saved their extra tokens — and cut those "
            "answers short, so check that they were runaway answers, not needed ones."
        ),
        savings=savings,
        recent_savings=recent_savings,
        arithmetic="\n".join([*lines, f"Saved in the window: {usd(savings)}."]),
        requests=n,
        base_confidence=BASE_CONFIDENCE_MAX_TOKENS,
        evidence={
            "requests": n,
            "max_tokens_median": median_limit,
            "completion_tokens_p50": p50,
            "completion_tokens_p95": p95,
            "suggested_max_tokens": cap,
            "answers_over_suggested": cut,
            "example_request_ids": examples(limited.filter(over)),
        },
    )
