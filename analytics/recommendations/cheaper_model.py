"""cheaper_model: traffic that a cheaper model of similar capability would serve.

Two ways to fire, for the successful requests of one model (not rerouted, not fallen back):

1. **A smaller model for short, simple tasks.** Requests of a task type in DOWNGRADE_TASKS (classification,
   extraction) on a model of tier ≥ 2 whose answers are short (p95 of completion tokens ≤
   SHORT_OUTPUT_P95_TOKENS) — a label or a few fields, which a model one tier down gets right as well. Scope:
   the model and that task type.
2. **A model as capable, for less.** The model's other requests (every task type not covered by 1), when a
   model of the same tier or higher costs less for the same tokens. Scope: the model, every task type.

Candidates: catalogue models of the required tier (CAPABILITY_TIERS, by family), priced, served by a
configured provider, with a context window that holds the largest request seen, and never a reasoning
model in place of a non-reasoning one (it would bill hidden reasoning tokens the estimate cannot see). A
candidate must cost at least MIN_SAVINGS_SHARE less on the traffic; the cheapest wins, then the same
provider (no new vendor), then the shorter id (an alias that follows updates). Models for which the
newer_snapshot rule has a newer, cheaper snapshot are left to that rule.

Savings = Σ over the scope's requests of (cost paid − cost of the same tokens at the suggested model's
prices), scaled to a month. Quality is not measured here: a shadow evaluation replays the traffic.

Capability tiers
----------------
3 = flagship, 2 = mid-size ("mini", "flash", "haiku", "small", 70B), 1 = small ("nano", "lite", ≤ 14B).
Source: each vendor's own line-up (OpenAI's model pages, Anthropic's model overview, Google's Gemini model
list, Mistral's model docs, Meta's Llama model cards) place each family as flagship, mid or small; the
bands were cross-checked against the LMArena (Chatbot Arena) text leaderboard as of 2025, where each tier
sits in a distinct Elo band. Families not in the table (newer or unfamiliar ones) are neither studied nor
suggested until someone adds them here with a source.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, F, Max, Sum

from analytics.models import Recommendation
from analytics.recommendations import newer_snapshot
from analytics.recommendations.common import (
    Finding,
    Tokens,
    Window,
    cost_at,
    examples,
    key_ids,
    money,
    percentile,
    price_line,
    servable,
    share,
    token_sums,
    usd,
)
from gateway.catalog import ModelInfo, get_catalog

KIND = Recommendation.Kind.CHEAPER_MODEL

CAPABILITY_TIERS: dict[str, int] = {
    # OpenAI
    "gpt-4": 3,
    "gpt-4-turbo": 3,
    "gpt-4o": 3,
    "gpt-4.1": 3,
    "gpt-5": 3,
    "gpt-5-chat": 3,
    "gpt-5.1": 3,
    "gpt-5.1-chat": 3,
    "o1": 3,
    "o3": 3,
    "gpt-4o-mini": 2,
    "gpt-4.1-mini": 2,
    "gpt-5-mini": 2,
    "o3-mini": 2,
    "o4-mini": 2,
    "gpt-4.1-nano": 1,
    "gpt-5-nano": 1,
    "gpt-3.5-turbo": 1,
    # Anthropic
    "claude-3-opus": 3,
    "claude-3-5-sonnet": 3,
    "claude-sonnet-4-5": 3,
    "claude-opus-4-5": 3,
    "claude-haiku-4-5": 2,
    # Google
    "gemini-2.5-pro": 3,
    "gemini-2.5-flash": 2,
    "gemini-2.5-flash-lite": 1,
    # Mistral
    "mistral-large": 3,
    "mistral-medium": 3,
    "mistral-small": 2,
    "magistral-small": 2,
    "ministral-14b": 1,
    "ministral-8b": 1,
    "mistral-nemo": 1,
    # Meta Llama
    "llama-3.1-405b": 3,
    "llama-3.3-70b": 2,
    "llama-3.1-70b": 2,
    "llama-3-70b": 2,
    "llama-3.1-8b": 1,
    "llama-3-8b": 1,
}
# Families that think before answering and bill the thinking as output tokens.
REASONING_FAMILIES = frozenset(
    {"o1", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5.1", "magistral-small"}
)

DOWNGRADE_TASKS = frozenset({"classification", "extraction"})
SHORT_OUTPUT_P95_TOKENS = 300  # "short output": 95 % of answers at most this long
MIN_REQUESTS = 50  # successful requests in the scope over 30 days
MIN_SAVINGS_SHARE = Decimal("0.20")  # the candidate must cost at least 20 % less on the same tokens
BASE_CONFIDENCE_SMALLER = 0.7  # a smaller model: verify with a shadow evaluation
BASE_CONFIDENCE_AS_CAPABLE = 0.6  # another model family of the same tier answers differently


def tier(model: ModelInfo) -> int | None:
    return CAPABILITY_TIERS.get(model.family)


def cheapest(
    model: ModelInfo, tokens: Tokens, *, min_tier: int, longest: int
) -> tuple[ModelInfo, Decimal] | None:
    """The cheapest catalogue model of at least `min_tier` for these tokens (see the module docstring)."""
    reasoning = model.family in REASONING_FAMILIES
    candidates = [
        (other, cost_at(other, tokens))
        for other in get_catalog().models
        if other.id != model.id
        and (tier(other) or 0) >= min_tier
        and (reasoning or other.family not in REASONING_FAMILIES)
        and servable(other)
        and (other.context_window or 0) >= longest
    ]
    cheaper = [(other, cost) for other, cost in candidates if cost <= tokens.cost * (1 - MIN_SAVINGS_SHARE)]
    return min(
        cheaper,
        key=lambda c: (c[1], c[0].provider != model.provider, len(c[0].id), c[0].id),
        default=None,
    )


def find(window: Window) -> list[Finding]:
    rows = window.served().filter(fallback_used=False, routing_rule_id=None).exclude(model="")
    totals = rows.aggregate(requests=Count("id"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")))
    catalog = get_catalog()
    groups = (
        rows.values("model", "task_type")
        .annotate(
            **token_sums(),
            **token_sums("recent_", window.recent),
            longest=Max(F("prompt_tokens") + F("completion_tokens")),
        )
        .order_by("model", "task_type")
    )
    by_model: dict[str, list[dict]] = {}
    for group in groups:
        by_model.setdefault(group["model"], []).append(group)

    findings = []
    for model_id, model_groups in by_model.items():
        model = catalog.get(model_id)
        if model is None or tier(model) is None:
            continue
        everything = sum((Tokens.of(g) for g in model_groups), Tokens())
        if newer_snapshot.newer_cheaper(model, everything) is not None:
            continue  # the newer_snapshot rule speaks for this model
        covered = []
        for group in model_groups:
            if tier(model) >= 2 and group["task_type"] in DOWNGRADE_TASKS:
                finding = _smaller(window, rows, model, group, totals)
                if finding is not None:
                    findings.append(finding)
                    covered.append(group["task_type"])
        rest = [group for group in model_groups if group["task_type"] not in covered]
        finding = _as_capable(window, rows, model, rest, covered, totals)
        if finding is not None:
            findings.append(finding)
    return findings


def _smaller(window: Window, rows, model: ModelInfo, group: dict, totals: dict) -> Finding | None:
    tokens, task = Tokens.of(group), group["task_type"]
    if tokens.requests < MIN_REQUESTS:
        return None
    scoped = rows.filter(model=model.id, task_type=task)
    p95 = percentile(scoped, "completion_tokens", 0.95, tokens.requests)
    if p95 is None or p95 > SHORT_OUTPUT_P95_TOKENS:
        return None
    found = cheapest(model, tokens, min_tier=tier(model) - 1, longest=group["longest"] or 0)
    if found is None:
        return None
    suggested, new_cost = found
    p50 = percentile(scoped, "completion_tokens", 0.5, tokens.requests)
    task_label = task.replace("_", " ")
    return _finding(
        window,
        model,
        suggested,
        tokens,
        Tokens.of(group, "recent_"),
        new_cost,
        scope={"model": model.id, "task_type": task, "api_key_ids": key_ids(scoped)},
        title=f"Use {suggested.id} instead of {model.id} for {task_label}",
        detail=(
            f"{tokens.requests:,} {task_label} requests went to {model.id} in the last {window.days} day(s), "
            f"and their answers are short: 95 % of them are at most {p95} tokens long. Short {task_label} is "
            f"work that a smaller model usually does as well: {suggested.id} (a tier-{tier(suggested)} "
            f"model, {model.id} is tier {tier(model)}) would have cost {usd(new_cost)} instead of "
            f"{usd(tokens.cost)}. Run a shadow evaluation to compare its answers with {model.id}'s on your "
            f"own requests, then apply to route {task_label} requests for {model.id} to it."
        ),
        base_confidence=BASE_CONFIDENCE_SMALLER,
        totals=totals,
        evidence={
            "completion_tokens_p50": p50,
            "completion_tokens_p95": p95,
            "example_request_ids": examples(scoped),
        },
    )


def _as_capable(
    window: Window, rows, model: ModelInfo, groups: list[dict], covered: list[str], totals: dict
) -> Finding | None:
    tokens = sum((Tokens.of(g) for g in groups), Tokens())
    if tokens.requests < MIN_REQUESTS:
        return None
    longest = max((g["longest"] or 0 for g in groups), default=0)
    found = cheapest(model, tokens, min_tier=tier(model), longest=longest)
    if found is None:
        return None
    suggested, new_cost = found
    scoped = rows.filter(model=model.id).exclude(task_type__in=covered)
    apart = f" (apart from {', '.join(covered)}, which has its own recommendation)" if covered else ""
    return _finding(
        window,
        model,
        suggested,
        tokens,
        sum((Tokens.of(g, "recent_") for g in groups), Tokens()),
        new_cost,
        scope={"model": model.id, "task_type": "", "api_key_ids": key_ids(scoped)},
        title=f"Use {suggested.id} instead of {model.id}",
        detail=(
            f"{suggested.id} is in the same capability tier as {model.id} (tier {tier(model)}) and costs "
            f"less for the same tokens: ${suggested.input_per_mtok} instead of ${model.input_per_mtok} per "
            f"1M input tokens, ${suggested.output_per_mtok} instead of ${model.output_per_mtok} per 1M "
            f"output tokens. Your {tokens.requests:,} {model.id} requests{apart} would have cost "
            f"{usd(new_cost)} instead of {usd(tokens.cost)}. Models of the same tier still answer "
            "differently: run a shadow evaluation before applying."
        ),
        base_confidence=BASE_CONFIDENCE_AS_CAPABLE,
        totals=totals,
        evidence={
            "task_types": sorted(g["task_type"] or "unclassified" for g in groups),
            "example_request_ids": examples(scoped),
        },
    )


def _finding(
    window: Window,
    model: ModelInfo,
    suggested: ModelInfo,
    tokens: Tokens,
    recent: Tokens,
    new_cost: Decimal,
    *,
    scope: dict,
    title: str,
    detail: str,
    base_confidence: float,
    totals: dict,
    evidence: dict,
) -> Finding:
    savings = tokens.cost - new_cost
    recent_savings = recent.cost - cost_at(suggested, recent) if recent.requests else Decimal(0)
    return Finding(
        kind=KIND,
        scope=scope,
        title=title,
        detail=detail,
        savings=savings,
        recent_savings=recent_savings,
        arithmetic=(
            f"{tokens.requests:,} successful requests in scope cost {usd(tokens.cost)} "
            f"at {model.id}'s prices.\n"
            f"The same tokens at {suggested.id}'s prices: {price_line(suggested, tokens)}.\n"
            f"Saved in the window: {usd(tokens.cost)} − {usd(new_cost)} = {usd(savings)}."
        ),
        requests=tokens.requests,
        base_confidence=base_confidence,
        suggested_model=suggested.id,
        evidence={
            "requests": tokens.requests,
            "recent_requests": recent.requests,
            "share_of_requests": share(tokens.requests, totals["requests"]),
            "share_of_tokens": share(tokens.prompt + tokens.completion, totals["tokens"] or 0),
            "prompt_tokens": tokens.prompt,
            "completion_tokens": tokens.completion,
            "token_share_output": share(tokens.completion, tokens.prompt + tokens.completion),
            "cost_usd": money(tokens.cost),
            "cost_at_suggested_usd": money(new_cost),
            "tier": tier(model),
            "suggested_tier": tier(suggested),
            **evidence,
        },
    )
