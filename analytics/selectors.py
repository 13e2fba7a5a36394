"""Reads for the analytics APIs: every figure, over any time range, exact and at most seconds old.

How a time range is read
------------------------
A finished request must show in every figure within 5 s, but the rollups (analytics.rollups, run every
30 s) lag behind the log. So every aggregate splits its range at one boundary:

    boundary = the start of the current UTC minute − ANALYTICS_RAW_WINDOW_MINUTES (default 10)

- **[boundary, end)** is read from raw `RequestLog` rows (grouped in the database);
- **[start, boundary)** is read from `Rollup` rows only. Rollups run every 30 s, so every bucket that ends
  before the boundary was already complete when it was last rolled: the window is many rollup periods wide.

The rollup part is covered with the largest aligned buckets that fit wholly inside it: whole UTC days, then
whole hours at either end of the days, then minutes at either end of the hours (`rollup_cover`). Each
instant belongs to exactly one piece, each piece reads one granularity, and the boundary is minute-aligned,
so a request is counted once — from a rollup if it is older than the boundary, from its raw row otherwise —
never twice and never missed. Ranges are therefore minute-aligned; the APIs align their ranges to the width
of the buckets they report (a day bucket never reads hour rollups beyond its own day, nor a minute bucket an
hour rollup).

Only model requests (`MODEL_ENDPOINTS`) count in aggregates and lists: the analytics routes leave log rows
too, and reading your usage must not change it. The rollups must count the same rows.

Money is summed as `Decimal` (the database's SUM over numeric columns, then `Decimal` additions): the totals
equal the sum of the rows' `cost_usd`. Rows with an unknown price (`cost_usd` NULL) add nothing and are
counted in `cost_unknown_requests`. (SQLite keeps numbers to 15 significant digits, so there sums at 12
decimal places are exact below $1,000; PostgreSQL's numeric is exact at any size.)

Cost line items (input / cached input / cache write / output) are split from the raw rows' token counts and
the prices recorded on them (`pricing`), grouped in the database by model and prices: the split is exact and
adds up to the rows' `cost_usd`. Rollups carry no prices, so line items read raw rows over the whole range
while they are kept (REQUEST_LOG_RETENTION_DAYS); buckets older than that come from the rollups as one
unsplit line item per model (labelled with the model alone), so totals stay exact there too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Greatest, Trunc
from django.utils import timezone

from analytics import sketch
from analytics.models import RequestLog, Rollup, rollup_model
from analytics.pricing import MILLION

MODEL_ENDPOINTS = ("chat.completions",)

MINUTE, HOUR, DAY = 60, 3600, 86400
# Seconds per granularity ("day", "hour", "minute"): rollup granularities and the APIs' bucket widths.
STEPS = {Rollup.Granularity.DAY: DAY, Rollup.Granularity.HOUR: HOUR, Rollup.Granularity.MINUTE: MINUTE}
_COARSEST_FIRST = (Rollup.Granularity.DAY, Rollup.Granularity.HOUR, Rollup.Granularity.MINUTE)

# The dimensions a figure can be grouped by: API name → column (the same on RequestLog and Rollup).
DIMENSIONS = {"model": "model", "api_key_id": "api_key", "provider": "provider", "task_type": "task_type"}

COUNTERS = (
    "requests",
    "errors_client",
    "errors_rate_limit",
    "errors_server",
    "errors_cancelled",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_unknown_requests",
)

_CLIENT_ERROR = Q(status_code__gte=400, status_code__lt=500) & ~Q(status_code__in=(429, 499))
_RAW_AGGREGATES = {
    "requests": Count("id"),
    "errors_client": Count("id", filter=_CLIENT_ERROR),
    "errors_rate_limit": Count("id", filter=Q(status_code=429)),
    "errors_server": Count("id", filter=Q(status_code__gte=500)),
    "errors_cancelled": Count("id", filter=Q(status_code=499)),
    "prompt_tokens": Sum("prompt_tokens"),
    "cached_tokens": Sum("cached_tokens"),
    "cache_write_tokens": Sum("cache_write_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "reasoning_tokens": Sum("reasoning_tokens"),
    "cost_unknown_requests": Count("id", filter=Q(cost_unknown=True)),
    "cost_usd": Sum("cost_usd"),
}
_ROLLUP_AGGREGATES = {name: Sum(name) for name in (*COUNTERS, "cost_usd")}
SUMMED = (*COUNTERS, "cost_usd")  # Totals' fields, in order


def now() -> datetime:
    """The one clock analytics reads (tests pin it)."""
    return timezone.now()


# --- time ------------------------------------------------------------------------------------------------


def to_datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def to_unix(moment: datetime) -> int:
    return int(moment.timestamp())


def floor_to(ts: int, step: int) -> int:
    return ts - ts % step


def ceil_to(ts: int, step: int) -> int:
    return -floor_to(-ts, step)


def raw_boundary(at: datetime | None = None) -> int:
    """Unix seconds: rollups answer before it, raw rows from it on (minute-aligned)."""
    ts = to_unix(at or now())
    return floor_to(ts, MINUTE) - settings.ANALYTICS_RAW_WINDOW_MINUTES * MINUTE


def rollup_cover(start: int, end: int, coarsest: str = Rollup.Granularity.DAY) -> list[tuple[str, int, int]]:
    """[start, end) (minute-aligned) as (granularity, from, to) pieces of the largest aligned buckets.

    Days where whole days fit, hours at either side of them, minutes at either side of the hours; no
    granularity coarser than `coarsest`. The pieces tile the range exactly.
    """
    if start % MINUTE or end % MINUTE:
        raise ValueError("rollup ranges are minute-aligned")
    levels = _COARSEST_FIRST[_COARSEST_FIRST.index(coarsest) :]
    pieces: list[tuple[str, int, int]] = []

    def cover(lo: int, hi: int, level: int) -> None:
        if lo >= hi:
            return
        granularity = levels[level]
        if level == len(levels) - 1:
            pieces.append((granularity, lo, hi))
            return
        step = STEPS[granularity]
        first, last = ceil_to(lo, step), floor_to(hi, step)
        if first < last:
            cover(lo, first, level + 1)
            pieces.append((granularity, first, last))
            cover(last, hi, level + 1)
        else:
            cover(lo, hi, level + 1)

    cover(start, end, 0)
    return pieces


def rollup_reads(
    user_id: int, start: int, end: int, coarsest: str, columns: Sequence[str] = ()
) -> list[QuerySet]:
    """The rollup rows of [start, end) in its largest aligned buckets (rollup_cover), as the querysets to
    read one after the other: for a read that groups or filters by `columns` (Rollup's column names), the
    hour and day pieces come from LatencyRollup when it can serve them (analytics.models.rollup_model)."""
    pieces: dict[type, Q] = {}
    for granularity, lo, hi in rollup_cover(start, end, coarsest):
        source = rollup_model(granularity, columns)
        piece = Q(
            granularity=granularity, bucket_start__gte=to_datetime(lo), bucket_start__lt=to_datetime(hi)
        )
        pieces[source] = pieces[source] | piece if source in pieces else piece
    return [source.objects.filter(covered, user_id=user_id) for source, covered in pieces.items()]


def union_all(querysets: Sequence[QuerySet]) -> QuerySet:
    """One query for querysets of the same columns (UNION ALL), or the one queryset itself."""
    return querysets[0].union(*querysets[1:], all=True) if len(querysets) > 1 else querysets[0]


def _model_rows(user_id: int, start: int, end: int) -> QuerySet[RequestLog]:
    return RequestLog.objects.filter(
        user_id=user_id,
        endpoint__in=MODEL_ENDPOINTS,
        created_at__gte=to_datetime(start),
        created_at__lt=to_datetime(end),
    )


def _split(start: int, end: int, at: datetime | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """[start, end) as (rollup part, raw part)."""
    boundary = raw_boundary(at)
    return (start, min(end, boundary)), (max(start, boundary), end)


# --- totals per bucket and group --------------------------------------------------------------------------


@dataclass
class Totals:
    requests: int = 0
    errors_client: int = 0
    errors_rate_limit: int = 0
    errors_server: int = 0
    errors_cancelled: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_unknown_requests: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)

    def add(self, row: dict[str, Any]) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + (row.get(name) or 0))
        self.cost_usd += row.get("cost_usd") or Decimal(0)

    @classmethod
    def of(cls, sums: Sequence) -> Totals:
        """Totals from aggregate values in SUMMED order (an empty SUM is NULL: 0)."""
        *counts, cost = sums
        return cls(*(n or 0 for n in counts), cost or Decimal(0))

    @property
    def errors(self) -> int:
        return self.errors_client + self.errors_rate_limit + self.errors_server + self.errors_cancelled


Group = tuple  # the values of the grouped dimensions, in the order asked


@dataclass
class Bucket:
    start: int
    end: int
    groups: dict[Group, Totals] = field(default_factory=dict)


_WIDTH_GRANULARITY = {seconds: granularity for granularity, seconds in STEPS.items()}


def usage_buckets(
    *,
    user_id: int,
    start: int,
    end: int,
    width: int,
    group_by: Sequence[str] = (),
    where: dict[str, str] | None = None,
    at: datetime | None = None,
) -> list[Bucket]:
    """Totals per bucket of `width` seconds (60, 3600, 86400) over [start, end), both aligned to it.

    Every bucket is returned, empty ones too. `group_by` names DIMENSIONS; each bucket holds one Totals
    per combination of their values that had requests. `where` keeps the requests with these DIMENSIONS
    values only (filtered by the database).
    """
    if start % width or end % width:
        raise ValueError("usage ranges are aligned to the bucket width")
    kind = _WIDTH_GRANULARITY[width]
    columns = [DIMENSIONS[name] for name in group_by]
    exact = {DIMENSIONS[name]: value for name, value in (where or {}).items()}
    buckets = {ts: Bucket(ts, ts + width) for ts in range(start, end, width)}
    (rolled_lo, rolled_hi), (raw_lo, raw_hi) = _split(start, end, at)

    reads = []
    for rows in rollup_reads(user_id, rolled_lo, rolled_hi, kind, [*columns, *exact]):
        reads.append((rows.filter(**exact), "bucket_start", _ROLLUP_AGGREGATES))
    if raw_lo < raw_hi:
        reads.append((_model_rows(user_id, raw_lo, raw_hi).filter(**exact), "created_at", _RAW_AGGREGATES))
    n = len(columns)
    grouped = [
        rows.annotate(bucket=Trunc(moment, kind, tzinfo=UTC))
        .values_list("bucket", *columns)
        .annotate(**{name: aggregates[name] for name in SUMMED})  # in Totals' order, for Totals.of
        .order_by()
        for rows, moment, aggregates in reads
    ]
    if grouped:  # rollups (LatencyRollup's and Rollup's) and raw rows, in one query; tuples, not dicts:
        for bucket_at, *values in union_all(grouped):  # thousands of rows for a week of hours
            groups = buckets[floor_to(to_unix(bucket_at), width)].groups
            key = tuple(None if value is None else str(value) for value in values[:n])
            found = groups.get(key)
            if found is None:
                groups[key] = Totals.of(values[n:])
            else:
                found.add(dict(zip(SUMMED, values[n:], strict=True)))
    return list(buckets.values())


def _dimension_value(value: Any) -> Any:
    return None if value is None else str(value)


# --- cost line items -------------------------------------------------------------------------------------

LINE_ITEM_CLASSES = (
    ("input", "uncached_tokens", "input_per_mtok"),
    ("cached input", "cached_tokens", "cached_input_per_mtok"),
    ("cache write", "cache_write_tokens", "cache_write_per_mtok"),
    ("output", "completion_tokens", "output_per_mtok"),
)


def _line_items(row: dict) -> Iterator[tuple[str, int, Decimal]]:
    """(label, tokens, USD per 1M tokens) of each price class a grouped row used (as pricing.cost_usd)."""
    prices = row["pricing"]
    input_price = Decimal(prices["input_per_mtok"])
    for label, tokens_name, price_key in LINE_ITEM_CLASSES:
        tokens = row[tokens_name] or 0
        if tokens:
            price = prices.get(price_key)
            yield label, tokens, input_price if price is None else Decimal(price)


def cost_line_item_buckets(
    *,
    user_id: int,
    start: int,
    end: int,
    width: int,
    group_by: Sequence[str] = (),
    at: datetime | None = None,
) -> list[Bucket]:
    """Cost per bucket and line item ("<model>, input", "<model>, output", ...), optionally grouped further.

    The groups are (line_item, *group_by values); each Totals carries only `cost_usd`. Buckets from the
    raw-log retention horizon on are split from the raw rows (`_raw_line_items`); older buckets, whose raw
    rows may have been pruned, come from the rollups, which carry no prices: one line item per model,
    labelled with the model alone. Either way the line items add up to the bucket's cost.
    """
    if start % width or end % width:
        raise ValueError("cost ranges are aligned to the bucket width")
    horizon = to_unix(at or now()) - settings.REQUEST_LOG_RETENTION_DAYS * DAY
    split_from = min(max(ceil_to(horizon, width), start), end)
    buckets: list[Bucket] = []
    if start < split_from:
        by_model = ["model", *(name for name in group_by if name != "model")]
        for bucket in usage_buckets(
            user_id=user_id, start=start, end=split_from, width=width, group_by=by_model, at=at
        ):
            groups = {}
            for key, totals in bucket.groups.items():
                values = dict(zip(by_model, key, strict=True))
                groups[(key[0], *(values[name] for name in group_by))] = Totals(cost_usd=totals.cost_usd)
            buckets.append(Bucket(bucket.start, bucket.end, groups))
    if split_from < end:
        buckets += _raw_line_items(user_id=user_id, start=split_from, end=end, width=width, group_by=group_by)
    return buckets


def _raw_line_items(
    *, user_id: int, start: int, end: int, width: int, group_by: Sequence[str]
) -> list[Bucket]:
    """Line items from raw rows and the prices they recorded.

    Tokens of each price class are summed in the database per bucket × model × prices, then priced, so the
    split is exact: a row's cost is linear in its tokens (pricing.cost_usd), and the line items add up to
    the rows' cost_usd.
    """
    kind = _WIDTH_GRANULARITY[width]
    columns = [DIMENSIONS[name] for name in group_by]
    buckets = {ts: Bucket(ts, ts + width) for ts in range(start, end, width)}
    uncached = Greatest(F("prompt_tokens") - F("cached_tokens") - F("cache_write_tokens"), Value(0))
    rows = (
        _model_rows(user_id, start, end)
        .filter(cost_unknown=False, pricing__isnull=False)
        .annotate(bucket=Trunc("created_at", kind, tzinfo=UTC))
        .values("bucket", *dict.fromkeys(["model", "pricing", *columns]))
        .annotate(
            uncached_tokens=Sum(uncached),
            cached_tokens=Sum("cached_tokens"),
            cache_write_tokens=Sum("cache_write_tokens"),
            completion_tokens=Sum("completion_tokens"),
        )
        .order_by()
    )
    for row in rows:
        bucket = buckets[floor_to(to_unix(row["bucket"]), width)]
        group = tuple(_dimension_value(row[column]) for column in columns)
        for label, tokens, price in _line_items(row):
            key = (f"{row['model']}, {label}", *group)
            bucket.groups.setdefault(key, Totals()).cost_usd += tokens * price / MILLION
    return list(buckets.values())


# --- performance -----------------------------------------------------------------------------------------


@dataclass
class Performance:
    model: str | None
    provider: str | None
    totals: Totals = field(default_factory=Totals)
    latency: dict[str, int] = field(default_factory=dict)
    ttft: dict[str, int] = field(default_factory=dict)
    overhead: dict[str, int] = field(default_factory=dict)

    def merge_sketches(self, latency: dict, ttft: dict, overhead: dict) -> None:
        """Add the sketches' counts into this group's, in place (not a copy of the total per row)."""
        for total, sketch_ in ((self.latency, latency), (self.ttft, ttft), (self.overhead, overhead)):
            get = total.get
            for index, count in (sketch_ or {}).items():
                total[index] = get(index, 0) + count


def performance_by_model(
    *, user_id: int, start: int, end: int, at: datetime | None = None
) -> tuple[list[Performance], Performance]:
    """Per model × provider over [start, end) (minute-aligned): counters and merged latency sketches.

    Returns the groups (busiest first) and the overall figures. Sketches of rollups merge with sketches
    built from the raw rows' values (analytics.sketch), so percentiles span the whole range.
    """
    (rolled_lo, rolled_hi), (raw_lo, raw_hi) = _split(start, end, at)
    groups: dict[tuple[str, str], Performance] = {}
    overall = Performance(model=None, provider=None)

    def group(model: str, provider: str) -> Performance:
        return groups.setdefault((model, provider), Performance(model=model, provider=provider))

    fields = ("model", "provider", *COUNTERS, "cost_usd", "latency_sketch", "ttft_sketch", "overhead_sketch")
    for rollups in rollup_reads(user_id, rolled_lo, rolled_hi, Rollup.Granularity.DAY, ("model", "provider")):
        for row in rollups.values(*fields).iterator(chunk_size=2000):
            sketches = (row["latency_sketch"], row["ttft_sketch"], row["overhead_sketch"])
            for target in (group(row["model"], row["provider"]), overall):
                target.totals.add(row)
                target.merge_sketches(*sketches)
    if raw_lo < raw_hi:
        raw = _model_rows(user_id, raw_lo, raw_hi)
        for row in raw.values("model", "provider").annotate(**_RAW_AGGREGATES).order_by():
            group(row["model"], row["provider"]).totals.add(row)
            overall.totals.add(row)
        values: dict[tuple[str, str], tuple[list, list, list]] = {}
        columns = ("model", "provider", "latency_ms", "ttft_ms", "overhead_ms")
        for model, provider, latency, ttft, overhead in raw.values_list(*columns).iterator(chunk_size=5000):
            lists = values.setdefault((model, provider), ([], [], []))
            lists[0].append(latency)
            lists[1].append(ttft)
            lists[2].append(overhead)
        for (model, provider), (latency, ttft, overhead) in values.items():
            sketches = (sketch.build(latency), sketch.build(ttft), sketch.build(overhead))
            group(model, provider).merge_sketches(*sketches)
            overall.merge_sketches(*sketches)
    ordered = sorted(groups.values(), key=lambda p: (-p.totals.requests, p.model or "", p.provider or ""))
    return ordered, overall


# --- the request log -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestFilters:
    start: int | None = None
    end: int | None = None
    model: str | None = None
    status: str | None = None  # "429", or a class: "4xx"
    api_key_id: str | None = None
    task_type: str | None = None
    provider: str | None = None


class InvalidCursor(ValueError):
    pass


def encode_request_cursor(row: RequestLog) -> str:
    micros = int(row.created_at.timestamp()) * 1_000_000 + row.created_at.microsecond
    return base64.urlsafe_b64encode(f"{micros}.{row.pk}".encode()).decode().rstrip("=")


def decode_request_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        micros, _, pk = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(".")
        seconds, rest = divmod(int(micros), 1_000_000)
        return to_datetime(seconds) + timedelta(microseconds=rest), int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise InvalidCursor(cursor) from None


def request_filter(*, user_id: int, filters: RequestFilters) -> QuerySet[RequestLog]:
    """The caller's model requests matching `filters`, newest first."""
    rows = RequestLog.objects.filter(user_id=user_id, endpoint__in=MODEL_ENDPOINTS)
    if filters.start is not None:
        rows = rows.filter(created_at__gte=to_datetime(filters.start))
    if filters.end is not None:
        rows = rows.filter(created_at__lt=to_datetime(filters.end))
    if filters.status:
        if filters.status.endswith("xx"):
            low = int(filters.status[0]) * 100
            rows = rows.filter(status_code__gte=low, status_code__lt=low + 100)
        else:
            rows = rows.filter(status_code=int(filters.status))
    exact = {"model": filters.model, "api_key_id": filters.api_key_id, "task_type": filters.task_type}
    exact["provider"] = filters.provider
    rows = rows.filter(**{name: value for name, value in exact.items() if value is not None})
    return rows.order_by("-created_at", "-id")


def request_list(
    *, user_id: int, filters: RequestFilters, after: str | None = None, limit: int = 20
) -> tuple[list[RequestLog], str | None]:
    """One page of the caller's requests, newest first, and the cursor of the next page (None at the end).

    The cursor is the last row's (created_at, id): pages stay stable while new requests arrive.
    """
    rows = request_filter(user_id=user_id, filters=filters)
    if after is not None:
        created_at, pk = decode_request_cursor(after)
        rows = rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk))
    page = list(rows[: limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    return page, encode_request_cursor(page[-1]) if has_more else None


def request_iter(*, user_id: int, filters: RequestFilters, chunk: int = 1000) -> Iterator[RequestLog]:
    """Every matching request, newest first, read in keyset pages (no long-lived cursor)."""
    after = None
    while True:
        page, after = request_list(user_id=user_id, filters=filters, after=after, limit=chunk)
        yield from page
        if after is None:
            return


def request_get(*, user_id: int, request_id: str) -> RequestLog | None:
    """One of the caller's requests by its x-request-id (any endpoint); None if it is not theirs."""
    return RequestLog.objects.filter(user_id=user_id, request_id=request_id).first()
