"""Rollups: the request log aggregated into minute, hour and day buckets, kept up to date incrementally.

- `rollup_buckets` recomputes whole buckets: it deletes their rows and writes them again from their
  source, so running it twice gives the same rows (idempotent).
- `rollup_pending` is the incremental driver (Celery beat, every 30 s): it reads the request log past
  `RollupCursor("request_log")` and recomputes every bucket the new (and late) rows touch.
- `rollup_rebuild` recomputes every bucket from a day on (`manage.py run_analytics --rebuild-since`).
- `prune_raw_logs` deletes raw rows past the retention (daily); rollups are kept.

Rollups count model requests only (`analytics.selectors.MODEL_ENDPOINTS`), as the analytics reads do.

Design choices, measured with `python -m bench.analytics_scale` (10M raw rows over 30 days, PostgreSQL 15,
two shared vCPUs; rolling up 1M new rows):

- Sources: minute buckets come from the raw rows, hour buckets are merged from minute rollups and day
  buckets from hour rollups. Totals add up and sketches merge exactly, so this is as exact as the raw
  rows. Rolling up 1M rows took 55 s merged this way, 59 s with hours from raw rows and 89 s with hours
  and days from raw rows, and a 30-s tick 0.4 s, 0.9 s and 1.9 s: every batch and every tick recompute
  the current day, which from raw rows re-reads up to a day of rows, from hours at most 24 per group.
  Merging also keeps hours and days right after `prune_raw_logs`: a late row recomputes its minute from
  the raw rows, but its hour and day from rollups that outlive them.
- Aggregation: one statement per block of buckets, so that a bucket's totals and sketches always count
  the same rows (one snapshot). Minutes from raw rows, on PostgreSQL: one INSERT ... SELECT that also
  builds the sketches (`_insert_from_raw`): with about one minute row per raw row, fetching ~1M groups,
  converting them in Django and Python and copying ~1M rows back was most of the time, and a 1M-row
  rollup (bench.analytics_scale --rows 2000000 --new-rows 1000000) went from 69-74 s to 41-45 s. Hours
  and days (and SQLite): a GROUP BY sums the totals and collects each group's latencies or finer
  sketches into a list (ARRAY_AGG; JSON_GROUP_ARRAY on SQLite), Python turns the lists into sketches
  (analytics.sketch) and the rows go in with COPY on PostgreSQL (bulk_create spent ~0.2 ms a row
  converting values). Merging hours and days in SQL as well (JSONB_EACH_TEXT, summed per key) was slower
  than this: 29 s instead of 17 s for the hours and days of 1M rows.
- Latency rollups: the dashboard merges sketches over whole ranges, and at the Rollup grain (key × model
  × provider × task type) a 30-day view of 200 groups is ~2 million sketch keys. So each hour and day
  block's transaction also rewrites its buckets' LatencyRollup rows (user × model × provider: requests,
  latency sum, the three sketches), merged in Python from the Rollup rows it has just built
  (`latency_rollups_of`): no second read, and the two tables can never disagree. Pages not filtered by
  key or task type read those. Not for minutes: pages read minute rollups only at the edges of a range
  (at most two hours' worth), and with a row per raw row or so they would have taken a 1M-row rollup
  from 61 s to 78 s.
- Transactions: the buckets of one block — the minutes of an hour, the hours of a day, a day — are
  rewritten in one short transaction rather than one per bucket (which took 2.5x as long: ~4,000 minute
  buckets per 1M rows, each paying its round trips and its commit's fsync). A bucket is never seen half
  written either way. The transaction first takes the block's lock (`pg_advisory_xact_lock`; SQLite runs
  one write transaction at a time anyway) and reads inside it: without the lock, two workers rewriting a
  bucket at once under READ COMMITTED would both delete the old rows and both insert, doubling it; with
  it, the last writer is always the one that read last.
- The claim: a worker claims a range of ids by moving the cursor with a conditional update
  (`cursor_claim`: `filter(last_id=old).update(last_id=new)` must change exactly one row, as in
  healthchecks), so two workers never both take the same range; the one that loses re-reads the cursor
  and takes the next range. A range whose rollup raises is given back (retrying on a new connection for
  a database restart). A worker killed outright mid-range leaves that range unrolled, which
  `run_analytics --rebuild-since` repairs. Correctness never depends on the claim: recomputing is
  idempotent and serialised per block.
- Late rows: ids are taken at insert time and the log writer inserts batches from several processes, so
  a row with a lower id can become visible after the cursor passed it. Every run re-reads the minutes
  touched by the last LATE_WINDOW_IDS ids below the cursor and recomputes those whose raw row count
  differs from their rollup's (three indexed queries, whatever the traffic). A row that arrives with an
  old `created_at` (a spool replay) needs nothing special: the cursor reads ids, not times.
- Retention: a minute before the retention horizon may have lost raw rows to pruning, so recomputing it
  would drop them from the rollups: such minutes are skipped (and logged), and `rollup_rebuild` refuses
  to start before the horizon. `prune_raw_logs` deletes only rows the cursor has passed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import orjson
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Aggregate, Count, JSONField, Max, Min, Q, Sum, TextField
from django.db.models.functions import Trunc
from django.utils import timezone

from analytics import sketch
from analytics.models import LATENCY_GRANULARITIES, LatencyRollup, RequestLog, Rollup, RollupCursor
from analytics.selectors import MODEL_ENDPOINTS

log = logging.getLogger(__name__)

MINUTE, HOUR, DAY = Rollup.Granularity.MINUTE, Rollup.Granularity.HOUR, Rollup.Granularity.DAY
GRANULARITIES = (MINUTE, HOUR, DAY)  # each may be built from the one before it, so always in this order
WIDTH = {MINUTE: timedelta(minutes=1), HOUR: timedelta(hours=1), DAY: timedelta(days=1)}
# What each granularity is computed from: None is the raw request log, else the finer rollups.
SOURCES: dict[str, str | None] = {MINUTE: None, HOUR: MINUTE, DAY: HOUR}

CURSOR = "request_log"
BATCH_ROWS = 200_000  # raw rows claimed at a time by rollup_pending
# Ids below the cursor re-checked every run for rows that became visible late. Rows in flight at once are
# at most (writer processes × REQUEST_LOG_BATCH_SIZE); this leaves room for forty 500-row batches.
LATE_WINDOW_IDS = 20_000
FETCH_GROUPS = 2_000  # (bucket, group) rows per round trip

GROUP = ("user_id", "api_key_id", "model", "provider", "task_type")
SKETCHES = ("latency_sketch", "ttft_sketch", "overhead_sketch")
_SKETCHED = ("latency_ms", "ttft_ms", "overhead_ms")  # the raw columns behind SKETCHES, in that order
_CLIENT_ERROR = Q(status_code__gte=400, status_code__lt=500) & ~Q(status_code__in=(429, 499))
# Rollup field -> its aggregate over raw rows.
_FROM_RAW = {
    "requests": Count("id"),
    "stream_requests": Count("id", filter=Q(stream=True)),
    "errors_client": Count("id", filter=_CLIENT_ERROR),
    "errors_rate_limit": Count("id", filter=Q(status_code=429)),
    "errors_server": Count("id", filter=Q(status_code__gte=500)),
    "errors_cancelled": Count("id", filter=Q(status_code=499)),
    "prompt_tokens": Sum("prompt_tokens"),
    "cached_tokens": Sum("cached_tokens"),
    "cache_write_tokens": Sum("cache_write_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "reasoning_tokens": Sum("reasoning_tokens"),
    "cost_usd": Sum("cost_usd"),  # SUM skips NULLs: the known costs
    "cost_unknown_requests": Count("id", filter=Q(cost_unknown=True)),
    "latency_ms_sum": Sum("latency_ms"),
}
# ... and over finer rollups: every total adds up.
_FROM_ROLLUPS = {name: Sum(name) for name in _FROM_RAW}
_LOCK_CLASS = 0x4E4D5200  # pg_advisory_xact_lock(class + granularity position, block number)


def _model_rows():
    """The rows rollups count: model requests, as the selectors do (the analytics routes log rows too)."""
    return RequestLog.objects.filter(endpoint__in=MODEL_ENDPOINTS)


def bucket_floor(moment: datetime, granularity: str) -> datetime:
    """The start (UTC) of the bucket holding `moment`."""
    return _FLOOR[granularity](moment.astimezone(UTC))


_FLOOR = {  # on UTC datetimes, as the database returns them
    MINUTE: lambda moment: moment.replace(second=0, microsecond=0),
    HOUR: lambda moment: moment.replace(minute=0, second=0, microsecond=0),
    DAY: lambda moment: moment.replace(hour=0, minute=0, second=0, microsecond=0),
}
# Buckets rewritten in one transaction: the minutes of an hour, the hours of a day, one day.
BLOCK = {MINUTE: HOUR, HOUR: DAY, DAY: DAY}


# --- Recomputing buckets ------------------------------------------------------------------------------


def rollup_buckets(
    *, granularity: str, starts: Iterable[datetime], user_ids: Iterable[int] | None = None
) -> int:
    """Recompute the buckets starting at `starts` (for `user_ids`, or every user) from their source.

    The buckets of one block (the minutes of one hour, the hours of one day, a day) are recomputed in one
    transaction: lock the block, delete the buckets' rows, write the new ones (`_write_buckets`) — and
    the same for their LatencyRollup rows, merged from the new Rollup rows (`latency_rollups_of`), so the
    two never disagree. Hours and days are merged from the finer rollups (SOURCES): recompute those first,
    as rollup_pending and rollup_rebuild do. Returns the number of rollup rows written (Rollup rows).
    """
    if granularity not in WIDTH:
        raise ValueError(f"Unknown granularity {granularity!r}")
    users = None if user_ids is None else sorted(set(user_ids))
    if users == []:
        return 0
    blocks: dict[datetime, list[datetime]] = defaultdict(list)
    for start in sorted(set(starts)):
        if start.tzinfo is None or bucket_floor(start, granularity) != start:
            raise ValueError(f"{start!r} does not start a {granularity} bucket (UTC)")
        blocks[bucket_floor(start, BLOCK[granularity])].append(start)
    written = 0
    for block, block_starts in blocks.items():
        with transaction.atomic():
            _lock_block(granularity, block)
            for model in (Rollup, LatencyRollup) if granularity in LATENCY_GRANULARITIES else (Rollup,):
                _delete_buckets(model, granularity, block_starts, users)
            written += _write_buckets(granularity, block_starts, users)
    return written


def _write_buckets(granularity: str, starts: list[datetime], users: list[int] | None) -> int:
    """Write the rows of the buckets `starts` (one block, sorted, just deleted) and their LatencyRollup
    rows, inside the block's transaction. Returns the Rollup rows written.

    From raw rows on PostgreSQL, one INSERT ... SELECT (`_insert_from_raw`): the rows never leave the
    database. Otherwise aggregated by `_aggregate`, sketched or merged in Python and inserted.
    """
    if connection.vendor == "postgresql" and SOURCES[granularity] is None:
        written = _insert_from_raw(granularity, starts, users)
        if granularity not in LATENCY_GRANULARITIES or not written:
            return written
        # (hours or days from raw rows, not the SOURCES chosen): their latency rollups from what was written
        fields = ["granularity", "bucket_start", *GROUP, *_FROM_RAW, *SKETCHES]
        new = Rollup.objects.filter(granularity=granularity, bucket_start__in=starts)
        if users is not None:
            new = new.filter(user_id__in=users)
        now = timezone.now()
        _insert(
            latency_rollups_of(row | {"updated_at": now} for row in new.values(*fields)), model=LatencyRollup
        )
        return written
    rows = _aggregate(granularity, starts, users)
    _insert(rows)
    _insert(latency_rollups_of(rows), model=LatencyRollup)
    return len(rows)


LATENCY_GROUP = ("granularity", "bucket_start", "user_id", "model", "provider")


def latency_rollups_of(rows: Iterable[dict]) -> list[dict]:
    """The LatencyRollup rows of Rollup rows (dicts, as `_aggregate` makes them): per bucket, user, model
    and provider, every total summed and sketches merged (exactly: counts add up). Minute rows have none
    (LATENCY_GRANULARITIES).

    The rollup job writes them with the Rollup rows; bench.dashboard_pages calls it the same way.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["granularity"] in LATENCY_GRANULARITIES:
            groups[tuple(row[name] for name in LATENCY_GROUP)].append(row)
    result = []
    for key, members in groups.items():
        merged = dict(zip(LATENCY_GROUP, key, strict=True))
        for name in _FROM_RAW:  # every total adds up
            merged[name] = sum(row[name] or 0 for row in members)
        for name in SKETCHES:  # a lone row's sketch as it is: it is not changed, only written
            merged[name] = members[0][name] if len(members) == 1 else sketch.merge(r[name] for r in members)
        merged["updated_at"] = members[0]["updated_at"]
        result.append(merged)
    return result


def latency_rollups_rewrite(*, user_ids: Iterable[int] | None = None) -> int:
    """Rewrite every LatencyRollup row from the Rollup rows already stored (for `user_ids`, or every
    user), a block at a time under the block's lock, as `rollup_buckets` writes them: for rollups written
    before LatencyRollup existed (migration 0007) or by hand (tests). Returns the rows written."""
    users = None if user_ids is None else sorted(set(user_ids))
    fields = ["granularity", "bucket_start", *GROUP, *_FROM_RAW, *SKETCHES]
    written = 0
    for granularity in LATENCY_GRANULARITIES:
        rows = Rollup.objects.filter(granularity=granularity)
        if users is not None:
            rows = rows.filter(user_id__in=users)
        starts = rows.order_by().values_list("bucket_start", flat=True).distinct()
        blocks: dict[datetime, list[datetime]] = defaultdict(list)
        for start in starts:
            blocks[bucket_floor(start, BLOCK[granularity])].append(start)
        for block, block_starts in sorted(blocks.items()):
            with transaction.atomic():
                _lock_block(granularity, block)
                block_rows = rows.filter(bucket_start__in=block_starts)
                _delete_buckets(LatencyRollup, granularity, block_starts, users)
                now = timezone.now()
                merged = latency_rollups_of(row | {"updated_at": now} for row in block_rows.values(*fields))
                _insert(merged, model=LatencyRollup)
            written += len(merged)
    return written


def _delete_buckets(
    model: type[Rollup] | type[LatencyRollup],
    granularity: str,
    starts: list[datetime],
    users: list[int] | None,
) -> None:
    """Delete the rows of these buckets (of these users, or every user's), before they are written again."""
    stale = model.objects.filter(
        # the range lets PostgreSQL walk one stretch of an index, not test every row of the users
        granularity=granularity,
        bucket_start__gte=min(starts),
        bucket_start__lte=max(starts),
        bucket_start__in=starts,
    )
    if users is not None:
        stale = stale.filter(user_id__in=users)
    stale.delete()


def _lock_block(granularity: str, block: datetime) -> None:
    """Serialise writers of one block until the transaction ends (see the module docstring)."""
    if connection.vendor != "postgresql":
        return  # SQLite: write transactions (BEGIN IMMEDIATE) already run one at a time
    number = int(block.timestamp() // WIDTH[BLOCK[granularity]].total_seconds())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s::int, %s::int)",
            [_LOCK_CLASS + GRANULARITIES.index(granularity), number],
        )


class _ValueList(Aggregate):
    """Every value of a column in the group, for the sketches: ARRAY_AGG on PostgreSQL (a list comes back),
    JSON_GROUP_ARRAY on SQLite (a JSON array comes back)."""

    function = "ARRAY_AGG"
    output_field = TextField()  # no converter: the list or the JSON text passes through as it is

    def as_sqlite(self, compiler, connection, **extra_context):
        if isinstance(self.source_expressions[0].output_field, JSONField):
            item = "JSON(%(expressions)s)"
        else:  # numbers as text with 17 digits: JSON's own 15 would move values across sketch buckets
            item = "CASE WHEN %(expressions)s IS NULL THEN NULL ELSE PRINTF('%%%%!.17g', %(expressions)s) END"
        template = f"JSON_GROUP_ARRAY({item})"
        return self.as_sql(compiler, connection, template=template, **extra_context)


def _sketch_of_numbers(values: list | str) -> dict[str, int]:
    """A sketch of a _ValueList of numbers (SQLite sends a JSON array of 17-digit strings)."""
    if isinstance(values, str):
        values = [None if value is None else float(value) for value in orjson.loads(values)]
    return sketch.build(values)


def _sketch_of_sketches(values: list | str) -> dict[str, int]:
    """The merge of a _ValueList of sketches (PostgreSQL sends each jsonb as text, SQLite a JSON array)."""
    if isinstance(values, str):
        return sketch.merge(orjson.loads(values))
    return sketch.merge(orjson.loads(value) for value in values)


def _source_rows(granularity: str, first: datetime, end: datetime, users: list[int] | None):
    """The rows the buckets [first, end) are computed from (SOURCES): raw rows or finer rollups."""
    if SOURCES[granularity] is None:
        rows = _model_rows().filter(created_at__gte=first, created_at__lt=end)
    else:
        rows = Rollup.objects.filter(
            granularity=SOURCES[granularity], bucket_start__gte=first, bucket_start__lt=end
        )
    if users is not None:
        rows = rows.filter(user_id__in=users)
    return rows


def _aggregate(granularity: str, starts: list[datetime], users: list[int] | None) -> list[dict]:
    """The rows of the buckets `starts` (sorted, one block), by one GROUP BY per block (SQLite's path).

    The database sums the totals and collects each group's latencies (or finer sketches) into a list;
    Python only turns those lists into sketches (analytics.sketch). One statement reads one snapshot, so
    totals and sketches always count the same rows.
    """
    first, end = starts[0], starts[-1] + WIDTH[granularity]
    rows = _source_rows(granularity, first, end, users)
    if SOURCES[granularity] is None:
        moment, aggregates, sketched, combine = "created_at", _FROM_RAW, _SKETCHED, _sketch_of_numbers
    else:
        moment, aggregates, sketched, combine = "bucket_start", _FROM_ROLLUPS, SKETCHES, _sketch_of_sketches
    groups = (
        rows.order_by()  # RequestLog's default ordering would join the GROUP BY
        .annotate(bucket=Trunc(moment, granularity, tzinfo=UTC))
        .values("bucket", *GROUP)
        # aliased: an annotation may not take a field's name
        .annotate(**{f"total_{name}": aggregate for name, aggregate in aggregates.items()})
        .annotate(
            **{f"list_{name}": _ValueList(column) for name, column in zip(SKETCHES, sketched, strict=True)}
        )
    )
    wanted = set(starts)  # the range read may hold buckets in between that were not asked for
    now = timezone.now()
    result = []
    for group in groups.iterator(chunk_size=FETCH_GROUPS):
        if group["bucket"] not in wanted:
            continue
        row = {"granularity": granularity, "bucket_start": group["bucket"], "updated_at": now}
        row |= {field: group[field] for field in GROUP}
        row |= {name: group[f"total_{name}"] or 0 for name in aggregates}
        row |= {name: combine(group[f"list_{name}"]) for name in SKETCHES}
        result.append(row)
    return result


def _insert_from_raw(granularity: str, starts: list[datetime], users: list[int] | None) -> int:
    """PostgreSQL: insert the Rollup rows of the buckets `starts` (one block) computed from the raw rows
    by one INSERT ... SELECT, sketches included. Returns the rows written.

    The statement unites one row of totals per group (bucket and GROUP; `_FROM_RAW`, compiled by Django
    as in `_aggregate`) with one row per group, sketch and sketch bucket with its count, then folds each
    sketch's rows into a JSON object. A value's sketch bucket is `sketch.index_of` in SQL: LN is the C
    library's log, as Python's math.log, so every double lands in the same bucket, edges included. One
    statement reads one snapshot, so totals and sketches count the same rows.
    """
    quote = connection.ops.quote_name
    first, end = starts[0], starts[-1] + WIDTH[granularity]
    rows = _source_rows(granularity, first, end, users).order_by()
    rows = rows.annotate(bucket=Trunc("created_at", granularity, tzinfo=UTC))  # UTC, without a time zone
    totals_sql, totals_params = _compiled(
        rows.values("bucket", *GROUP).annotate(**{f"total_{name}": agg for name, agg in _FROM_RAW.items()})
    )
    values_sql, values_params = _compiled(rows.values("bucket", *GROUP, *_SKETCHED))
    keys = ", ".join(quote(name) for name in ("bucket", *GROUP))
    by_key = ", ".join(str(n) for n in range(1, len(GROUP) + 4))  # bucket, the group, the sketch, its key
    totals = ", ".join(quote(f"total_{name}") for name in _FROM_RAW)
    nulls = ", ".join("NULL" for _ in _FROM_RAW)
    sketches = ", ".join(f"({part}, {quote(column)})" for part, column in enumerate(_SKETCHED, start=1))
    index = "(CASE WHEN value <= %s::float8 THEN %s ELSE CEIL(LN(value) / %s::float8) END)::bigint::text"
    parts = (
        f"SELECT {keys}, 0 AS part, NULL::text AS key, NULL::bigint AS n, {totals} FROM ({totals_sql}) AS t "
        f"UNION ALL SELECT {keys}, entry.part, {index}, COUNT(*), {nulls} FROM ({values_sql}) AS sourced "
        f"CROSS JOIN LATERAL (VALUES {sketches}) AS entry (part, value) "
        f"WHERE value IS NOT NULL GROUP BY {by_key}"
    )
    select, select_params, columns = [], [], []
    for field in Rollup._meta.concrete_fields:
        name = field.attname
        if field.primary_key:
            continue
        columns.append(quote(field.column))
        if name in ("granularity", "updated_at"):
            select.append("%s")
            select_params.append(granularity if name == "granularity" else timezone.now())
        elif name == "bucket_start":
            select.append("bucket AT TIME ZONE 'UTC'")
        elif name in GROUP:
            select.append(quote(name))
        elif name in _FROM_RAW:  # one row of totals per group
            select.append(f"COALESCE(MAX({quote(f'total_{name}')}), 0)")
        elif name in SKETCHES:
            part = SKETCHES.index(name) + 1
            select.append(f"COALESCE(JSONB_OBJECT_AGG(key, n) FILTER (WHERE part = {part}), '{{}}'::jsonb)")
        else:
            raise ValueError(f"Rollup.{name}: no rollup value for this column")
    sql = (
        f"INSERT INTO {quote(Rollup._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(select)} FROM ({parts}) AS parts "
        # the range read may hold buckets in between that were not asked for
        f"WHERE bucket AT TIME ZONE 'UTC' = ANY(%s::timestamptz[]) GROUP BY {keys}"
    )
    index_params = [sketch.MIN_MS, sketch._MIN_INDEX, sketch._LOG_GAMMA]
    params = [*select_params, *totals_params, *index_params, *values_params, list(starts)]  # text order
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _compiled(queryset) -> tuple[str, tuple]:
    return queryset.query.get_compiler(connection=connection).as_sql()


def _insert(rows: list[dict], *, model: type[Rollup] | type[LatencyRollup] = Rollup) -> None:
    """Bulk-insert rollup rows: COPY on PostgreSQL (Django's bulk_create spends ~0.2 ms per row here)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**row) for row in rows], batch_size=500)
        return
    columns = [field for field in model._meta.concrete_fields if not field.primary_key]
    names = [field.attname for field in columns]
    json_columns = {index for index, name in enumerate(names) if name in SKETCHES}
    sql = f"COPY {model._meta.db_table} ({', '.join(f.column for f in columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            values = [row[name] for name in names]
            for index in json_columns:
                values[index] = orjson.dumps(values[index]).decode()
            copy.write_row(values)


# --- The incremental driver ---------------------------------------------------------------------------


def cursor_claim(*, from_id: int, to_id: int) -> bool:
    """Take the ids (from_id, to_id] by moving the cursor, unless another worker moved it first."""
    moved = RollupCursor.objects.filter(name=CURSOR, last_id=from_id).update(
        last_id=to_id, updated_at=timezone.now()
    )
    return moved == 1


def _cursor_position() -> int:
    return RollupCursor.objects.get_or_create(name=CURSOR)[0].last_id


def rollup_pending(*, batch_size: int = BATCH_ROWS) -> dict:
    """Roll up every raw row past the cursor (as of the call), a batch at a time, and late rows.

    Returns a summary: rows read, buckets recomputed per granularity, rollup rows written, seconds.
    """
    started = time.monotonic()
    summary = {
        "rows": 0,
        "batches": 0,
        "late_minutes": 0,
        "skipped_minutes": 0,
        "buckets": dict.fromkeys(GRANULARITIES, 0),
        "rollup_rows": 0,
    }
    position = _cursor_position()
    # Rows inserted while this runs are left to the next run, so one run always ends.
    target = RequestLog.objects.aggregate(top=Max("id"))["top"] or 0

    late = _late_minutes(position)  # recomputed with the first batch: mostly the same buckets
    summary["late_minutes"] = len(late)

    while position < target:
        end = _batch_end(position, batch_size, target)
        if not cursor_claim(from_id=position, to_id=end):
            position = _cursor_position()  # another worker took that range: go on after it
            continue
        try:
            counts = _minute_counts(_model_rows().filter(id__gt=position, id__lte=end))
            summary["rows"] += sum(counts.values())
            summary["batches"] += 1
            _recompute(set(counts) | late, summary)
            late = set()
        except BaseException:
            _cursor_give_back(from_id=position, to_id=end)
            raise
        position = end
    if late:
        _recompute(late, summary)
    summary["cursor"] = position
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def _batch_end(position: int, batch_size: int, target: int) -> int:
    """The id of the batch_size-th row past `position`, or `target` if there are fewer."""
    ids = (
        RequestLog.objects.filter(id__gt=position, id__lte=target).order_by("id").values_list("id", flat=True)
    )
    found = list(ids[batch_size - 1 : batch_size])
    return found[0] if found else target


def _cursor_give_back(*, from_id: int, to_id: int) -> None:
    """Move the cursor back over a range whose rollup failed, so that the next run takes it again.

    The failure may be the database going away (a restart): retry on a new connection for ~15 s.
    """
    for pause in (0, 1, 2, 4, 8):
        time.sleep(pause)
        try:
            given_back = RollupCursor.objects.filter(name=CURSOR, last_id=to_id).update(last_id=from_id)
        except DatabaseError:
            connection.close()  # the next query opens a new connection
            continue
        if not given_back:
            break  # another worker went past it
        return
    log.error(
        "The rollup of request-log ids (%s, %s] failed and could not be given back: repair it with "
        "`manage.py run_analytics --rebuild-since <the day of id %s>`",
        from_id,
        to_id,
        from_id + 1,
    )


def _minute_counts(rows) -> dict[tuple[int, datetime], int]:
    """{(user id, minute): row count} for the rows of a RequestLog queryset."""
    minutes = rows.order_by().annotate(minute=Trunc("created_at", "minute", tzinfo=UTC))
    return {
        (user, minute): n
        for user, minute, n in minutes.values_list("user_id", "minute").annotate(n=Count("id"))
    }


def _late_minutes(position: int) -> set[tuple[int, datetime]]:
    """(user, minute) pairs touched by the last LATE_WINDOW_IDS ids below the cursor whose rollup is stale."""
    touched = _minute_counts(_model_rows().filter(id__gt=position - LATE_WINDOW_IDS, id__lte=position))
    if not touched:
        return set()
    users = {user for user, _ in touched}
    first, last = min(minute for _, minute in touched), max(minute for _, minute in touched)
    raw = _minute_counts(
        _model_rows().filter(user_id__in=users, created_at__gte=first, created_at__lt=last + WIDTH[MINUTE])
    )
    rolled = {(user, start): n for user, start, n in _rolled_counts(users, first, last)}
    return {pair for pair in touched if raw.get(pair, 0) != rolled.get(pair, 0)}


def _rolled_counts(users: set[int], first: datetime, last: datetime) -> list[tuple[int, datetime, int]]:
    return list(
        Rollup.objects.filter(
            granularity=MINUTE, user_id__in=users, bucket_start__gte=first, bucket_start__lte=last
        )
        .order_by()
        .values_list("user_id", "bucket_start")
        .annotate(n=Sum("requests"))
    )


def _recompute(minutes: set[tuple[int, datetime]], summary: dict) -> None:
    """Recompute the given (user, minute) buckets, then the hours and days that hold them."""
    horizon = retention_horizon()
    kept = {(user, minute) for user, minute in minutes if minute >= horizon}
    if len(kept) < len(minutes):
        skipped = sorted(minutes - kept, key=lambda pair: pair[1])
        log.warning(
            "Skipped %d minute(s) before the retention horizon (raw rows may be pruned), e.g. user %s at %s",
            len(skipped),
            *skipped[0],
        )
        summary["skipped_minutes"] += len(skipped)
    # Every bucket touched, for every user touched: a bucket recomputed for a user without new rows in it
    # comes out the same, and one call per granularity is one transaction per block.
    users = {user for user, _ in kept}
    for granularity in GRANULARITIES:
        starts = {bucket_floor(minute, granularity) for _, minute in kept}
        summary["rollup_rows"] += rollup_buckets(granularity=granularity, starts=starts, user_ids=users)
        summary["buckets"][granularity] += len(starts)


# --- Rebuilding and pruning ---------------------------------------------------------------------------


def retention_horizon() -> datetime:
    """Raw rows older than this may have been pruned."""
    return timezone.now() - timedelta(days=settings.REQUEST_LOG_RETENTION_DAYS)


def rollup_rebuild(*, since: datetime, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Recompute every bucket from `since` (a UTC day start) to now, for every user, from the raw rows.

    Refuses to start before the retention horizon, where raw rows may have been pruned.
    """
    started = time.monotonic()
    if since < retention_horizon():
        raise ValueError(
            f"Raw rows before {retention_horizon():%Y-%m-%d %H:%M} UTC may have been pruned "
            f"(REQUEST_LOG_RETENTION_DAYS={settings.REQUEST_LOG_RETENTION_DAYS}): rebuilding from "
            f"{since:%Y-%m-%d} would drop them from the rollups."
        )
    since = bucket_floor(since, DAY)
    now = timezone.now()
    summary = {"buckets": dict.fromkeys(GRANULARITIES, 0), "rollup_rows": 0}
    for granularity in GRANULARITIES:
        starts = []
        start = since
        while start <= now:
            starts.append(start)
            start += WIDTH[granularity]
        for done in range(0, len(starts), 1000):
            chunk = starts[done : done + 1000]
            summary["rollup_rows"] += rollup_buckets(granularity=granularity, starts=chunk)
            if progress:
                progress(granularity, done + len(chunk), len(starts))
        summary["buckets"][granularity] = len(starts)
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def prune_raw_logs(*, older_than_days: int, batch_size: int = 5000) -> int:
    """Delete raw rows older than `older_than_days` in short transactions of at most `batch_size` ids.

    Only rows the rollup cursor has passed are deleted; rollups are kept. Returns the rows deleted.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = RequestLog.objects.filter(created_at__lt=cutoff, id__lte=_cursor_position())
    bounds = old.aggregate(low=Min("id"), high=Max("id"))  # one scan, then id ranges on the primary key
    if bounds["low"] is None:
        return 0
    deleted = 0
    for low in range(bounds["low"], bounds["high"] + 1, batch_size):
        deleted += old.filter(id__gte=low, id__lt=low + batch_size).delete()[0]
    return deleted
