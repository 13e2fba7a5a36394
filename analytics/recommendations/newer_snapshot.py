"""newer_snapshot: a dated model snapshot whose family has a newer snapshot that is cheaper.

Fires for a model id ending in a date (gpt-4o-2024-05-13, gpt-3.5-turbo-1106, claude-3-5-sonnet-20241022)
when the catalogue holds a model of the same `family`, released later (`created`), with at least as large
a context window, served by a configured provider, that would have cost at least MIN_SAVINGS_SHARE less
for the same traffic. The suggestion is the cheapest such model (the newest among equals). A newer snapshot
of the same family is the same product, updated: the safest saving, hence the high base confidence.

Savings = Σ over the model's successful requests of (cost paid − cost of the same tokens at the newer
snapshot's prices), scaled to a month.
"""

from __future__ import annotations

import re
from decimal import Decimal

from analytics.models import Recommendation
from analytics.recommendations.common import (
    Finding,
    Tokens,
    Window,
    cost_at,
    examples,
    key_ids,
    money,
    price_line,
    servable,
    share,
    token_sums,
    usd,
)
from gateway.catalog import ModelInfo, get_catalog

KIND = Recommendation.Kind.NEWER_SNAPSHOT
MIN_REQUESTS = 10  # fewer successful requests in 30 days: not worth a change
MIN_SAVINGS_SHARE = Decimal("0.05")  # the newer snapshot must be at least 5 % cheaper on this traffic
BASE_CONFIDENCE = 0.9
DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")  # -2024-05-13, -20241022, -1106 / -2512


def is_snapshot(model: ModelInfo) -> bool:
    return bool(DATED.search(model.id))


def newer_cheaper(model: ModelInfo, tokens: Tokens) -> tuple[ModelInfo, Decimal] | None:
    """The cheapest newer snapshot of the model's family for this traffic, and what the traffic would cost."""
    if not model.family or not is_snapshot(model) or not tokens.requests:
        return None
    candidates = [
        (other, cost_at(other, tokens))
        for other in get_catalog().models
        if other.family == model.family
        and other.created > model.created
        and servable(other)
        and (other.context_window or 0) >= (model.context_window or 0)
    ]
    cheaper = [(other, cost) for other, cost in candidates if cost <= tokens.cost * (1 - MIN_SAVINGS_SHARE)]
    return min(cheaper, key=lambda c: (c[1], -c[0].created, c[0].id), default=None)


def find(window: Window) -> list[Finding]:
    rows = window.served().filter(fallback_used=False, routing_rule_id=None).exclude(model="")
    groups = rows.values("model").annotate(**token_sums(), **token_sums("recent_", window.recent)).order_by()
    total_requests = sum(group["requests"] for group in groups)
    catalog = get_catalog()
    findings = []
    for group in groups:
        model, tokens, recent = catalog.get(group["model"]), Tokens.of(group), Tokens.of(group, "recent_")
        if model is None or tokens.requests < MIN_REQUESTS:
            continue
        found = newer_cheaper(model, tokens)
        if found is None:
            continue
        newer, new_cost = found
        scoped = rows.filter(model=group["model"])
        savings = tokens.cost - new_cost
        recent_savings = recent.cost - cost_at(newer, recent) if recent.requests else Decimal(0)
        findings.append(
            Finding(
                kind=KIND,
                scope={"model": group["model"], "task_type": "", "api_key_ids": key_ids(scoped)},
                title=f"Move from {group['model']} to its newer snapshot {newer.id}",
                detail=(
                    f"{group['model']} is a dated snapshot of {model.family}. {newer.id} is a newer snapshot "
                    f"of the same model family that costs less: ${newer.input_per_mtok} instead of "
                    f"${model.input_per_mtok} per 1M input tokens and ${newer.output_per_mtok} instead of "
                    f"${model.output_per_mtok} per 1M output tokens. Newer snapshots can answer slightly "
                    "differently: run a shadow evaluation, then apply to route this model's requests to it."
                ),
                savings=savings,
                recent_savings=recent_savings,
                arithmetic=(
                    f"{tokens.requests:,} successful {group['model']} requests in the window cost "
                    f"{usd(tokens.cost)}.\n"
                    f"The same tokens at {newer.id}'s prices: {price_line(newer, tokens)}.\n"
                    f"Saved in the window: {usd(tokens.cost)} − {usd(new_cost)} = {usd(savings)}."
                ),
                requests=tokens.requests,
                base_confidence=BASE_CONFIDENCE,
                suggested_model=newer.id,
                evidence={
                    "requests": tokens.requests,
                    "recent_requests": recent.requests,
                    "share_of_requests": share(tokens.requests, total_requests),
                    "prompt_tokens": tokens.prompt,
                    "completion_tokens": tokens.completion,
                    "cost_usd": money(tokens.cost),
                    "cost_at_suggested_usd": money(new_cost),
                    "family": model.family,
                    "example_request_ids": examples(scoped),
                },
            )
        )
    return findings
