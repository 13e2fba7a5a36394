"""Prometheus metrics at /metrics: every model request the gateway logged, by model and provider, read
from the database, so that any gunicorn worker on any web node answers a scrape with the same totals.

In-process counters would be per process, start again at zero on every restart and miss what other
processes served; the request log and its rollups already hold every request once, whoever served it.

The endpoint is off (404) unless METRICS_TOKEN is set; then a scrape needs `Authorization: Bearer <token>`
(401 otherwise). The figures are the operator's view: summed over every user and key, labelled only by
model and provider, never by user.

How the totals are read
-----------------------
As every analytics read (analytics.selectors): rollups before `raw_boundary()` (the current UTC minute
minus ANALYTICS_RAW_WINDOW_MINUTES), covered with the largest whole buckets (`rollup_cover`: whole days,
then the hours and minutes of the boundary's day), and raw rows from the boundary on. Each request counts
once, and within seconds of being logged.

- Days: no rollup granularity is pruned (`prune_raw_logs` deletes raw rows only, weeks behind the
  boundary, and only rows the rollup cursor has passed), so the day rollups are complete over all time and
  the fewest rows to sum. Only the current day is read from hours and minutes, so this stays right if
  minute or hour rollups ever get a retention longer than a day.
- Monotonic: as time passes, a minute moves from the raw rows to its minute rollup, sixty minutes to their
  hour, a day's hours to its day. Counts and tokens are integers, costs Decimal (exact on PostgreSQL;
  SQLite keeps 15 significant digits) and sketches merge exactly, so each move leaves every total as it
  was; a counter only grows. Pruning raw rows changes nothing: those days are read from rollups.
- Not the rollup cursor: "rollups plus the rows past the cursor" would be simpler, but `rollup_pending`
  moves the cursor (its claim) before it writes the claimed rows' rollups, so for the length of a batch
  those rows would be counted nowhere, and a counter that goes down is a reset to Prometheus (`rate()`
  jumps). A row that arrives with an old time (a spool replay) is counted once it is rolled up, within
  30 s: a late increase, never a dip.
- The assumption, as everywhere in analytics: rollups lag less than ANALYTICS_RAW_WINDOW_MINUTES. A stalled
  rollup job would leave the minutes that pass the boundary uncounted until it catches up; alert on
  `neurometric_rollup_lag_seconds`. Deleting a user deletes their rollups: Prometheus sees a reset.

Histograms
----------
Latency (every request, errors included, so `_count` equals the requests) and time to first token
(streamed requests that got one) come from the rollups' sketches (analytics.sketch), and from sketches of
the raw rows' values built the same way. A sketch bucket is counted under `le` when its representative
value is ≤ `le`; each value lies within 1 % of its bucket's, so the bucket edges are exact within 1 %: an
observation ≤ 0.99 · le is always counted under `le`, one > le / 0.99 never.

`_sum` is the sum of the representative values (within 1 % of the true sum), in integer nanoseconds, not
the rollups' float `latency_ms_sum`: floating-point sums of the same rows grouped differently (raw rows,
minutes, hours, days) differ in their last bits, so the total could step down by 1e-12 as a minute moves
into its hour — a reset to Prometheus. Integer sums add up exactly. (No sum of TTFT is stored anyway.)

Speed
-----
Counters: one GROUP BY over the rollup cover (mostly day rows) and one over the raw window, per user chunk
so that the (user, created_at) index serves it (RequestLog has no index on created_at alone).

Sketches are the costly part (a day rollup holds hundreds of sketch buckets), so each bucket's histogram is
kept in the Django cache under a fingerprint of that bucket taken from the counters' query (rows, requests
and the sum of row ids per model and provider: a rewritten rollup row gets a new id, a new raw row adds its
id). A scrape re-reads only the buckets whose fingerprint changed: the newest raw minutes, a new hour or
day, a past day that took late rows. Day buckets and the rest are cached apart, each with its merged total,
so a scrape whose days did not change reads one small entry for them. The cache needs no invalidation:
a stale entry simply no longer matches. The loops over sketches pause now and then, so that on a cold
cache a gevent worker's other requests are not held up.

Measured with 200,000 day rollups (two years) and 2,000 raw rows in the window, on SQLite on a busy 2-core
machine: 0.46 s a scrape (almost all of it the GROUP BY over the day rollups), 0.53 s after new requests,
5.8 s with an empty cache (parsing every sketch once). Reproduce:
`METRICS_BENCH=200000 pytest tests/analytics/test_metrics.py -k scrape_time -s`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import reduce
from operator import or_

import orjson
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Count, Min, Q, QuerySet, Sum, TextField
from django.db.models.functions import Cast, Trunc
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from analytics import selectors, sketch
from analytics.models import RequestLog, Rollup, RollupCursor
from analytics.rollups import _FROM_RAW, CURSOR
from analytics.selectors import MODEL_ENDPOINTS, to_datetime, to_unix

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Histogram bucket bounds, seconds: from a fast cached answer to a long reasoning completion.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Bump when BUCKETS or the histogram layout change, so that no process reads the old cached histograms.
CACHE_PREFIX = "analytics.metrics.1"
CACHE_SECONDS = 7 * 86400  # anything evicted or expired is recomputed
USER_CHUNK = 500  # users per raw-row query (an IN list that the (user, created_at) index serves)

OUTCOMES = {  # outcome label -> the Rollup column that counts it; "ok" is the rest (status < 400)
    "client_error": "errors_client",
    "rate_limited": "errors_rate_limit",
    "server_error": "errors_server",
    "cancelled": "errors_cancelled",
}
TOKENS = {  # type label -> Rollup column
    "prompt": "prompt_tokens",
    "completion": "completion_tokens",
    "cached": "cached_tokens",
    "reasoning": "reasoning_tokens",
}
_SUMMED = ("requests", *OUTCOMES.values(), *TOKENS.values(), "cost_usd")

RAW = "raw"  # a piece of raw rows: one minute from the boundary on
Labels = tuple[str, str]  # (model, provider)
Piece = tuple[str, int]  # (a Rollup granularity or RAW, start as unix seconds)


# --- the view -----------------------------------------------------------------------------------------


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: the Prometheus text format (0.0.4); 404 while METRICS_TOKEN is unset."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are off: set METRICS_TOKEN.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(DatabaseCollector()), content_type=CONTENT_TYPE)


class DatabaseCollector:
    """A prometheus_client collector that reads the database at every collect(): no in-process values."""

    def collect(self) -> Iterator[Metric]:
        return iter(metric_families())


# --- the figures ----------------------------------------------------------------------------------------


def metric_families(at: datetime | None = None) -> list[Metric]:
    now = at or selectors.now()
    pieces = _totals(selectors.raw_boundary(now))
    totals: dict[Labels, dict] = {}
    for groups in pieces.values():
        for labels, row in groups.items():
            _add_totals(totals.setdefault(labels, dict.fromkeys(_SUMMED, 0)), row)
    histograms = _histograms({piece: _fingerprint(groups) for piece, groups in pieces.items()})

    names = ["model", "provider"]
    requests = CounterMetricFamily(
        "neurometric_requests",
        "Model requests by outcome: ok (status below 400), client_error (4xx but 429 and 499), "
        "rate_limited (429), server_error (5xx), cancelled (499: the client went away).",
        labels=[*names, "outcome"],
    )
    tokens = CounterMetricFamily(
        "neurometric_tokens",
        "Tokens by type: prompt (cached included), completion (reasoning included), cached, reasoning.",
        labels=[*names, "type"],
    )
    cost = CounterMetricFamily(
        "neurometric_cost_usd",
        "Cost in US dollars at the prices recorded on each request (unknown prices add nothing).",
        labels=names,
    )
    latency = HistogramMetricFamily(
        "neurometric_request_duration_seconds",
        "Request latency, errors included (bucket edges exact within 1 %).",
        labels=names,
    )
    ttft = HistogramMetricFamily(
        "neurometric_time_to_first_token_seconds",
        "Time to the first streamed token (bucket edges exact within 1 %).",
        labels=names,
    )
    for labels in sorted(set(totals) | set(histograms)):
        row = totals.get(labels) or dict.fromkeys(_SUMMED, 0)
        errors = sum(row[column] for column in OUTCOMES.values())
        requests.add_metric([*labels, "ok"], row["requests"] - errors)
        for outcome, column in OUTCOMES.items():
            requests.add_metric([*labels, outcome], row[column])
        for kind, column in TOKENS.items():
            tokens.add_metric([*labels, kind], row[column])
        cost.add_metric(list(labels), row["cost_usd"])
        vector = histograms.get(labels) or [0] * _SIZE
        latency.add_metric(list(labels), *_histogram(vector, 0))
        ttft.add_metric(list(labels), *_histogram(vector, _TTFT))
    lag = GaugeMetricFamily(
        "neurometric_rollup_lag_seconds",
        "Age of the oldest request-log row the rollups have not read yet (0 when none). The totals assume "
        "it stays below ANALYTICS_RAW_WINDOW_MINUTES.",
        value=_rollup_lag(now),
    )
    return [requests, tokens, cost, latency, ttft, lag]


def _rollup_lag(now: datetime) -> float:
    position = RollupCursor.objects.filter(name=CURSOR).values_list("last_id", flat=True).first() or 0
    oldest = RequestLog.objects.filter(id__gt=position).aggregate(oldest=Min("created_at"))["oldest"]
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


# --- totals per piece -------------------------------------------------------------------------------------

# Per group: its rows and the sum of their ids, the fingerprint of a piece's content (see _fingerprint).
_CHECKS = {"check_rows": Count("id"), "check_ids": Sum("id")}


def _totals(boundary: int) -> dict[Piece, dict[Labels, dict]]:
    """Per piece and (model, provider): the summed columns, as `total_<column>`, and the checks."""
    pieces: dict[Piece, dict[Labels, dict]] = defaultdict(dict)
    cover = selectors.rollup_cover(0, boundary)
    if cover:
        covered = reduce(
            or_,
            (
                Q(
                    granularity=granularity,
                    bucket_start__gte=to_datetime(lo),
                    bucket_start__lt=to_datetime(hi),
                )
                for granularity, lo, hi in cover
            ),
        )
        rows = (
            Rollup.objects.filter(covered)
            .order_by()
            .values("granularity", "bucket_start", "model", "provider")
            # aliased: an annotation may not take a field's name
            .annotate(**{f"total_{name}": Sum(name) for name in _SUMMED}, **_CHECKS)
        )
        for row in rows.iterator(chunk_size=2000):
            pieces[(row["granularity"], to_unix(row["bucket_start"]))][(row["model"], row["provider"])] = row
    # The rollup's own aggregates: a minute counts the same before and after it is rolled up.
    raw_aggregates = {f"total_{name}": _FROM_RAW[name] for name in _SUMMED}
    for rows in _raw_rows(boundary):
        grouped = (
            rows.annotate(minute=Trunc("created_at", "minute", tzinfo=UTC))
            .values("minute", "model", "provider")
            .annotate(**raw_aggregates, **_CHECKS)
        )
        for row in grouped:
            groups = pieces[(RAW, to_unix(row["minute"]))]
            labels = (row["model"], row["provider"])
            if labels in groups:  # the same minute and model from another chunk of users
                for name, value in row.items():
                    if name.startswith(("total_", "check_")):
                        groups[labels][name] = (groups[labels][name] or 0) + (value or 0)
            else:
                groups[labels] = row
    return pieces


def _raw_rows(start: int, end: int | None = None) -> Iterator[QuerySet[RequestLog]]:
    """The model rows created in [start, end), one queryset per chunk of users.

    RequestLog's only time index leads with the user, so each query names its users; the analytics' own
    reads are per user too.
    """
    users = list(get_user_model().objects.order_by("pk").values_list("pk", flat=True))
    for first in range(0, len(users), USER_CHUNK):
        rows = RequestLog.objects.filter(
            user_id__in=users[first : first + USER_CHUNK],
            created_at__gte=to_datetime(start),
            endpoint__in=MODEL_ENDPOINTS,
        )
        if end is not None:
            rows = rows.filter(created_at__lt=to_datetime(end))
        yield rows.order_by()  # RequestLog's default ordering would join the GROUP BY


def _add_totals(into: dict, row: dict) -> None:
    for name in _SUMMED:
        into[name] += row[f"total_{name}"] or (Decimal(0) if name == "cost_usd" else 0)


def _fingerprint(groups: dict[Labels, dict]) -> tuple:
    return tuple(
        sorted(
            (labels, row["total_requests"] or 0, row["check_rows"], row["check_ids"] or 0)
            for labels, row in groups.items()
        )
    )


# --- histograms ---------------------------------------------------------------------------------------
# One histogram pair per (model, provider) is a flat list of ints, so that merging is adding:
# [latency: one count per bucket of BUCKETS, then above them; sum in ns] + [the same for TTFT].

_SLOTS = len(BUCKETS) + 1
_TTFT = _SLOTS + 1  # where the TTFT half starts
_SIZE = 2 * _TTFT
_SKETCHES = ("latency_sketch", "ttft_sketch")


def _last_index_within(bound_ms: float) -> int:
    """The highest sketch bucket whose representative value is ≤ bound_ms."""
    index = sketch.index_of(bound_ms)
    while sketch.value_of(index) > bound_ms:
        index -= 1
    while sketch.value_of(index + 1) <= bound_ms:
        index += 1
    return index


_LAST_INDEX = [_last_index_within(bound * 1000) for bound in BUCKETS]
_BY_KEY: dict[str, tuple[int, int]] = {}  # sketch key -> (slot, representative value in ns)


def _slot(key: str) -> tuple[int, int]:
    found = _BY_KEY.get(key)
    if found is None:
        index = int(key)
        slot = next((n for n, last in enumerate(_LAST_INDEX) if index <= last), len(BUCKETS))
        found = _BY_KEY[key] = (slot, round(sketch.value_of(index) * 1_000_000))
    return found


def _add_sketch(vector: list[int], offset: int, counts: dict[str, int] | None) -> None:
    total = offset + _SLOTS
    for key, count in (counts or {}).items():
        slot, nanoseconds = _BY_KEY.get(key) or _slot(key)
        vector[offset + slot] += count
        vector[total] += count * nanoseconds


def _add_value(vector: list[int], offset: int, value_ms: float | None) -> None:
    """One raw row's value, in the bucket the rollup's sketch (sketch.build) will put it in."""
    if value_ms is not None:
        slot, nanoseconds = _slot(str(sketch.index_of(value_ms)))
        vector[offset + slot] += 1
        vector[offset + _SLOTS] += nanoseconds


def _histogram(vector: list[int], offset: int) -> tuple[list[tuple[str, int]], float]:
    """add_metric()'s buckets (cumulative, +Inf last) and sum in seconds."""
    buckets, seen = [], 0
    for n, bound in enumerate(BUCKETS):
        seen += vector[offset + n]
        buckets.append((floatToGoString(bound), seen))
    buckets.append(("+Inf", seen + vector[offset + len(BUCKETS)]))
    return buckets, vector[offset + _SLOTS] / 1e9


def _merge(histograms: Iterable[dict[Labels, list[int]]]) -> dict[Labels, list[int]]:
    total: dict[Labels, list[int]] = {}
    for part in histograms:
        for labels, vector in part.items():
            into = total.get(labels)
            total[labels] = (
                list(vector) if into is None else [a + b for a, b in zip(into, vector, strict=True)]
            )
    return total


def _histograms(fingerprints: dict[Piece, tuple]) -> dict[Labels, list[int]]:
    """The merged histograms of every piece: day buckets (which rarely change) apart from the rest."""
    days = {piece: fp for piece, fp in fingerprints.items() if piece[0] == Rollup.Granularity.DAY}
    recent = {piece: fp for piece, fp in fingerprints.items() if piece not in days}
    return _merge([_cached("days", days), _cached("recent", recent)])


def _cached(name: str, fingerprints: dict[Piece, tuple]) -> dict[Labels, list[int]]:
    """The merged histograms of these pieces, reading from the database only pieces whose content changed."""
    digest = hashlib.sha256(repr(sorted(fingerprints.items())).encode()).hexdigest()
    total_key, parts_key = f"{CACHE_PREFIX}:{name}:total", f"{CACHE_PREFIX}:{name}:parts"
    total = cache.get(total_key)
    if total is not None and total[0] == digest:
        return total[1]
    parts = cache.get(parts_key) or {}
    kept = {piece: parts[piece] for piece, fp in fingerprints.items() if parts.get(piece, (None,))[0] == fp}
    stale = [piece for piece in fingerprints if piece not in kept]
    loaded = _load(stale)
    parts = kept | {piece: (fingerprints[piece], loaded.get(piece, {})) for piece in stale}
    merged = _merge(histograms for _, histograms in parts.values())
    cache.set_many({total_key: (digest, merged), parts_key: parts}, timeout=CACHE_SECONDS)
    return merged


def _load(pieces: list[Piece]) -> dict[Piece, dict[Labels, list[int]]]:
    """The histograms of these pieces, from the rollups' sketches or the raw rows' values."""
    loaded: dict[Piece, dict[Labels, list[int]]] = defaultdict(dict)

    def vector(piece: Piece, model: str, provider: str) -> list[int]:
        return loaded[piece].setdefault((model, provider), [0] * _SIZE)

    starts: dict[str, list[int]] = defaultdict(list)
    for granularity, start in pieces:
        starts[granularity].append(start)
    minutes = set(starts.pop(RAW, []))
    for granularity, chosen in starts.items():
        chosen.sort()
        for first in range(0, len(chosen), 500):
            rows = Rollup.objects.filter(
                granularity=granularity,
                bucket_start__in=[to_datetime(start) for start in chosen[first : first + 500]],
            )
            # as text, parsed by orjson: twice as fast as the JSONField's json.loads on a cold cache
            columns = ("bucket_start", "model", "provider", *(Cast(name, TextField()) for name in _SKETCHES))
            values = rows.values_list(*columns).order_by().iterator(chunk_size=2000)
            for start, model, provider, latency, ttft in _cooperatively(values):
                into = vector((granularity, to_unix(start)), model, provider)
                _add_sketch(into, 0, orjson.loads(latency))
                _add_sketch(into, _TTFT, orjson.loads(ttft))
    if minutes:
        columns = ("created_at", "model", "provider", "latency_ms", "ttft_ms")
        for rows in _raw_rows(min(minutes), max(minutes) + 60):
            values = rows.values_list(*columns).iterator(chunk_size=5000)
            for created_at, model, provider, latency, ttft in _cooperatively(values):
                minute = to_unix(created_at) // 60 * 60
                if minute not in minutes:
                    continue
                into = vector((RAW, minute), model, provider)
                _add_value(into, 0, latency)
                _add_value(into, _TTFT, ttft)
    return loaded


def _cooperatively(rows: Iterable, every: int = 1000) -> Iterator:
    """The rows, pausing every `every` of them: in a gevent worker (whose time.sleep is gevent's) the
    worker's other requests run meanwhile, so reading sketches on a cold cache never stalls them for seconds.
    """
    for n, row in enumerate(rows, 1):
        yield row
        if n % every == 0:
            time.sleep(0)
