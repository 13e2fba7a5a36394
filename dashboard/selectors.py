"""Reads the dashboard needs beyond analytics.selectors: totals over a whole period summed by the database,
and latency sketches per time bucket or per group, with the page's filters.

Every read follows analytics.selectors (see its docstring): rollups before the raw boundary, covered by
the largest aligned buckets (`rollup_cover`), raw rows after it — each request is counted once, and the
cost is bounded by the number of rollup rows, never by the raw log.

Latency sketches are the expensive part: every rollup row carries three, and merging them costs time per
sketch key — about 0.1 µs for PostgreSQL to turn it into text and 0.1 µs for Python to parse and add it
(measured with bench/dashboard_pages.py; merging in the database with jsonb_each and SUM took 0.3–0.5 µs).
So each read asks only for the sketches its figures need, from the coarsest rollups that fit; the
database groups the rows per bucket and group and joins their sketches into one text (`_JoinedSketches`),
which Python parses with one call and adds up in one loop. At the Rollup grain that work grows with
key × model × provider × task-type groups × buckets × keys (a 30-day view of 200 busy groups is ~2
million keys), so a read that neither filters nor groups by key or task type — every page but a filtered
one — reads the LatencyRollup rows of hour and day buckets instead, for its totals as for its sketches:
the same bucket's rows summed and merged per model × provider by the rollup job (analytics.rollups),
identical figures from a fraction of the rows (analytics.models.rollup_model; minute buckets, at a
range's edges only, have none). The merged sketches
of each rollup bucket are also cached once the bucket is STABLE_SECONDS older than the raw boundary —
the rollup job has long finished with it — for CACHE_SECONDS: a page seen again merges a few hundred
cached buckets plus the last minutes' rollups and raw rows. A bucket rolled again later (a row that
arrived very late, a rebuild) shows its new figures once its cache entry expires.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import orjson
from django.core.cache import cache
from django.db.models import Aggregate, Q, Sum, TextField

from analytics import selectors, sketch
from analytics.models import RequestLog, Rollup, rollup_model
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
    get = target.get
    for index, count in (source or {}).items():
        target[index] = get(index, 0) + count


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

    def add_value(
        self, latency_ms: float, ttft_ms: float | None, overhead_ms: float | None, *, latency: bool = True
    ) -> None:
        """Fold in one raw request (its latency into the sketch too unless `latency` is False)."""
        self.__dict__.pop("_cache", None)
        self.requests += 1
        self.latency_ms_sum += latency_ms
        for target, value in (
            (self.latency, latency_ms if latency else None),
            (self.ttft, ttft_ms),
            (self.overhead, overhead_ms),
        ):
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


def covered_alike(start: int, end: int, width: int) -> bool:
    """Whether the rollups of [start, end) in buckets of `width` seconds are also its coarsest cover: then
    one read per bucket serves the whole range's figures too, at no extra cost."""
    boundary = min(end, selectors.raw_boundary())
    if start >= boundary:
        return True
    by_width = selectors.rollup_cover(start, boundary, _WIDTH_GRANULARITY[width])
    return by_width == selectors.rollup_cover(start, boundary, Rollup.Granularity.DAY)


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
    used = [*columns, *(DIMENSIONS[name] for name in filters.as_dict())]
    rolled = [
        part.filter(filters.q()).order_by().values(*columns).annotate(**selectors._ROLLUP_AGGREGATES)
        for part in selectors.rollup_reads(user_id, start, min(end, boundary), Rollup.Granularity.DAY, used)
    ]
    if rolled:  # LatencyRollup's hours and days and Rollup's minutes, in one query
        rows += selectors.union_all(rolled)
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


class _JoinedSketches(Aggregate):
    """A group's sketches as one text, comma-separated: the body of a JSON array, parsed with one call.

    The rows of a group arrive as one value (STRING_AGG on PostgreSQL; GROUP_CONCAT on SQLite, which
    stores JSON as text), so Python parses a few hundred arrays instead of tens of thousands of objects
    and builds no row tuples for them: about twice as fast as fetching the rows.
    """

    function = "STRING_AGG"
    template = "%(function)s(%(expressions)s::text, ',')"
    output_field = TextField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler, connection, function="GROUP_CONCAT", template="%(function)s(%(expressions)s, ',')"
        )


def _fold_joined(target: dict[str, int], joined: str | None) -> None:
    """Add the sketches of a _JoinedSketches value into `target` (the loop is the merge's whole cost)."""
    if not joined:
        return
    get = target.get
    for source in orjson.loads(f"[{joined}]"):
        for index, count in source.items():
            target[index] = get(index, 0) + count


def _runs(granularity: str, starts: list[int]) -> Q:
    """The rollups of these buckets, as ranges of consecutive ones."""
    step, ordered, query = STEPS[granularity], sorted(starts), Q()
    first = ordered[0]
    for previous, ts in pairwise(ordered):
        if ts != previous + step:
            query |= Q(bucket_start__gte=to_datetime(first), bucket_start__lte=to_datetime(previous))
            first = ts
    query |= Q(bucket_start__gte=to_datetime(first), bucket_start__lte=to_datetime(ordered[-1]))
    return Q(query, granularity=granularity)


def _group(values) -> tuple:
    return tuple(None if v is None else str(v) for v in values)


def _sketched_buckets(
    *,
    user_id: int,
    buckets: list[tuple[str, int]],
    stable_before: int,
    filters: Filters,
    columns: list[str],
    sketches: Sequence[str],
    models: Sequence[str] | None,
) -> dict[tuple[str, int], dict[tuple, Latency]]:
    """{(granularity, bucket start): {group: Latency}} for the given rollup buckets, the stable ones from
    the cache when they are there; one query for the rest, merged by the database per bucket and group."""
    scope = f"{filters.cache_key()}:{','.join(columns)}:{','.join(sketches)}"
    if models is not None:
        scope += ":" + hashlib.sha256(repr(sorted(models)).encode()).hexdigest()[:16]

    def key(granularity: str, ts: int) -> str:
        return f"nm:dash:sketch:{user_id}:{granularity}:{ts}:{scope}"

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

        def rows_of(granularity: str):
            rows = rollup_model(granularity, [*columns, *filters.as_dict()]).objects.filter(
                filters.q(), user_id=user_id
            )
            return rows if models is None else rows.filter(model__in=models)

        # A SELECT per granularity, each over ranges of consecutive buckets, in one UNION ALL: PostgreSQL
        # reads the (user, granularity, bucket_start) index in order and groups without sorting the wide
        # rows (a sort of them spilled to disk).
        parts = [
            rows_of(granularity)
            .filter(_runs(granularity, starts))
            .order_by()
            .values_list("granularity", "bucket_start", *columns)
            .annotate(
                total_requests=Sum("requests"),
                total_latency_ms=Sum("latency_ms_sum"),
                **{f"joined_{name}": _JoinedSketches(f"{name}_sketch") for name in sketches},
            )
            for granularity, starts in wanted.items()
        ]
        rows = selectors.union_all(parts)
        n = len(columns)
        for granularity, start, *values in rows:
            figures = found[(granularity, int(start.timestamp()))].setdefault(_group(values[:n]), Latency())
            figures.requests += values[n]
            figures.latency_ms_sum += values[n + 1]
            for name, joined in zip(sketches, values[n + 2 :], strict=True):
                _fold_joined(getattr(figures, name), joined)
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
    width: int | None,
    filters: Filters,
    group_by: Sequence[str],
    sketches: Sequence[str],
    models: Sequence[str] | None = None,
) -> dict[tuple[int, tuple], Latency]:
    """{(bucket start, group): Latency} over [start, end): buckets of `width` seconds, or one bucket (0)
    for the whole range when `width` is None. Rollups before the raw boundary, in the largest buckets up
    to `coarsest`; raw rows after it."""
    columns = [DIMENSIONS[name] for name in group_by]
    boundary = selectors.raw_boundary()
    result: dict[tuple[int, tuple], Latency] = {}

    def bucket(ts: int) -> int:
        return 0 if width is None else floor_to(ts, width)

    if start < boundary:
        found = _sketched_buckets(
            user_id=user_id,
            buckets=list(_rollup_buckets(start, min(end, boundary), coarsest)),
            stable_before=boundary - STABLE_SECONDS,
            filters=filters,
            columns=columns,
            sketches=sketches,
            models=models,
        )
        for (_, ts), groups in found.items():
            at = bucket(ts)
            for group, figures in groups.items():
                merged = result.get((at, group))
                if merged is None:
                    result[(at, group)] = figures  # no copy: `found` is not used again
                else:
                    merged.merge(figures)
    if max(start, boundary) < end:
        raw = _raw_rows(user_id, max(start, boundary), end, filters)
        if models is not None:
            raw = raw.filter(model__in=models)
        rows = raw.values_list("created_at", "latency_ms", "ttft_ms", "overhead_ms", *columns)
        for created_at, latency_ms, ttft_ms, overhead_ms, *values in rows:  # minutes of traffic: one fetch
            at = bucket(int(created_at.timestamp()))
            figures = result.get((at, group := _group(values)))
            if figures is None:
                figures = result[(at, group)] = Latency()
            figures.add_value(
                latency_ms,
                ttft_ms if "ttft" in sketches else None,
                overhead_ms if "overhead" in sketches else None,
                latency="latency" in sketches,
            )
    return result


def latency_buckets(
    *,
    user_id: int,
    start: int,
    end: int,
    width: int,
    filters: Filters = Filters(),
    group_by: Sequence[str] = (),
    sketches: Sequence[str] = SKETCHES,
    models: Sequence[str] | None = None,
) -> dict[tuple[int, tuple], Latency]:
    """{(bucket start, group values): Latency} over [start, end), both aligned to `width` (60, 3600, 86400).

    Buckets and groups without requests are absent. `sketches` names the ones read (the others stay empty);
    `models`, if given, keeps those models' requests only.
    """
    if start % width or end % width:
        raise ValueError("latency ranges are aligned to the bucket width")
    return _sketches(
        user_id=user_id,
        start=start,
        end=end,
        coarsest=_WIDTH_GRANULARITY[width],
        width=width,
        filters=filters,
        group_by=group_by,
        sketches=sketches,
        models=models,
    )


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
    found = _sketches(
        user_id=user_id,
        start=start,
        end=end,
        coarsest=Rollup.Granularity.DAY,
        width=None,
        filters=filters,
        group_by=group_by,
        sketches=sketches,
    )
    return {group: figures for (_, group), figures in found.items()}
