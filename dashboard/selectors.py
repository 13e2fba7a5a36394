"""Reads the dashboard needs beyond analytics.selectors: totals over a whole period summed by the database,
and latency sketches per time bucket or per group, with the page's filters.

Every read follows analytics.selectors (see its docstring): rollups before the raw boundary, covered by
the largest aligned buckets (`rollup_cover`), raw rows after it — each request is counted once, and the
cost is bounded by the number of rollup rows, never by the raw log.

Latency sketches are the expensive part: every rollup row carries three, and merging them is Python work
per sketch key. So the merged sketches of each rollup bucket (all groups of the user, or per model ×
provider) are cached once the bucket is STABLE_SECONDS older than the raw boundary — the rollup job has
long finished with it — for CACHE_SECONDS. A page then merges a few hundred cached buckets plus the last
minutes' rollups and raw rows. A bucket rolled again later (a row that arrived very late, a rebuild)
shows its new figures once its cache entry expires.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Q

from analytics import selectors, sketch
from analytics.models import RequestLog, Rollup
from analytics.selectors import DIMENSIONS, MODEL_ENDPOINTS, STEPS, Totals, floor_to, to_datetime

_WIDTH_GRANULARITY = {seconds: granularity for granularity, seconds in STEPS.items()}
STABLE_SECONDS = 600  # a rollup bucket that ended this long before the raw boundary is no longer rewritten
CACHE_SECONDS = 900


@dataclass(frozen=True)
class Filters:
    """The dashboard's filters: each one None (all) or one value."""

    api_key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    task_type: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {name: value for name, value in self.__dict__.items() if value}

    def matches(self, values: dict[str, str | None]) -> bool:
        return all(values.get(name) == value for name, value in self.as_dict().items())

    def q(self) -> Q:
        return Q(**{DIMENSIONS[name]: value for name, value in self.as_dict().items()})

    def cache_key(self) -> str:
        return hashlib.sha256(repr(sorted(self.as_dict().items())).encode()).hexdigest()[:16]


QUANTILES = (0.5, 0.95, 0.99)


def quantiles(values: dict[str, int], qs: Sequence[float]) -> dict[float, float]:
    """Several nearest-rank quantiles of a sketch, sorting it once (as `analytics.sketch.quantile` does)."""
    n = sketch.count(values)
    if not n:
        return {}
    ranks = sorted((max(1, math.ceil(q * n)), q) for q in qs)
    found, seen, pending = {}, 0, iter(ranks)
    rank, q = next(pending)
    for index in sorted(int(key) for key in values):
        seen += values[str(index)]
        while seen >= rank:
            found[q] = sketch.value_of(index)
            try:
                rank, q = next(pending)
            except StopIteration:
                return found
    return found


def _fold(target: dict[str, int], source: dict[str, int] | None) -> None:
    for index, count in (source or {}).items():
        target[index] = target.get(index, 0) + count


@dataclass
class Latency:
    """Requests, summed latency and the merged latency, time-to-first-token and overhead sketches."""

    requests: int = 0
    latency_ms_sum: float = 0.0
    latency: dict[str, int] = field(default_factory=dict)
    ttft: dict[str, int] = field(default_factory=dict)
    overhead: dict[str, int] = field(default_factory=dict)

    def add(self, *, requests: int, latency_ms_sum: float, latency: dict, ttft: dict, overhead: dict) -> None:
        """Fold in a rollup's (or another Latency's) figures: sketches merge by adding counts, in place."""
        self.__dict__.pop("_cache", None)
        self.requests += requests
        self.latency_ms_sum += latency_ms_sum
        _fold(self.latency, latency)
        _fold(self.ttft, ttft)
        _fold(self.overhead, overhead)

    def merge(self, other: Latency) -> None:
        self.add(
            requests=other.requests,
            latency_ms_sum=other.latency_ms_sum,
            latency=other.latency,
            ttft=other.ttft,
            overhead=other.overhead,
        )

    def add_value(self, latency_ms: float, ttft_ms: float | None, overhead_ms: float | None) -> None:
        """Fold in one raw request."""
        self.__dict__.pop("_cache", None)
        self.requests += 1
        self.latency_ms_sum += latency_ms
        for target, value in ((self.latency, latency_ms), (self.ttft, ttft_ms), (self.overhead, overhead_ms)):
            if value is not None:
                index = str(sketch.index_of(value))
                target[index] = target.get(index, 0) + 1

    @property
    def average_ms(self) -> float | None:
        return self.latency_ms_sum / self.requests if self.requests else None

    def latency_q(self, q: float) -> float | None:
        return self._quantiles("latency").get(q)

    def ttft_q(self, q: float) -> float | None:
        return self._quantiles("ttft").get(q)

    def overhead_q(self, q: float) -> float | None:
        return self._quantiles("overhead").get(q)

    def _quantiles(self, name: str) -> dict[float, float]:
        """p50, p95 and p99 of a sketch in one pass (what `sketch.quantile` gives for each), cached."""
        cache_ = self.__dict__.setdefault("_cache", {})
        if name not in cache_:
            cache_[name] = quantiles(getattr(self, name), QUANTILES)
        return cache_[name]

    def as_tuple(self) -> tuple:
        return (self.requests, self.latency_ms_sum, self.latency, self.ttft, self.overhead)

    @classmethod
    def from_tuple(cls, values: tuple) -> Latency:
        requests, latency_ms_sum, latency, ttft, overhead = values
        return cls(requests, latency_ms_sum, latency, ttft, overhead)


# --- where the rows are ---------------------------------------------------------------------------------


def _raw_rows(user_id: int, start: int, end: int, filters: Filters):
    return RequestLog.objects.filter(
        filters.q(),
        user_id=user_id,
        endpoint__in=MODEL_ENDPOINTS,
        created_at__gte=to_datetime(start),
        created_at__lt=to_datetime(end),
    ).order_by()


def _covered(start: int, end: int, coarsest: str) -> Q | None:
    """The rollup rows of [start, end) (minute-aligned) in the largest aligned buckets, as one filter."""
    pieces = selectors.rollup_cover(start, end, coarsest)
    if not pieces:
        return None
    query = Q()
    for granularity, lo, hi in pieces:
        query |= Q(
            granularity=granularity, bucket_start__gte=to_datetime(lo), bucket_start__lt=to_datetime(hi)
        )
    return query


def _rollup_buckets(start: int, end: int, coarsest: str) -> Iterator[tuple[str, int]]:
    """Every (granularity, bucket start) of the rollup cover of [start, end)."""
    for granularity, lo, hi in selectors.rollup_cover(start, end, coarsest):
        yield from ((granularity, ts) for ts in range(lo, hi, STEPS[granularity]))


# --- totals ---------------------------------------------------------------------------------------------


def totals(
    *, user_id: int, start: int, end: int, group_by: Sequence[str] = (), filters: Filters = Filters()
) -> dict[tuple, Totals]:
    """{group values: Totals} over the whole of [start, end) (minute-aligned), summed by the database.

    The rollup part is covered by the coarsest buckets that fit (whole days, then hours, then minutes), so
    a month costs about thirty rows per group; the raw part is the last minutes, grouped the same way.
    The sums are `analytics.selectors`' own (the usage API's), so the figures agree with it.
    """
    columns = [DIMENSIONS[name] for name in group_by]
    boundary = selectors.raw_boundary()
    rows: list[dict] = []
    covered = _covered(start, min(end, boundary), Rollup.Granularity.DAY) if start < boundary else None
    if covered is not None:
        rolled = Rollup.objects.filter(covered, filters.q(), user_id=user_id).order_by()
        rows += rolled.values(*columns).annotate(**selectors._ROLLUP_AGGREGATES)
    if max(start, boundary) < end:
        raw = _raw_rows(user_id, max(start, boundary), end, filters)
        rows += raw.values(*columns).annotate(**selectors._RAW_AGGREGATES)
    found: dict[tuple, Totals] = {}
    for row in rows:
        key = tuple(None if row[c] is None else str(row[c]) for c in columns)
        found.setdefault(key, Totals()).add(row)
    return found


# --- latency sketches -----------------------------------------------------------------------------------


SKETCHES = ("latency", "ttft", "overhead")


def _sketched_buckets(
    *,
    user_id: int,
    buckets: list[tuple[str, int]],
    stable_before: int,
    filters: Filters,
    columns: list[str],
    sketches: Sequence[str],
) -> dict[tuple[str, int], dict[tuple, Latency]]:
    """{(granularity, bucket start): {group: Latency}} for the given rollup buckets, the stable ones from
    the cache when they are there; one query for the rest."""

    def key(granularity: str, ts: int) -> str:
        names = f"{','.join(columns)}:{','.join(sketches)}"
        return f"nm:dash:sketch:{user_id}:{granularity}:{ts}:{filters.cache_key()}:{names}"

    stable = [(g, ts) for g, ts in buckets if ts + STEPS[g] <= stable_before]
    cached = cache.get_many([key(g, ts) for g, ts in stable]) if stable else {}
    found: dict[tuple[str, int], dict[tuple, Latency]] = {}
    wanted: dict[str, list[int]] = {}
    for granularity, ts in buckets:
        entry = cached.get(key(granularity, ts))
        if entry is None:
            wanted.setdefault(granularity, []).append(ts)
            found[(granularity, ts)] = {}
        else:
            found[(granularity, ts)] = {group: Latency.from_tuple(values) for group, values in entry.items()}
    if wanted:
        query = Q()
        for granularity, starts in wanted.items():
            query |= Q(granularity=granularity, bucket_start__in=[to_datetime(ts) for ts in starts])
        rows = (
            Rollup.objects.filter(query, filters.q(), user_id=user_id)
            .order_by()
            .values_list(
                "granularity",
                "bucket_start",
                "requests",
                "latency_ms_sum",
                *(f"{name}_sketch" for name in sketches),
                *columns,
            )
        )
        for granularity, start, requests, latency_sum, *rest in rows.iterator(chunk_size=2000):
            merged = dict(zip(sketches, rest[: len(sketches)], strict=True))
            group = tuple(None if v is None else str(v) for v in rest[len(sketches) :])
            figures = found[(granularity, int(start.timestamp()))].setdefault(group, Latency())
            figures.add(
                requests=requests,
                latency_ms_sum=latency_sum,
                latency=merged.get("latency"),
                ttft=merged.get("ttft"),
                overhead=merged.get("overhead"),
            )
        fresh = {
            key(granularity, ts): {
                group: figures.as_tuple() for group, figures in found[(granularity, ts)].items()
            }
            for granularity, starts in wanted.items()
            for ts in starts
            if ts + STEPS[granularity] <= stable_before
        }
        if fresh:
            cache.set_many(fresh, CACHE_SECONDS)
    return found


def _sketches(
    *,
    user_id: int,
    start: int,
    end: int,
    coarsest: str,
    filters: Filters,
    group_by: Sequence[str],
    sketches: Sequence[str] = SKETCHES,
) -> Iterator[tuple[int, tuple, Latency]]:
    """(time, group, Latency) pieces of [start, end): a rollup bucket's start, or a raw row's time."""
    columns = [DIMENSIONS[name] for name in group_by]
    boundary = selectors.raw_boundary()
    if start < boundary:
        buckets = list(_rollup_buckets(start, min(end, boundary), coarsest))
        found = _sketched_buckets(
            user_id=user_id,
            buckets=buckets,
            stable_before=boundary - STABLE_SECONDS,
            filters=filters,
            columns=columns,
            sketches=sketches,
        )
        for (_, ts), groups in found.items():
            for group, figures in groups.items():
                yield ts, group, figures
    if max(start, boundary) < end:
        raw = _raw_rows(user_id, max(start, boundary), end, filters).values_list(
            "created_at", "latency_ms", "ttft_ms", "overhead_ms", *columns
        )
        for created_at, latency_ms, ttft_ms, overhead_ms, *values in raw.iterator(chunk_size=5000):
            figures = Latency()
            figures.add_value(latency_ms, ttft_ms, overhead_ms)
            yield int(created_at.timestamp()), tuple(None if v is None else str(v) for v in values), figures


def latency_buckets(
    *,
    user_id: int,
    start: int,
    end: int,
    width: int,
    filters: Filters = Filters(),
    group_by: Sequence[str] = (),
    sketches: Sequence[str] = SKETCHES,
) -> dict[tuple[int, tuple], Latency]:
    """{(bucket start, group values): Latency} over [start, end), both aligned to `width` (60, 3600, 86400).

    Buckets and groups without requests are absent. `sketches` names the ones read (the others stay empty).
    """
    if start % width or end % width:
        raise ValueError("latency ranges are aligned to the bucket width")
    result: dict[tuple[int, tuple], Latency] = {}
    for ts, group, figures in _sketches(
        user_id=user_id,
        start=start,
        end=end,
        coarsest=_WIDTH_GRANULARITY[width],
        filters=filters,
        group_by=group_by,
        sketches=sketches,
    ):
        result.setdefault((floor_to(ts, width), group), Latency()).merge(figures)
    return result


def latency_groups(
    *,
    user_id: int,
    start: int,
    end: int,
    filters: Filters = Filters(),
    group_by: Sequence[str] = (),
    sketches: Sequence[str] = SKETCHES,
) -> dict[tuple, Latency]:
    """{group values: Latency} over the whole of [start, end) (minute-aligned), from the coarsest rollups."""
    result: dict[tuple, Latency] = {}
    for _, group, figures in _sketches(
        user_id=user_id,
        start=start,
        end=end,
        coarsest=Rollup.Granularity.DAY,
        filters=filters,
        group_by=group_by,
        sketches=sketches,
    ):
        result.setdefault(group, Latency()).merge(figures)
    return result
