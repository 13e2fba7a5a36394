"""What every rule shares: the window of traffic it studies, the finding it returns, and the arithmetic.

A rule reads the last WINDOW_DAYS of raw request-log rows (they are kept 30 days) with database aggregation,
and the last RECENT_DAYS separately, so that an estimate can say whether the pattern is steady. Savings are
measured over the observed window and scaled to a 30-day month:

    monthly = savings in the window × 30 / observed days

where the observed days are the whole days since the user's first request in the window (at most 30), so a
user who started a week ago is not projected as if they had been quiet for three weeks.

Confidence (0–1) = the rule's base confidence (how direct the saving is)
                 × sample size: n / (n + SAMPLE_HALF)  (½ at SAMPLE_HALF requests)
                 × stability:   ½ + ½ × (smaller / larger of the monthly projections from the last 7 days and
                                from the whole window); ½ when fewer than 8 days were observed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from django.db.models import Count, F, Min, Q, QuerySet, Sum, Value
from django.db.models.functions import Greatest

from analytics.models import RequestLog
from analytics.pricing import MILLION, cost_usd, prices_of
from analytics.selectors import MODEL_ENDPOINTS
from gateway.catalog import ModelInfo
from gateway.providers import is_configured

WINDOW_DAYS = 30
RECENT_DAYS = 7
MONTH_DAYS = 30
SAMPLE_HALF = 50
EXAMPLES = 5
CENT = Decimal("0.0001")  # estimates are stored to 4 decimal places


@dataclass(frozen=True)
class Window:
    user_id: int
    now: datetime
    start: datetime  # now − 30 days
    recent_start: datetime  # now − 7 days
    days: int  # observed days, 1–30

    @classmethod
    def ending(cls, *, user_id: int, now: datetime) -> Window:
        start = now - timedelta(days=WINDOW_DAYS)
        first = _model_rows(user_id, start, now).aggregate(first=Min("created_at"))["first"]
        days = WINDOW_DAYS
        if first is not None:
            days = min(max(math.ceil((now - first) / timedelta(days=1)), 1), WINDOW_DAYS)
        return cls(user_id, now, start, now - timedelta(days=RECENT_DAYS), days)

    @property
    def recent_days(self) -> int:
        return min(RECENT_DAYS, self.days)

    def rows(self) -> QuerySet[RequestLog]:
        """The user's model requests in the window, answered by a provider (not from the response cache)."""
        return _model_rows(self.user_id, self.start, self.now).filter(cache_hit=False)

    def served(self) -> QuerySet[RequestLog]:
        """Successful requests with a known cost."""
        return self.rows().filter(status_code=200, cost_unknown=False)

    @property
    def recent(self) -> Q:
        return Q(created_at__gte=self.recent_start)

    def monthly(self, amount: Decimal) -> Decimal:
        return amount * MONTH_DAYS / self.days

    def recent_monthly(self, amount: Decimal) -> Decimal:
        return amount * MONTH_DAYS / self.recent_days


def _model_rows(user_id: int, start: datetime, end: datetime) -> QuerySet[RequestLog]:
    return RequestLog.objects.filter(
        user_id=user_id, endpoint__in=MODEL_ENDPOINTS, created_at__gte=start, created_at__lt=end
    )


@dataclass
class Finding:
    """What a rule found; `generate_for_user` turns it into a Recommendation."""

    kind: str
    scope: dict[str, Any]
    title: str
    detail: str
    savings: Decimal  # over the observed window
    recent_savings: Decimal  # over the last RECENT_DAYS
    arithmetic: str  # how `savings` was computed; the monthly scaling is appended
    requests: int  # the sample the estimate rests on
    base_confidence: float
    evidence: dict[str, Any] = field(default_factory=dict)
    suggested_model: str = ""

    def monthly(self, window: Window) -> Decimal:
        return window.monthly(self.savings).quantize(CENT, rounding=ROUND_HALF_UP)

    def confidence(self, window: Window) -> float:
        size = self.requests / (self.requests + SAMPLE_HALF)
        stability = 0.5
        if window.days > RECENT_DAYS:
            whole, recent = window.monthly(self.savings), window.recent_monthly(self.recent_savings)
            high = max(whole, recent)
            stability = float(min(whole, recent) / high) if high > 0 else 0.0
        return round(self.base_confidence * size * (0.5 + 0.5 * stability), 2)

    def full_arithmetic(self, window: Window) -> str:
        return (
            f"{self.arithmetic}\n"
            f"Per month: {usd(self.savings)} × {MONTH_DAYS} / {window.days} observed day(s) = "
            f"{usd(window.monthly(self.savings))} ≈ {usd(self.monthly(window))}."
        )


def fingerprint(kind: str, scope: dict[str, Any]) -> str:
    """Kind and scope, hashed. `api_key_ids` (the keys the traffic came from) does not identify the advice."""
    identity = {name: value for name, value in scope.items() if name != "api_key_ids"}
    return hashlib.sha256(orjson.dumps([kind, identity], option=orjson.OPT_SORT_KEYS)).hexdigest()


# --- numbers ---------------------------------------------------------------------------------------------


def money(amount: Decimal) -> str:
    """Exact USD as a decimal string, every digit and no trailing zeros (the same on every database)."""
    return format(amount.normalize(), "f") if amount else "0"


def usd(amount: Decimal) -> str:
    """Exact dollars for the arithmetic."""
    return f"${money(amount)}"


def share(part: int | Decimal, whole: int | Decimal) -> float:
    return round(float(part) / float(whole), 4) if whole else 0.0


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def token_sums(prefix: str = "", condition: Q | None = None) -> dict[str, Any]:
    """Aggregates of tokens per price class and cost, optionally only over rows matching `condition`."""
    uncached = Greatest(F("prompt_tokens") - F("cached_tokens") - F("cache_write_tokens"), Value(0))
    return {
        f"{prefix}requests": Count("id", filter=condition),
        f"{prefix}uncached": Sum(uncached, filter=condition),
        f"{prefix}cached": Sum("cached_tokens", filter=condition),
        f"{prefix}cache_write": Sum("cache_write_tokens", filter=condition),
        f"{prefix}prompt": Sum("prompt_tokens", filter=condition),
        f"{prefix}completion": Sum("completion_tokens", filter=condition),
        f"{prefix}cost": Sum("cost_usd", filter=condition),
    }


@dataclass(frozen=True)
class Tokens:
    requests: int = 0
    uncached: int = 0
    cached: int = 0
    cache_write: int = 0
    completion: int = 0
    cost: Decimal = Decimal(0)

    @classmethod
    def of(cls, row: dict, prefix: str = "") -> Tokens:
        return cls(
            requests=row[f"{prefix}requests"] or 0,
            uncached=row[f"{prefix}uncached"] or 0,
            cached=row[f"{prefix}cached"] or 0,
            cache_write=row[f"{prefix}cache_write"] or 0,
            completion=row[f"{prefix}completion"] or 0,
            cost=row[f"{prefix}cost"] or Decimal(0),
        )

    @property
    def prompt(self) -> int:
        return self.uncached + self.cached + self.cache_write

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.requests + other.requests,
            self.uncached + other.uncached,
            self.cached + other.cached,
            self.cache_write + other.cache_write,
            self.completion + other.completion,
            self.cost + other.cost,
        )


def cost_at(model: ModelInfo, tokens: Tokens) -> Decimal:
    """What these tokens cost at the model's catalogue prices (analytics.pricing, summed: it is linear)."""
    cost = cost_usd(
        prices_of(model),
        prompt_tokens=tokens.prompt,
        cached_tokens=tokens.cached,
        cache_write_tokens=tokens.cache_write,
        completion_tokens=tokens.completion,
    )
    assert cost is not None, f"{model.id} has no price"
    return cost


def price_line(model: ModelInfo, tokens: Tokens) -> str:
    """`cost_at` spelled out: tokens × price per 1M tokens, per price class."""
    cached = model.cached_input_per_mtok if model.cached_input_per_mtok is not None else model.input_per_mtok
    write = model.cache_write_per_mtok if model.cache_write_per_mtok is not None else model.input_per_mtok
    parts = [f"{tokens.uncached:,} input × ${model.input_per_mtok}"]
    if tokens.cached:
        parts.append(f"{tokens.cached:,} cached × ${cached}")
    if tokens.cache_write:
        parts.append(f"{tokens.cache_write:,} cache-write × ${write}")
    parts.append(f"{tokens.completion:,} output × ${model.output_per_mtok}")
    return f"({' + '.join(parts)}) / 1M = {usd(cost_at(model, tokens))}"


def per_mtok(tokens: int, price: Decimal) -> Decimal:
    return tokens * price / MILLION


def percentile(rows: QuerySet, column: str, q: float, count: int) -> int | None:
    """The nearest-rank percentile of a column, read with one ordered, offset query."""
    if not count:
        return None
    index = max(math.ceil(q * count) - 1, 0)
    return rows.order_by(column).values_list(column, flat=True)[index]


def examples(rows: QuerySet) -> list[str]:
    return list(rows.order_by("-created_at").values_list("request_id", flat=True)[:EXAMPLES])


def key_ids(rows: QuerySet) -> list[str]:
    keys = rows.exclude(api_key=None).order_by().values_list("api_key_id", flat=True).distinct()
    return sorted(str(key) for key in keys)


def servable(model: ModelInfo) -> bool:
    """Priced (above zero: a free, self-hosted model costs hardware the catalogue cannot compare), and
    served by a provider the operator has configured."""
    return (
        model.has_price
        and (model.input_per_mtok > 0 or model.output_per_mtok > 0)
        and any(is_configured(m.provider) for m in (model, *model.hosts))
    )
