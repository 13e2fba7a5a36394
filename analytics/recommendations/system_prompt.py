"""system_prompt: one recurring system prompt is most of what a user pays for in input tokens.

Requests sharing a system prompt share a `system_hash` (analytics.hashing; its size `system_tokens` is
estimated as characters / 4). Fires for a system prompt sent with at least MIN_REQUESTS successful requests,
at least MIN_SYSTEM_TOKENS long, that makes up at least MIN_SYSTEM_SHARE of those requests' input tokens.

Assumption: the prompt can be trimmed by TRIM_SHARE (half) without losing quality — long system prompts
usually repeat themselves, carry examples that are no longer needed, or explain what the model already
does. Only the user can judge that, hence the low base confidence.

Savings, per model and prices the requests were billed at (so cached input counts at its cached price):
    input cost = uncached × input price + cached × cached price + cache writes × write price (/ 1M)
    savings    = TRIM_SHARE × system prompt tokens / input tokens × input cost
scaled to a month.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, F, Sum, Value
from django.db.models.functions import Greatest

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

KIND = Recommendation.Kind.SYSTEM_PROMPT
MIN_REQUESTS = 50
MIN_SYSTEM_TOKENS = 500  # average estimated size of the prompt
MIN_SYSTEM_SHARE = 0.4  # of the requests' input tokens
TRIM_SHARE = Decimal("0.5")
BASE_CONFIDENCE = 0.4


def find(window: Window) -> list[Finding]:
    rows = window.served().exclude(system_hash="").filter(pricing__isnull=False)
    prompts = (
        rows.values("system_hash")
        .annotate(n=Count("id"), system=Sum("system_tokens"), prompt=Sum("prompt_tokens"))
        .filter(n__gte=MIN_REQUESTS)
        .order_by("system_hash")
    )
    findings = []
    for prompt in prompts:
        if (prompt["system"] or 0) < MIN_SYSTEM_TOKENS * prompt["n"]:
            continue
        if share(prompt["system"] or 0, prompt["prompt"] or 0) < MIN_SYSTEM_SHARE:
            continue
        finding = _finding(window, rows.filter(system_hash=prompt["system_hash"]), prompt)
        if finding is not None:
            findings.append(finding)
    return findings


def _input_cost(row: dict, prefix: str = "") -> Decimal:
    prices = row["pricing"]
    input_price = Decimal(prices["input_per_mtok"])
    cached = prices.get("cached_input_per_mtok")
    write = prices.get("cache_write_per_mtok")
    return (
        per_mtok(row[f"{prefix}uncached"] or 0, input_price)
        + per_mtok(row[f"{prefix}cached"] or 0, input_price if cached is None else Decimal(cached))
        + per_mtok(row[f"{prefix}write"] or 0, input_price if write is None else Decimal(write))
    )


def _finding(window: Window, scoped, prompt: dict) -> Finding | None:
    uncached = Greatest(F("prompt_tokens") - F("cached_tokens") - F("cache_write_tokens"), Value(0))
    recent = window.recent
    groups = (
        scoped.values("model", "pricing")
        .annotate(
            system=Sum("system_tokens"),
            prompt=Sum("prompt_tokens"),
            uncached=Sum(uncached),
            cached=Sum("cached_tokens"),
            write=Sum("cache_write_tokens"),
            recent_system=Sum("system_tokens", filter=recent),
            recent_prompt=Sum("prompt_tokens", filter=recent),
            recent_uncached=Sum(uncached, filter=recent),
            recent_cached=Sum("cached_tokens", filter=recent),
            recent_write=Sum("cache_write_tokens", filter=recent),
        )
        .order_by("model")
    )
    savings, recent_savings, lines, models = Decimal(0), Decimal(0), [], set()
    for group in groups:
        if not group["prompt"]:
            continue
        models.add(group["model"])
        cost = _input_cost(group)
        saved = TRIM_SHARE * group["system"] * cost / group["prompt"]
        savings += saved
        if group["recent_prompt"]:
            recent_cost = _input_cost(group, "recent_")
            recent_savings += TRIM_SHARE * group["recent_system"] * recent_cost / group["recent_prompt"]
        lines.append(
            f"{group['model']}: {TRIM_SHARE} × {group['system']:,} system-prompt tokens / "
            f"{group['prompt']:,} input tokens × {usd(cost)} input cost = {usd(saved)}"
        )
    if savings <= 0:
        return None
    n, system_share = prompt["n"], share(prompt["system"], prompt["prompt"])
    average = prompt["system"] // n
    return Finding(
        kind=KIND,
        scope={"system_prompt_hash": prompt["system_hash"], "api_key_ids": key_ids(scoped)},
        title=f"Trim a ~{average:,}-token system prompt: {percent(system_share)} of its requests' input",
        detail=(
            f"The same system prompt, about {average:,} tokens long, went with {n:,} requests in the last "
            f"{window.days} day(s) ({', '.join(sorted(models))}) and made up {percent(system_share)} of "
            "their input tokens: most of what they cost to read. If it can be cut by half — drop repetition, "
            "examples the model no longer needs, instructions it follows anyway — these requests cost that "
            "much less. That it can be halved is an assumption for the estimate; test a shorter prompt on a "
            "sample first. Sizes are estimated (characters / 4)."
        ),
        savings=savings,
        recent_savings=recent_savings,
        arithmetic="\n".join(
            [
                f"Assumption: the system prompt is trimmed by {TRIM_SHARE * 100:.0f} %.",
                *lines,
                f"Saved in the window: {usd(savings)}.",
            ]
        ),
        requests=n,
        base_confidence=BASE_CONFIDENCE,
        evidence={
            "requests": n,
            "system_prompt_tokens": average,
            "system_share_of_input": system_share,
            "models": sorted(models),
            "example_request_ids": examples(scoped),
        },
    )
