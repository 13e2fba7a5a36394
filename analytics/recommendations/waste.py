"""waste: money paid for requests that failed — the answer was billed, the client never got it whole.

Billed failures are a key's requests that ended with an error status yet carry a cost: mostly clients that
went away mid-answer (499: a client timeout shorter than the answer takes, a user closing the page) and
streams that broke after tokens were generated. Fires when a key has at least MIN_BILLED_FAILURES of them.

Savings = the cost of those requests, scaled to a month — an upper bound: some failures cannot be avoided.

Retries and fallbacks recorded in `attempts` are reported as evidence (how many, their statuses, the time
spent on them), not counted as savings: providers do not bill the 429 and 5xx answers that trigger them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

from django.db.models import Count, Sum

from analytics.models import Recommendation
from analytics.recommendations.common import Finding, Window, examples, money, usd

KIND = Recommendation.Kind.WASTE
MIN_BILLED_FAILURES = 5
BASE_CONFIDENCE = 0.5


def _status_class(status: int) -> str:
    if status == 499:
        return "cancelled"
    return "server" if status >= 500 else "client"


def find(window: Window) -> list[Finding]:
    rows = window.rows().exclude(api_key=None)
    billed = rows.filter(status_code__gte=400, cost_usd__gt=0)
    groups = (
        billed.values("api_key_id", "status_code")
        .annotate(n=Count("id"), cost=Sum("cost_usd"), recent_cost=Sum("cost_usd", filter=window.recent))
        .order_by()
    )
    per_key: dict = defaultdict(list)
    for group in groups:
        per_key[group["api_key_id"]].append(group)
    findings = []
    for key_id, key_groups in per_key.items():
        failures = sum(g["n"] for g in key_groups)
        if failures < MIN_BILLED_FAILURES:
            continue
        findings.append(_finding(window, rows.filter(api_key_id=key_id), key_id, key_groups, failures))
    return findings


def _finding(window: Window, rows, key_id, groups: list[dict], failures: int) -> Finding:
    cost = sum((g["cost"] or Decimal(0) for g in groups), Decimal(0))
    recent = sum((g["recent_cost"] or Decimal(0) for g in groups), Decimal(0))
    by_class: dict[str, dict] = {}
    for g in groups:
        entry = by_class.setdefault(_status_class(g["status_code"]), {"requests": 0, "cost_usd": Decimal(0)})
        entry["requests"] += g["n"]
        entry["cost_usd"] += g["cost"] or 0
    retried = rows.filter(attempts__isnull=False).values_list("attempts", flat=True)
    failed_attempts, attempt_statuses, attempt_ms, retried_requests = 0, Counter(), 0.0, 0
    for attempts in retried.iterator():
        retried_requests += 1
        for attempt in attempts or ():
            if attempt.get("status") != 200:
                failed_attempts += 1
                attempt_statuses[str(attempt.get("status"))] += 1
                attempt_ms += attempt.get("ms") or 0
    total = rows.count()
    cancelled = by_class.get("cancelled", {}).get("requests", 0)
    lines = [
        f"{name}: {entry['requests']:,} requests, {usd(entry['cost_usd'])}"
        for name, entry in sorted(by_class.items())
    ]
    return Finding(
        kind=KIND,
        scope={"api_key_id": str(key_id), "api_key_ids": [str(key_id)]},
        title=f"{failures:,} failed requests were billed: {usd(cost)}",
        detail=(
            f"{failures:,} of this key's {total:,} requests in the last {window.days} day(s) ended in an "
            f"error after the provider had billed tokens for them, {cancelled:,} of them because the client "
            "went away before the answer ended (499). Give clients a timeout longer than your slowest "
            "answers (or stream them), and lower max_tokens where answers run long. The estimate is an "
            f"upper bound: not every failure can be avoided. {retried_requests:,} requests also needed "
            f"retries or fallbacks ({failed_attempts:,} failed attempts); those are slow rather than "
            "billed."
        ),
        savings=cost,
        recent_savings=recent,
        arithmetic="\n".join(["Billed failed requests:", *lines, f"Saved in the window: {usd(cost)}."]),
        requests=failures,
        base_confidence=BASE_CONFIDENCE,
        evidence={
            "requests": total,
            "billed_failures": failures,
            "failure_rate": round(failures / total, 4) if total else 0.0,
            "by_status_class": {
                name: {"requests": e["requests"], "cost_usd": money(e["cost_usd"])}
                for name, e in by_class.items()
            },
            "retried_requests": retried_requests,
            "failed_attempts": failed_attempts,
            "failed_attempt_statuses": dict(attempt_statuses),
            "failed_attempt_ms": round(attempt_ms, 1),
            "example_request_ids": examples(rows.filter(status_code__gte=400, cost_usd__gt=0)),
        },
    )
