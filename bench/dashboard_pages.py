"""Server time and query count of every dashboard page for one busy account.

    python -m bench.dashboard_pages [--raw-rows 1000000] [--groups 100] [--days 60] [--recent 5000]
                                    [--keep] [--repeat 5] [--user EMAIL]

On the database DATABASE_URL names (SQLite by default), for a user `bench-dashboard@example.com` (its
earlier data is replaced): `--raw-rows` request-log rows spread over the last 30 days (COPY on
PostgreSQL: 10M take ~10 minutes; the pages must never scan them), `--recent` more in the last few
minutes (the raw window every figure reads), and rollups for `--groups` distinct key × model × provider ×
task combinations over `--days` days, as the rollup job would have written them (LatencyRollup rows
included): every group 1-60
requests an hour, each row's sketches holding its own requests (so a busy day row has ~140 latency
keys), days merged from their hours, minutes for the last two hours. `--keep` reuses the raw rows of an
earlier run and writes the rollups and the recent rows again for the current time.

Each page is rendered by Django's test client `--repeat` times with an empty cache (cold: the first
view) and right after (warm); the medians of the wall time and of the process's CPU time are printed
(the difference is mostly the database's time), with the most queries seen.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--recent", type=int, default=5000)
    parser.add_argument(
        "--keep", action="store_true", help="reuse the raw rows of an earlier run (rollups are rewritten)"
    )
    parser.add_argument("--user", help="measure this existing user's pages instead (e.g. demo@example.com)")
    parser.add_argument("--repeat", type=int, default=5, help="renders per page, cold and warm (medians)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurometric.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["*"]
    if args.user:
        from accounts.models import User

        measure(User.objects.get(email=args.user), args.repeat)
        return
    user = build("bench-dashboard@example.com", args, keep=args.keep)
    measure(user, args.repeat)


MODELS = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-3-5-sonnet-20241022", "anthropic"),
    ("gemini-2.5-flash", "gemini"),
    ("mistral-large-latest", "mistral"),
    ("llama-3-70b", "groq"),
]
TASKS = ["chat", "classification", "summarization", "extraction", "question_answering", "code_generation"]


def build(email: str, args, *, keep: bool = False) -> object:
    """The bench user and its data. With `keep`, the raw rows of an earlier run stay (10M take ~10 min
    to write) and only the rollups and the recent raw rows are written again, for the current time."""
    from django.db import connection
    from django.db.models import Max

    from accounts.models import ApiKey, User
    from accounts.services import api_key_create
    from analytics.models import LatencyRollup, RequestLog, Rollup

    rng = random.Random(1)
    user = User.objects.filter(email=email).first()
    if user is not None and not keep:  # one DELETE each (no per-row cascade), then the user
        RequestLog.objects.filter(user=user).delete()
        Rollup.objects.filter(user=user).delete()
        LatencyRollup.objects.filter(user=user).delete()
        user.delete()
        user = None
    if user is None:
        keep = False
        user = User.objects.create_user(email=email, password="bench-password-1")
        for n in range(10):
            api_key_create(user=user, name=f"service {n}")
        ApiKey.objects.filter(user=user).update(monthly_budget_usd=Decimal("500"))
    keys = sorted(ApiKey.objects.filter(user=user), key=lambda key: int(key.name.split()[-1]))
    combinations = [(key, *model, task) for key in keys for model in MODELS for task in TASKS]
    groups = rng.sample(combinations, min(args.groups, len(combinations)))  # distinct, as rollups' grain
    now = datetime.now(UTC)
    started = time.monotonic()

    def log_row(oldest: timedelta, newest: timedelta) -> RequestLog:
        key, model, provider, task = rng.choice(groups)
        stream = rng.random() < 0.4
        return RequestLog(
            request_id=f"req_{uuid.uuid4().hex}",  # unique across runs (--keep)
            user=user,
            api_key=key,
            created_at=now - oldest + (oldest - newest) * rng.random(),
            requested_model=model,
            model=model,
            served_model=model,
            provider=provider,
            task_type=task,
            stream=stream,
            status_code=200 if rng.random() > 0.02 else rng.choice([429, 500, 400]),
            prompt_tokens=rng.randint(100, 3000),
            completion_tokens=rng.randint(10, 600),
            cost_usd=Decimal(rng.randint(1, 5000)) / 1_000_000,
            latency_ms=rng.lognormvariate(7, 0.6),
            ttft_ms=rng.lognormvariate(6, 0.4) if stream else None,
            overhead_ms=rng.uniform(1, 6),
        )

    parts = [(args.recent, timedelta(minutes=9), timedelta(seconds=1))]
    if keep:  # the last run's recent rows (≥ 20 min after its older rows): rolled up by now
        latest = RequestLog.objects.filter(user=user).aggregate(at=Max("created_at"))["at"]
        if latest is not None:
            RequestLog.objects.filter(user=user, created_at__gt=latest - timedelta(minutes=20)).delete()
    else:
        parts.insert(0, (args.raw_rows, timedelta(days=30), timedelta(minutes=30)))
    for count, oldest, newest in parts:
        rows = (log_row(oldest, newest) for _ in range(count))
        if connection.vendor == "postgresql":
            copy_log_rows(rng, rows, count, now, oldest, newest)
        else:
            while batch := list(islice(rows, 5000)):
                RequestLog.objects.bulk_create(batch)
    written = sum(count for count, _, _ in parts)
    print(f"{written:,} raw rows in {time.monotonic() - started:.0f} s", file=sys.stderr)

    started = time.monotonic()
    Rollup.objects.filter(user=user).delete()
    LatencyRollup.objects.filter(user=user).delete()
    write_rollups(random.Random(2), user, groups, now, args.days)
    count = Rollup.objects.filter(user=user).count()
    latency = LatencyRollup.objects.filter(user=user).count()
    seconds = time.monotonic() - started
    print(f"{count:,} rollup rows and {latency:,} latency rollup rows in {seconds:.0f} s", file=sys.stderr)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum would have done by now (untimed)
            for model in (RequestLog, Rollup, LatencyRollup):
                cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
    return user


def copy_log_rows(rng, rows, count: int, now: datetime, oldest: timedelta, newest: timedelta) -> None:
    """COPY `count` request-log rows: TEMPLATES rows' columns (as `rows` makes them) with fresh ids and
    times. Building each row with Django and bulk_create would take an hour for 10M."""
    from django.db import connection

    from analytics.models import RequestLog
    from bench.analytics_scale import copy_fields, copy_text

    fields = copy_fields()  # request_id, created_at, then the rest
    templates = [
        "\t".join(copy_text(getattr(row, field.attname)) for field in fields[2:])
        for row in islice(rows, min(count, TEMPLATES))
    ]
    if not templates:
        return
    salt = uuid.uuid4().hex[:8]
    base, span = now - oldest, (oldest - newest).total_seconds()
    columns = ", ".join(field.column for field in fields)
    sql = f"COPY {RequestLog._meta.db_table} ({columns}) FROM STDIN"
    random_, pick = rng.random, rng.choice
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for done in range(0, count, 20_000):
            chunk = []
            for n in range(done, min(done + 20_000, count)):
                at = (base + timedelta(seconds=span * random_())).isoformat()
                chunk.append(f"req_{salt}_{n:x}\t{at}\t{pick(templates)}\n")
            copy.write("".join(chunk))


TEMPLATES = 20_000  # distinct raw rows' contents


def write_rollups(rng, user, groups, now: datetime, days: int) -> None:
    """Rollup rows as the rollup job leaves them for steady traffic: every group 1-60 requests an hour
    (about 10M requests over 60 days for 200 groups), each row's sketches holding its own requests; days
    merged from their hours; minutes (a request or two per group, half the groups) for the last two hours.
    With them, the LatencyRollup rows the job writes, by its own function (`latency_rollups_of`); a batch
    always holds whole buckets.
    """
    from analytics import sketch
    from analytics.models import LatencyRollup
    from analytics.rollups import _insert, latency_rollups_of

    # Sketches of n requests (8 variants each): the same sizes as real ones, without drawing every value.
    pool = {
        n: [
            (
                sketch.build(rng.lognormvariate(7, 0.6) for _ in range(n)),
                sketch.build(rng.lognormvariate(6, 0.4) for _ in range(n) if rng.random() < 0.4),
                sketch.build(rng.uniform(1, 6) for _ in range(n)),
            )
            for _ in range(8)
        ]
        for n in range(1, 61)
    }

    def row(granularity: str, start: datetime, group, requests: int, sketches) -> dict:
        key, model, provider, task = group
        latency, ttft, overhead = sketches
        return {
            "granularity": granularity,
            "bucket_start": start,
            "user_id": user.id,
            "api_key_id": key.id,
            "model": model,
            "provider": provider,
            "task_type": task,
            "requests": requests,
            "stream_requests": sketch.count(ttft),
            "errors_client": 0,
            "errors_rate_limit": 0,
            "errors_server": requests // 50,
            "errors_cancelled": 0,
            "prompt_tokens": requests * 1500,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "completion_tokens": requests * 300,
            "reasoning_tokens": 0,
            "cost_usd": Decimal(requests) / 1000,
            "cost_unknown_requests": 0,
            "latency_ms_sum": requests * 1100.0,
            "latency_sketch": latency,
            "ttft_sketch": ttft,
            "overhead_sketch": overhead,
            "updated_at": now,
        }

    this_hour = now.replace(minute=0, second=0, microsecond=0)
    today = this_hour.replace(hour=0)
    first_hour = today - timedelta(days=days)
    batch: list[dict] = []

    def flush(force: bool = False) -> None:
        if batch and (force or len(batch) >= 20_000):
            _insert(batch)
            _insert(latency_rollups_of(batch), model=LatencyRollup)
            batch.clear()

    day_start = first_hour
    while day_start < this_hour:
        day_rows = {}
        hour = day_start
        while hour < min(day_start + timedelta(days=1), this_hour):
            for group in groups:
                requests = rng.randint(1, 60)
                sketches = rng.choice(pool[requests])
                batch.append(row("hour", hour, group, requests, sketches))
                requests_before, merged = day_rows.get(group, (0, ({}, {}, {})))
                day_rows[group] = (
                    requests_before + requests,
                    tuple(sketch.merge([a, b]) for a, b in zip(merged, sketches, strict=True)),
                )
            hour += timedelta(hours=1)
        if day_start < today:  # the current day has no day row yet: it is read from its hours
            batch += [row("day", day_start, group, *day_rows[group]) for group in groups]
        flush()
        day_start += timedelta(days=1)
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=130)
    while minute < now.replace(second=0, microsecond=0) - timedelta(minutes=10):
        for group in groups:
            if rng.random() < 0.5:
                requests = rng.randint(1, 2)
                batch.append(row("minute", minute, group, requests, rng.choice(pool[requests])))
        minute += timedelta(minutes=1)
    flush(force=True)


def measure(user, repeat: int = 5) -> None:
    import statistics

    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from analytics.models import RequestLog

    client = Client()
    client.force_login(user)
    request_id = RequestLog.objects.filter(user=user).order_by("-id").values_list("request_id", flat=True)[0]
    pages = [
        "/dashboard/",
        "/dashboard/?range=7d",
        "/dashboard/?range=30d",
        "/dashboard/?range=30d&model=gpt-4o&task_type=chat",
        "/dashboard/costs/",
        "/dashboard/costs/?range=7d",
        "/dashboard/costs/?range=30d",
        "/dashboard/performance/",
        "/dashboard/performance/?range=7d",
        "/dashboard/performance/?range=30d",
        "/dashboard/logs/",
        "/dashboard/logs/?range=30d&status=5xx",
        f"/dashboard/logs/{request_id}/",
        "/dashboard/recommendations/",
        "/keys/",
        "/settings/",
    ]

    def render(page: str) -> tuple[float, float, int]:
        with CaptureQueriesContext(connection) as queries:
            started, cpu = time.perf_counter(), time.process_time()
            response = client.get(page)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert response.status_code == 200, (page, response.status_code)
        return elapsed * 1000, cpu * 1000, len(queries.captured_queries)

    for page in pages:  # compile the templates and import everything first: that is not the page's cost
        client.get(page)
    print(f"median of {repeat} renders each; cold = the cache emptied just before", file=sys.stderr)
    print(f"{'page':<52} {'cold ms':>8} {'(cpu)':>6} {'warm ms':>8} {'(cpu)':>6} {'cold q':>6} {'warm q':>6}")
    for page in pages:
        cold, warm = [], []
        for _ in range(repeat):
            cache.clear()  # the first render fills the cache of stable rollup buckets' sketches
            cold.append(render(page))
            warm.append(render(page))
        figures = []
        for runs in (cold, warm):
            figures += [statistics.median(run[0] for run in runs), statistics.median(run[1] for run in runs)]
        print(
            f"{page:<52} {figures[0]:8.1f} {figures[1]:6.0f} {figures[2]:8.1f} {figures[3]:6.0f}"
            f" {max(run[2] for run in cold):6d} {max(run[2] for run in warm):6d}"
        )


if __name__ == "__main__":
    main()
