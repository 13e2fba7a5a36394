"""Analytics at scale, on PostgreSQL: ingestion, incremental rollups and a 30-day query over N raw rows.

    .venv/bin/python -m bench.analytics_scale --rows 10000000
    .venv/bin/python -m bench.analytics_scale --rows 1000000 --new-rows 200000 --compare-sources

**The database `neurometric_scale` is dropped and recreated on every run** (PostgreSQL on 127.0.0.1:5432,
user `postgres`; `--server` to change). Steps, each timed:

1. History: COPY the oldest `rows - new_rows` rows (a few users, keys, models, providers and task types,
   30 days with a daily rhythm, ids in time order as the log writer leaves them), then roll them all up
   with `rollup_pending` (the first run after installing).
2. (b) COPY the `new_rows` most recent rows and time `rollup_pending` over them (target ≤ 60 s for 1M).
3. (a) Ingestion through the production path, `analytics.services.request_log_write_batch`, in batches of
   500 rows (target ≥ 2,000 rows/s); then one rollup of those rows, and one of a 30-s tick at the data
   set's own rate.
4. (c) A 30-day cost-by-model query for the busiest user, answered from rollups (day buckets for whole
   days, hours and minutes for today, raw rows for the last ANALYTICS_RAW_WINDOW_MINUTES), checked against
   the same query over raw rows (target ≤ 200 ms).
5. Pruning one day of raw rows (`prune_raw_logs`).

`--compare-sources` re-runs (b) and the tick with hour and day buckets computed from raw rows instead of
merged from finer rollups (the choice documented in analytics/rollups.py).

After each bulk load the tables get `VACUUM (ANALYZE)`, untimed: what autovacuum would have done by the
time that many rows had trickled in (the planner needs the statistics; a test server may run with
autovacuum off). Half the ingested rows carry no task type, so the log writer classifies their bodies.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice

import orjson
import psycopg

# model -> (provider, USD per 1M input / cached input / output tokens, or None: unpriced, weight)
MODELS = {
    "gpt-4o-mini": ("openai", ("0.15", "0.075", "0.6"), 30),
    "gpt-4o": ("openai", ("2.5", "1.25", "10"), 12),
    "o3-mini": ("openai", ("1.1", "0.55", "4.4"), 5),
    "claude-sonnet-4": ("anthropic", ("3", "0.3", "15"), 15),
    "claude-haiku-3.5": ("anthropic", ("0.8", "0.08", "4"), 10),
    "gemini-2.0-flash": ("gemini", ("0.1", "0.025", "0.4"), 14),
    "mistral-small": ("mistral", ("0.2", None, "0.6"), 8),
    "llama-3-8b": ("ollama", None, 6),
}
TASK_TYPES = {
    "chat": 35,
    "question_answering": 20,
    "summarization": 12,
    "code_generation": 15,
    "extraction": 10,
    "classification": 8,
}
STATUSES = {200: 9780, 400: 50, 401: 10, 429: 60, 499: 30, 500: 30, 502: 20, 503: 20}
USERS = 5  # with these shares of the traffic
USER_SHARES = (45, 25, 15, 10, 5)
KEYS_PER_USER = 2
TEMPLATES = 50_000  # distinct row contents; rows pick one at random
COPY_CHUNK = 20_000  # lines per write to COPY
COPY_TRANSACTION_ROWS = 500_000
PROMPTS = [
    [
        {
            "role": "user",
            "content": "Summarize this article in three bullet points:\n\n" + "The council met. " * 40,
        }
    ],
    [{"role": "user", "content": "Write a Python function that merges two sorted lists."}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "hi! what's a good name for a cat?"},
    ],
    [{"role": "user", "content": "Translate to French: the meeting is moved to Thursday."}],
    [{"role": "user", "content": 'Extract the name and email as JSON: "Reach Ana Diaz at ana@example.com"'}],
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="raw rows in all (default 10M)")
    parser.add_argument("--new-rows", type=int, default=1_000_000, help="rows rolled up in (b) (default 1M)")
    parser.add_argument("--ingest-rows", type=int, default=50_000, help="rows written in (a) (default 50k)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="neurometric_scale")
    parser.add_argument("--compare-sources", action="store_true", help="also time hour/day from raw rows")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not 0 < args.new_rows < args.rows:
        parser.error("--new-rows must be between 0 and --rows")

    recreate_database(args.server, args.database)
    dsn = f"{args.server}/{args.database}"
    setup_django(dsn)
    report = Report()

    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    people = create_people()
    rng = random.Random(args.seed)
    templates = make_templates(rng, people)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    lines = row_lines(rng, templates, total=args.rows, start=end - timedelta(days=args.days), end=end)

    history = args.rows - args.new_rows
    seconds = copy_rows(dsn, islice(lines, history))
    report.add("COPY history", f"{history:,} rows", seconds, f"{history / seconds:,.0f} rows/s")
    vacuum(dsn)
    roll_up(report, f"initial rollup of {history:,} rows")
    vacuum(dsn)

    from analytics import rollups
    from analytics.models import RollupCursor

    before_new = RollupCursor.objects.get(name=rollups.CURSOR).last_id
    seconds = copy_rows(dsn, lines)
    report.add("COPY new rows", f"{args.new_rows:,} rows", seconds, f"{args.new_rows / seconds:,.0f} rows/s")
    vacuum(dsn)
    roll_up(report, f"(b) rollup of {args.new_rows:,} new rows", target="≤ 60 s")

    ingest(report, rng, people, args.ingest_rows)
    roll_up(report, f"rollup of the {args.ingest_rows:,} ingested rows")
    tick_rows = max(1, round(args.rows / (args.days * 86400) * 30))
    tick(report, rng, people, tick_rows, "rollup tick (30 s of traffic)")

    if args.compare_sources:
        compare_sources(report, rng, people, before_new, args.new_rows, tick_rows)

    query(report, people)
    prune(report, args.days)
    report.print(args)


# --- setup ---------------------------------------------------------------------------------------------


def recreate_database(server: str, database: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')


def setup_django(dsn: str) -> None:
    os.environ["DATABASE_URL"] = dsn
    os.environ["REDIS_URL"] = ""  # local-memory cache, eager Celery: this measures the database
    os.environ.setdefault("SECRET_KEY", "bench-analytics-scale")
    os.environ["DJANGO_SETTINGS_MODULE"] = "neurometric.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def create_people() -> list[tuple[int, list[str]]]:
    """(user id, [api key ids]) for USERS users."""
    from accounts.services import api_key_create, user_get_or_create

    people = []
    for n in range(USERS):
        user, _ = user_get_or_create(email=f"scale{n}@example.com")
        keys = [str(api_key_create(user=user, name=f"key {k}")[0].id) for k in range(KEYS_PER_USER)]
        people.append((user.id, keys))
    return people


def vacuum(dsn: str) -> None:
    """What autovacuum would have done by the time these rows had trickled in (not timed)."""
    from analytics.models import LatencyRollup, RequestLog, Rollup

    with psycopg.connect(dsn, autocommit=True) as conn:
        for model in (RequestLog, Rollup, LatencyRollup):
            conn.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


# --- data ------------------------------------------------------------------------------------------------


def pick(rng: random.Random, weighted: dict):
    return rng.choices(list(weighted), weights=list(weighted.values()))[0]


def fake_row(rng: random.Random, people: list[tuple[int, list[str]]]) -> dict:
    """One request's log fields as `request_log_write_batch` takes them (no request id, no time)."""
    from analytics.pricing import PRICE_KEYS

    user_id, keys = rng.choices(people, weights=USER_SHARES)[0]
    model = pick(rng, {name: spec[2] for name, spec in MODELS.items()})
    provider, prices, _ = MODELS[model]
    status = pick(rng, STATUSES)
    stream = rng.random() < 0.4
    ok = status < 400
    prompt = int(rng.lognormvariate(6.5, 1.1)) if ok else 0
    cached = int(prompt * rng.choice((0, 0, 0, 0.5, 0.9))) if prices and prices[1] else 0
    completion = int(rng.lognormvariate(5.3, 0.9)) if ok else 0
    latency = rng.lognormvariate(6.6, 0.7) if ok else rng.lognormvariate(4.5, 1.0)
    overhead = rng.uniform(0.8, 6.0)
    pricing = None
    if prices:
        pricing = dict(zip(PRICE_KEYS, (prices[0], prices[1], None, prices[2]), strict=True))
        pricing["price_date"] = "2026-11-01"
    return {
        "user_id": user_id,
        "api_key_id": rng.choices(keys, weights=(3, 1))[0],
        "endpoint": "chat.completions",
        "requested_model": model,
        "model": model,
        "served_model": model,
        "provider": provider,
        "stream": stream,
        "status_code": status,
        "error_type": "" if ok else "upstream_error",
        "finish_reason": "stop" if ok else "",
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "completion_tokens": completion,
        "reasoning_tokens": completion // 3 if model == "o3-mini" else 0,
        "pricing": pricing,
        "latency_ms": latency,
        "ttft_ms": latency * rng.uniform(0.1, 0.5) if stream and ok else None,
        "upstream_ms": latency - overhead,
        "overhead_ms": overhead,
        "task_type": pick(rng, TASK_TYPES),
    }


def make_templates(rng: random.Random, people) -> list[str]:
    """TEMPLATES rows as COPY text (every column but the request id and created_at)."""
    from analytics.services import _build

    fields = copy_fields()[2:]
    templates = []
    for _ in range(TEMPLATES):
        row = _build(fake_row(rng, people) | {"request_id": "x", "created_ts": 0})  # the writer's costing
        templates.append("\t".join(copy_text(getattr(row, field.attname)) for field in fields))
    return templates


def copy_fields() -> list:
    """RequestLog's columns for COPY: the request id and created_at first, then the rest."""
    from analytics.models import RequestLog

    fields = [f for f in RequestLog._meta.concrete_fields if f.name != "id"]
    first = [RequestLog._meta.get_field("request_id"), RequestLog._meta.get_field("created_at")]
    return first + [f for f in fields if f not in first]


def copy_text(value) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict | list):
        value = orjson.dumps(value).decode()
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def row_lines(rng: random.Random, templates: list[str], *, total: int, start: datetime, end: datetime):
    """`total` COPY lines in time order over [start, end), busier by day than by night and on weekdays."""
    minutes = int((end - start).total_seconds() // 60)
    weights = []
    for m in range(minutes):
        moment = start + timedelta(minutes=m)
        daylight = max(0.0, math.sin(math.pi * (moment.hour - 6) / 16)) if 6 <= moment.hour < 22 else 0.0
        weekday = 0.5 if moment.weekday() >= 5 else 1.0
        weights.append((0.25 + daylight) * weekday * rng.uniform(0.8, 1.2))
    scale = total / sum(weights)
    index = 0
    done = 0
    running = 0.0
    count = len(templates)
    for m, weight in enumerate(weights):
        running += weight * scale
        n = (total if m == minutes - 1 else round(running)) - done
        done += n
        base = (start + timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M:")
        for us in sorted(rng.randrange(60_000_000) for _ in range(n)):
            index += 1
            template = templates[rng.randrange(count)]
            yield f"s{index:x}\t{base}{us // 1_000_000:02d}.{us % 1_000_000:06d}+00\t{template}\n"


def copy_rows(dsn: str, lines: Iterator[str]) -> float:
    """COPY the lines, committing every COPY_TRANSACTION_ROWS (each commit checks the rows' foreign keys)."""
    started = time.monotonic()
    columns = ", ".join(field.column for field in copy_fields())
    sql = f"COPY {copy_fields()[0].model._meta.db_table} ({columns}) FROM STDIN"
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            part = islice(lines, COPY_TRANSACTION_ROWS)
            written = 0
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(sql) as copy:
                while chunk := list(islice(part, COPY_CHUNK)):
                    copy.write("".join(chunk))
                    written += len(chunk)
            if written < COPY_TRANSACTION_ROWS:
                break
    return time.monotonic() - started


# --- measurements ------------------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.lines: list[tuple[str, str, float, str, str]] = []
        self.notes: list[str] = []

    def add(self, step: str, size: str, seconds: float, rate: str = "", target: str = "") -> None:
        self.lines.append((step, size, seconds, rate, target))
        print(f"  {step}: {size} in {seconds:.2f} s {rate} {target}".rstrip(), flush=True)

    def print(self, args) -> None:
        print()
        print(f"Analytics at scale: {args.rows:,} raw rows over {args.days} days, PostgreSQL")
        header = ("step", "size", "time", "rate / result", "target")
        widths = [max(len(str(line[i])) for line in [*self.lines, header]) for i in (0, 1, 3, 4)]
        step, size, _, rate, _ = header
        print(f"{step:<{widths[0]}}  {size:>{widths[1]}}  {'time':>10}  {rate:<{widths[2]}}  target")
        for step, size, seconds, rate, target in self.lines:
            shown = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
            print(f"{step:<{widths[0]}}  {size:>{widths[1]}}  {shown:>10}  {rate:<{widths[2]}}  {target}")
        for note in self.notes:
            print(note)


def roll_up(report: Report, label: str, target: str = "") -> dict:
    from analytics import rollups

    started = time.monotonic()
    summary = rollups.rollup_pending()
    seconds = time.monotonic() - started
    buckets = summary["buckets"]
    report.add(
        label,
        f"{summary['rows']:,} rows",
        seconds,
        f"{summary['rows'] / seconds:,.0f} rows/s; buckets {buckets['minute']:,} min, "
        f"{buckets['hour']:,} h, {buckets['day']:,} day; {summary['rollup_rows']:,} rollup rows",
        target,
    )
    return summary


_ingested = 0


def live_rows(rng: random.Random, people, n: int, *, spread_s: float) -> list[dict]:
    """Rows as the gateway hands them over, finished over the last `spread_s` seconds."""
    global _ingested
    now = time.time()
    rows = []
    for _ in range(n):
        _ingested += 1
        row = fake_row(rng, people) | {
            "request_id": f"live{_ingested}",
            "created_ts": now - rng.random() * spread_s,
        }
        if rng.random() < 0.5:  # no task hint: the log writer classifies the request body
            prompt = rng.choice(PROMPTS)
            row |= {"task_type": "", "_classify": {"model": row["model"], "messages": prompt}}
        rows.append(row)
    return rows


def ingest(report: Report, rng: random.Random, people, n: int) -> None:
    from analytics.services import request_log_write_batch

    batches = [live_rows(rng, people, 500, spread_s=5) for _ in range(max(1, n // 500))]
    started = time.monotonic()
    for batch in batches:
        request_log_write_batch(batch)
    seconds = time.monotonic() - started
    rows = sum(len(b) for b in batches)
    report.add(
        "(a) ingestion, request_log_write_batch × 500",
        f"{rows:,} rows",
        seconds,
        f"{rows / seconds:,.0f} rows/s",
        "≥ 2,000 rows/s",
    )


def tick(report: Report, rng: random.Random, people, n: int, label: str) -> None:
    from analytics.services import request_log_write_batch

    request_log_write_batch(live_rows(rng, people, n, spread_s=30))
    roll_up(report, label)


def compare_sources(report: Report, rng, people, before_new: int, new_rows: int, tick_rows: int) -> None:
    """(b) and the tick again, merged (the choice) and with hours and days from raw rows."""
    from analytics import rollups
    from analytics.models import RollupCursor

    chosen = dict(rollups.SOURCES)
    configurations = {
        "hour←minute, day←hour": chosen,
        "hour←raw, day←raw": dict.fromkeys(rollups.GRANULARITIES),
        "hour←raw, day←hour": {**chosen, rollups.HOUR: None},
    }
    for name, sources in configurations.items():
        rollups.SOURCES.update(sources)
        try:
            top = RollupCursor.objects.get(name=rollups.CURSOR).last_id
            RollupCursor.objects.filter(name=rollups.CURSOR).update(last_id=before_new)
            summary = roll_up(report, f"(b) again, {name}")
            # rows after the new ones (ingested) are re-read too: say so
            report.notes.append(f"(b) again, {name}: {summary['rows']:,} rows ({new_rows:,} new + ingested)")
            assert RollupCursor.objects.get(name=rollups.CURSOR).last_id >= top
            tick(report, rng, people, tick_rows, f"rollup tick, {name}")
        finally:
            rollups.SOURCES.update(chosen)


def cost_by_model(user_id: int) -> dict[str, tuple[Decimal, int]]:
    """30 days of cost and requests per model: rollups before the raw window, raw rows within it."""
    from django.conf import settings
    from django.db.models import Count, Q, Sum

    from analytics.models import RequestLog, Rollup
    from analytics.rollups import DAY, HOUR, MINUTE, bucket_floor
    from analytics.selectors import MODEL_ENDPOINTS

    now = datetime.now(UTC)
    boundary = bucket_floor(now, MINUTE) - timedelta(minutes=settings.ANALYTICS_RAW_WINDOW_MINUTES)
    today, hour = bucket_floor(boundary, DAY), bucket_floor(boundary, HOUR)
    first_day = bucket_floor(now, DAY) - timedelta(days=29)
    pieces = (
        Q(granularity=DAY, bucket_start__gte=first_day, bucket_start__lt=today)
        | Q(granularity=HOUR, bucket_start__gte=today, bucket_start__lt=hour)
        | Q(granularity=MINUTE, bucket_start__gte=hour, bucket_start__lt=boundary)
    )
    totals: dict[str, tuple[Decimal, int]] = {}
    rolled = Rollup.objects.filter(pieces, user_id=user_id).values("model")
    raw = RequestLog.objects.filter(user_id=user_id, endpoint__in=MODEL_ENDPOINTS, created_at__gte=boundary)
    for rows in (
        rolled.annotate(cost=Sum("cost_usd"), n=Sum("requests")),
        raw.order_by().values("model").annotate(cost=Sum("cost_usd"), n=Count("id")),
    ):
        for row in rows:
            cost, n = totals.get(row["model"], (Decimal(0), 0))
            totals[row["model"]] = (cost + (row["cost"] or 0), n + row["n"])
    return totals


def cost_by_model_raw(user_id: int) -> dict[str, tuple[Decimal, int]]:
    from django.db.models import Count, Sum

    from analytics.models import RequestLog
    from analytics.rollups import DAY, bucket_floor
    from analytics.selectors import MODEL_ENDPOINTS

    first_day = bucket_floor(datetime.now(UTC), DAY) - timedelta(days=29)
    rows = (
        RequestLog.objects.filter(user_id=user_id, endpoint__in=MODEL_ENDPOINTS, created_at__gte=first_day)
        .order_by()
        .values("model")
        .annotate(cost=Sum("cost_usd"), n=Count("id"))
    )
    return {row["model"]: (row["cost"] or Decimal(0), row["n"]) for row in rows}


def query(report: Report, people) -> None:
    user_id = people[0][0]  # the busiest
    timings = []
    for _ in range(21):
        started = time.monotonic()
        result = cost_by_model(user_id)
        timings.append(time.monotonic() - started)
    report.add(
        "(c) 30-day cost by model, one user, rollups",
        f"{sum(n for _, n in result.values()):,} requests",
        statistics.median(timings[1:]),
        f"median of 20 (first run {timings[0] * 1000:.1f} ms)",
        "≤ 200 ms",
    )
    started = time.monotonic()
    direct = cost_by_model_raw(user_id)
    report.add(
        "    the same over raw rows", f"{len(direct)} models", time.monotonic() - started, "for contrast"
    )
    same = direct == result
    report.notes.append(
        f"(c) rollups + raw window equal the raw-row query exactly: {'yes' if same else 'NO'}"
    )
    if not same:
        for model in sorted(set(direct) | set(result)):
            report.notes.append(f"    {model}: rollups {result.get(model)} raw {direct.get(model)}")


def prune(report: Report, days: int) -> None:
    from analytics import rollups

    started = time.monotonic()
    deleted = rollups.prune_raw_logs(older_than_days=days - 1)
    seconds = time.monotonic() - started
    report.add(
        "prune one day of raw rows (5,000 per batch)",
        f"{deleted:,} rows",
        seconds,
        f"{deleted / seconds:,.0f} rows/s",
    )


if __name__ == "__main__":
    sys.exit(main())
