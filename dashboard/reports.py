"""What each dashboard page shows, read through the analytics selectors (rollups + the recent raw rows).

Every function here issues a small, fixed number of queries whatever the traffic: totals over a period
are summed by the database from the coarsest rollups (`dashboard.selectors.totals`), series per bucket
come from `analytics.selectors.usage_buckets` (one read per series dimension, the filters applied by the
database), latency from `dashboard.selectors.latency_buckets` and `latency_groups`.
"""

from __future__ import annotations

import calendar
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from accounts.models import ApiKey, User
from analytics import selectors
from analytics.models import Rollup
from analytics.pricing import cost_usd, prices_of
from analytics.selectors import COUNTERS, DAY, HOUR, Performance, Totals, ceil_to, to_datetime
from dashboard import selectors as dashboard_selectors
from dashboard.selectors import Filters, Latency, latency_buckets
from gateway.catalog import get_catalog

ALL_DIMENSIONS = ("model", "api_key_id", "provider", "task_type")


# --- periods ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end) in Unix seconds, read in buckets of `width` seconds (both aligned to it)."""

    key: str  # "24h", "7d", "30d" or "custom"
    start: int
    end: int
    width: int

    @property
    def previous(self) -> Period:
        span = self.end - self.start
        return Period(self.key, self.start - span, self.start, self.width)

    @property
    def seconds(self) -> int:
        return self.end - self.start

    @property
    def unit(self) -> str:
        """What a bucket is, for labels: "hour" or "day"."""
        return "hour" if self.width == HOUR else "day"

    @property
    def bucket_starts(self) -> range:
        return range(self.start, self.end, self.width)

    @property
    def start_datetime(self) -> datetime:
        return to_datetime(self.start)

    @property
    def end_datetime(self) -> datetime:
        return to_datetime(self.end)

    @property
    def label(self) -> str:
        return {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}.get(
            self.key, f"{self.start_datetime:%b %-d} – {to_datetime(self.end - 1):%b %-d, %Y}"
        )

    @property
    def comparison_label(self) -> str:
        return {"24h": "vs previous 24 h", "7d": "vs previous 7 days", "30d": "vs previous 30 days"}.get(
            self.key, "vs previous period"
        )


PRESETS = {"24h": (DAY, HOUR), "7d": (7 * DAY, HOUR), "30d": (30 * DAY, DAY)}


def period_of(key: str, *, start_day: date | None = None, end_day: date | None = None) -> Period:
    """A preset ending with the current bucket, or a custom span of whole UTC days (both days included)."""
    now = selectors.to_unix(selectors.now())
    if key == "custom" and start_day and end_day:
        start = int(datetime.combine(start_day, datetime.min.time(), tzinfo=UTC).timestamp())
        end = int(datetime.combine(end_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp())
        width = DAY if end - start > 3 * DAY else HOUR
        return Period("custom", start, end, width)
    span, width = PRESETS.get(key, PRESETS["24h"])
    end = ceil_to(now + 1, width)
    return Period(key if key in PRESETS else "24h", end - span, end, width)


def change(current: float | Decimal | None, previous: float | Decimal | None) -> float | None:
    """Relative change in percent, None when there is nothing to compare with."""
    if current is None or previous is None or not previous:
        return None
    return float((Decimal(str(current)) - Decimal(str(previous))) / Decimal(str(previous)) * 100)


# --- totals ---------------------------------------------------------------------------------------------


def _add(target: Totals, source: Totals) -> None:
    into, values = target.__dict__, source.__dict__  # a dataclass's fields: the fastest way to sum them
    for name in COUNTERS:
        into[name] += values[name]
    into["cost_usd"] += values["cost_usd"]


def tokens(totals: Totals) -> int:
    return totals.prompt_tokens + totals.completion_tokens


def error_rate(totals: Totals) -> float | None:
    return totals.errors / totals.requests * 100 if totals.requests else None


@dataclass
class Usage:
    """Filtered usage over a period (with the one before it, for comparisons), in every shape the pages
    draw."""

    period: Period
    current: Totals = field(default_factory=Totals)
    previous: Totals = field(default_factory=Totals)
    by_bucket: dict[int, Totals] = field(default_factory=dict)
    by_bucket_model: dict[int, dict[str, Totals]] = field(default_factory=dict)
    by_bucket_task: dict[int, dict[str, Totals]] = field(default_factory=dict)
    by: dict[str, dict[str, Totals]] = field(default_factory=dict)  # dimension → value → Totals
    by_model_task: dict[tuple[str, str], Totals] = field(default_factory=dict)
    options: dict[str, set[str]] = field(default_factory=dict)  # values seen, for the filter menus
    cache_hits: dict[str, Totals] = field(default_factory=dict)  # model → response-cache hits
    previous_cache_hits: dict[str, Totals] = field(default_factory=dict)


def _label(name: str, value: str | None) -> str:
    return value or ("(unclassified)" if name == "task_type" else "(none)")


def usage(
    *,
    user_id: int,
    period: Period,
    filters: Filters,
    series: Sequence[str] = ("model",),
    compare: bool = True,
) -> Usage:
    """The period's totals per group and per bucket, and (if `compare`) the previous period's totals.

    Totals over a whole period are summed by the database from the coarsest rollups
    (`dashboard.selectors.totals`); the per-bucket series come from `analytics.selectors.usage_buckets`,
    one read per `series` dimension ("model", "task_type"), filtered by the database. Two queries per
    read (rollups, raw window): at most eight, whatever the traffic.
    """
    result = Usage(period=period, by={name: {} for name in ALL_DIMENSIONS})
    result.options = {name: set() for name in ALL_DIMENSIONS}
    for key, totals in dashboard_selectors.totals(
        user_id=user_id, start=period.start, end=period.end, group_by=ALL_DIMENSIONS, filters=filters
    ).items():
        values = dict(zip(ALL_DIMENSIONS, key, strict=True))
        for name, value in values.items():
            if value:
                result.options[name].add(value)
        _add(result.current, totals)
        model, task = _label("model", values["model"]), _label("task_type", values["task_type"])
        _add(result.by_model_task.setdefault((model, task), Totals()), totals)
        for name in ALL_DIMENSIONS:
            _add(result.by[name].setdefault(_label(name, values[name]), Totals()), totals)
        if values["provider"] == CACHE_PROVIDER:
            _add(result.cache_hits.setdefault(values["model"] or "", Totals()), totals)
    if compare:
        previous = period.previous
        for (model, provider), totals in dashboard_selectors.totals(
            user_id=user_id,
            start=previous.start,
            end=previous.end,
            group_by=("model", "provider"),
            filters=filters,
        ).items():
            _add(result.previous, totals)
            if provider == CACHE_PROVIDER:
                _add(result.previous_cache_hits.setdefault(model or "", Totals()), totals)

    result.by_bucket = {ts: Totals() for ts in period.bucket_starts}
    result.by_bucket_model = {ts: {} for ts in period.bucket_starts}
    result.by_bucket_task = {ts: {} for ts in period.bucket_starts}
    per_value = {"model": result.by_bucket_model, "task_type": result.by_bucket_task}
    # One read per series dimension rather than one grouped by all of them: a week of hours by model and
    # task type is ~6,000 groups to convert, by each alone ~1,000.
    for n, name in enumerate(series or [None]):
        for bucket in selectors.usage_buckets(
            user_id=user_id,
            start=period.start,
            end=period.end,
            width=period.width,
            group_by=[name] if name else [],
            where=filters.as_dict(),
        ):
            for key, totals in bucket.groups.items():
                if n == 0:
                    _add(result.by_bucket[bucket.start], totals)
                if name:
                    target = per_value[name][bucket.start]
                    _add(target.setdefault(_label(name, key[0]), Totals()), totals)
    return result


def ranked(groups: dict[str, Totals], *, by: str = "cost_usd", limit: int | None = None):
    """(label, Totals) pairs, largest first."""
    items = sorted(groups.items(), key=lambda item: (-getattr(item[1], by), item[0]))
    return items[:limit] if limit else items


# --- latency --------------------------------------------------------------------------------------------


@dataclass
class LatencyReport:
    current: Latency
    previous: Latency
    by_bucket: dict[int, Latency]


def latency(*, user_id: int, period: Period, filters: Filters) -> LatencyReport:
    """Latency and time to first token of the period, per bucket, and of the previous period as a whole
    (from the coarsest rollups)."""
    by_bucket = {
        ts: figures
        for (ts, _), figures in latency_buckets(
            user_id=user_id,
            start=period.start,
            end=period.end,
            width=period.width,
            filters=filters,
            sketches=("latency", "ttft"),
        ).items()
    }
    current = Latency()
    for figures in by_bucket.values():
        current.merge(figures)
    previous = dashboard_selectors.latency_groups(
        user_id=user_id,
        start=period.previous.start,
        end=period.previous.end,
        filters=filters,
        sketches=("latency",),  # the cards compare latency only
    ).get((), Latency())
    return LatencyReport(current=current, previous=previous, by_bucket=by_bucket)


# --- cache savings --------------------------------------------------------------------------------------

CACHE_PROVIDER = "cache"  # the provider of a request answered by the response cache (gateway.metering)


def cache_savings(usage: Usage) -> tuple[Decimal, Decimal]:
    """What response-cache hits saved in the period and in the previous one.

    A hit is logged with provider "cache", cost 0 and the cached answer's tokens, and the log writer prices
    what it saved at the model's catalogue price (`cost_saved_usd`). Rollups keep hits apart (provider is
    one of their dimensions), so the same sum is their tokens at the catalogue price: no raw rows read.
    """
    catalog = get_catalog()

    def saved(by_model: dict[str, Totals]) -> Decimal:
        total = Decimal(0)
        for model, totals in by_model.items():
            cost = cost_usd(
                prices_of(catalog.get(model)),
                prompt_tokens=totals.prompt_tokens,
                cached_tokens=totals.cached_tokens,
                cache_write_tokens=totals.cache_write_tokens,
                completion_tokens=totals.completion_tokens,
            )
            total += cost or 0
        return total

    return saved(usage.cache_hits), saved(usage.previous_cache_hits)


# --- month to date and budgets ---------------------------------------------------------------------------


@dataclass
class MonthToDate:
    month_start: datetime
    month_end: datetime
    spent: Decimal
    by_key: dict[str, Decimal]
    projected: Decimal
    elapsed_fraction: float

    @property
    def days(self) -> int:
        return (self.month_end - self.month_start).days

    @property
    def day(self) -> int:
        """Today's day of the month (UTC)."""
        return math.ceil(self.elapsed_fraction * self.days) or 1


def month_to_date(*, user_id: int) -> MonthToDate:
    """This calendar month's (UTC) spend, per key, and its projection to the month's end at the same pace."""
    now = selectors.now().astimezone(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(now.year, now.month)[1]
    month_end = month_start + timedelta(days=days)
    start, end = selectors.to_unix(month_start), ceil_to(selectors.to_unix(now) + 1, DAY)
    by_key: dict[str, Decimal] = defaultdict(Decimal)
    spent = Decimal(0)
    for bucket in selectors.usage_buckets(
        user_id=user_id, start=start, end=end, width=DAY, group_by=("api_key_id",)
    ):
        for (key_id,), totals in bucket.groups.items():
            by_key[key_id or ""] += totals.cost_usd
            spent += totals.cost_usd
    elapsed = max((now - month_start).total_seconds(), 3600.0)  # no wild projections in the first hour
    fraction = min(elapsed / (month_end - month_start).total_seconds(), 1.0)
    projected = (spent / Decimal(str(fraction))).quantize(Decimal("0.01")) if spent else Decimal(0)
    return MonthToDate(month_start, month_end, spent, dict(by_key), projected, fraction)


@dataclass
class KeyBudget:
    key: ApiKey
    spent: Decimal
    budget: Decimal | None
    inherited: bool

    @property
    def percent(self) -> float | None:
        if not self.budget:
            return None
        return float(self.spent / self.budget * 100)


def key_budgets(*, user: User, keys: list[ApiKey], spent: dict[str, Decimal]) -> list[KeyBudget]:
    rows = []
    for key in keys:
        budget = key.monthly_budget_usd if key.monthly_budget_usd is not None else user.monthly_budget_usd
        rows.append(
            KeyBudget(
                key=key,
                spent=spent.get(str(key.id), Decimal(0)),
                budget=budget,
                inherited=key.monthly_budget_usd is None and budget is not None,
            )
        )
    return rows


def filter_options(*, user_id: int, days: int = 90) -> dict[str, set[str]]:
    """Models, providers and task types of the last `days` days, for the filter menus (one query on the
    day rollups, whose rows are few)."""
    since = selectors.now() - timedelta(days=days)
    rows = (
        Rollup.objects.filter(user_id=user_id, granularity=Rollup.Granularity.DAY, bucket_start__gte=since)
        .order_by()
        .values_list("model", "provider", "task_type")
        .distinct()
    )
    options: dict[str, set[str]] = {"model": set(), "provider": set(), "task_type": set()}
    for model, provider, task_type in rows:
        for name, value in (("model", model), ("provider", provider), ("task_type", task_type)):
            if value:
                options[name].add(value)
    return options


# --- performance ----------------------------------------------------------------------------------------


@dataclass
class PerformanceReport:
    groups: list[Performance]  # per model × provider, busiest first
    over_time: dict[tuple[int, str], Latency]  # (bucket start, model) → latency, for the top models
    top_models: list[str]  # the models of the TOP_SERIES busiest groups, in that order (with repeats)


TOP_SERIES = 5


def performance(*, user_id: int, period: Period) -> PerformanceReport:
    """Per model × provider over the period, busiest first, and the busiest models' latency per bucket.

    Counters are summed by the database. Sketches are merged from the rollups: when the period's buckets
    are its coarsest cover too (day buckets, or a range without a whole day), one read of the buckets per
    model × provider gives both the period's sketches and the series; otherwise the period's sketches
    come from the coarsest rollups and the series reads only the busiest models' latency.
    """
    counted = dashboard_selectors.totals(
        user_id=user_id, start=period.start, end=period.end, group_by=("model", "provider")
    )
    ranked = sorted(counted, key=lambda group: (-counted[group].requests, group[0] or "", group[1] or ""))
    top_models = [model for model, _ in ranked[:TOP_SERIES]]
    width = period.width
    over_time: dict[tuple[int, str], Latency] = {}
    if dashboard_selectors.covered_alike(period.start, period.end, width):
        sketched: dict[tuple, Latency] = {}
        for (ts, (model, provider)), figures in latency_buckets(
            user_id=user_id, start=period.start, end=period.end, width=width, group_by=("model", "provider")
        ).items():
            sketched.setdefault((model, provider), Latency()).merge(figures)
            if model in top_models:
                over_time.setdefault((ts, model), Latency()).merge(figures)
    else:
        sketched = dashboard_selectors.latency_groups(
            user_id=user_id, start=period.start, end=period.end, group_by=("model", "provider")
        )
        for (ts, (model,)), figures in latency_buckets(
            user_id=user_id,
            start=period.start,
            end=period.end,
            width=width,
            group_by=("model",),
            sketches=("latency",),
            models=sorted(set(top_models)),
        ).items():
            over_time[(ts, model)] = figures
    groups = []
    for model, provider in ranked:
        figures = sketched.get((model, provider), Latency())
        groups.append(
            Performance(
                model=model,
                provider=provider,
                totals=counted[(model, provider)],
                latency=figures.latency,
                ttft=figures.ttft,
                overhead=figures.overhead,
            )
        )
    return PerformanceReport(groups=groups, over_time=over_time, top_models=top_models)


def performance_merged(groups: list[Performance], *, key) -> list[Performance]:
    """The groups merged by `key` (a provider, or None for everything), busiest first."""
    merged: dict = {}
    for perf in groups:
        name = key(perf)
        target = merged.setdefault(name, Performance(model=None, provider=name if name is not None else None))
        _add(target.totals, perf.totals)
        for attr in ("latency", "ttft", "overhead"):
            into = getattr(target, attr)
            for index, count in getattr(perf, attr).items():
                into[index] = into.get(index, 0) + count
    return sorted(merged.values(), key=lambda p: (-p.totals.requests, p.provider or ""))
