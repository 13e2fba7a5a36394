"""Server time and query count of every dashboard page for one busy account.

    python -m bench.dashboard_pages [--raw-rows 1000000] [--groups 100] [--days 60] [--recent 5000]

On the database DATABASE_URL names (SQLite by default), for a user `bench-dashboard@example.com` (its
earlier data is replaced): `--raw-rows` request-log rows spread over the last 30 days (the pages must
never scan them), `--recent` more in the last few minutes (the raw window every figure reads), and
rollups for `--groups` key × model × provider × task combinations per hour over `--days` days (days and
the last two hours' minutes too), as the rollup job would have written them. Each page is rendered by
Django's test client: once with an empty cache (cold), then three times (warm: the best time and its
query count are printed).
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--recent", type=int, default=5000)
    parser.add_argument("--keep", action="store_true", help="reuse the data of an earlier run")
    parser.add_argument("--user", help="measure this existing user's pages instead (e.g. demo@example.com)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurometric.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["*"]
    from accounts.models import User

    if args.user:
        measure(User.objects.get(email=args.user))
        return
    email = "bench-dashboard@example.com"
    user = User.objects.filter(email=email).first()
    if user is None or not args.keep:
        user = build(email, args)
    measure(user)


def build(email: str, args) -> object:
    from accounts.models import ApiKey, User
    from accounts.services import api_key_create
    from analytics import sketch
    from analytics.models import RequestLog, Rollup

    rng = random.Random(1)
    User.objects.filter(email=email).delete()
    user = User.objects.create_user(email=email, password="bench-password-1")
    keys = [api_key_create(user=user, name=f"service {n}")[0] for n in range(10)]
    models = [
        ("gpt-4o", "openai"),
        ("gpt-4o-mini", "openai"),
        ("claude-3-5-sonnet-20241022", "anthropic"),
        ("gemini-2.5-flash", "gemini"),
        ("mistral-large-latest", "mistral"),
        ("llama-3-70b", "groq"),
    ]
    tasks = ["chat", "classification", "summarization", "extraction", "question_answering", "code_generation"]
    groups = [(rng.choice(keys), *rng.choice(models), rng.choice(tasks)) for _ in range(args.groups)]
    now = datetime.now(UTC)
    started = time.monotonic()

    def log_rows(count: int, oldest: timedelta, newest: timedelta):
        for _ in range(count):
            key, model, provider, task = rng.choice(groups)
            yield RequestLog(
                request_id=f"req_{uuid.UUID(int=rng.getrandbits(128)).hex}",
                user=user,
                api_key=key,
                created_at=now - oldest + (oldest - newest) * rng.random(),
                requested_model=model,
                model=model,
                served_model=model,
                provider=provider,
                task_type=task,
                status_code=200 if rng.random() > 0.02 else rng.choice([429, 500, 400]),
                prompt_tokens=rng.randint(100, 3000),
                completion_tokens=rng.randint(10, 600),
                cost_usd=Decimal(rng.randint(1, 5000)) / 1_000_000,
                latency_ms=rng.lognormvariate(7, 0.6),
                ttft_ms=rng.lognormvariate(6, 0.4),
                overhead_ms=rng.uniform(1, 6),
            )

    def write(rows, size=5000):
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == size:
                RequestLog.objects.bulk_create(batch)
                batch = []
        RequestLog.objects.bulk_create(batch)

    write(log_rows(args.raw_rows, timedelta(days=30), timedelta(minutes=30)))
    write(log_rows(args.recent, timedelta(minutes=9), timedelta(seconds=1)))
    print(f"{args.raw_rows + args.recent:,} raw rows in {time.monotonic() - started:.0f} s", file=sys.stderr)

    latency = sketch.build(rng.lognormvariate(7, 0.6) for _ in range(400))
    ttft = sketch.build(rng.lognormvariate(6, 0.4) for _ in range(200))
    overhead = sketch.build(rng.uniform(1, 6) for _ in range(200))

    def rollups(granularity: str, width: timedelta, count: int):
        start = now.replace(minute=0, second=0, microsecond=0)
        if granularity == "day":
            start = start.replace(hour=0)
        if granularity == "minute":
            start = now.replace(second=0, microsecond=0) - timedelta(minutes=10)
        for step in range(1, count + 1):
            bucket = start - width * step
            for key, model, provider, task in groups:
                requests = rng.randint(1, 60)
                yield Rollup(
                    granularity=granularity,
                    bucket_start=bucket,
                    user=user,
                    api_key=key,
                    model=model,
                    provider=provider,
                    task_type=task,
                    requests=requests,
                    errors_server=int(requests * 0.01),
                    prompt_tokens=requests * 1500,
                    completion_tokens=requests * 300,
                    cost_usd=Decimal(requests) / 1000,
                    latency_ms_sum=requests * 1100.0,
                    latency_sketch=latency,
                    ttft_sketch=ttft,
                    overhead_sketch=overhead,
                )

    for granularity, width, count in (
        ("hour", timedelta(hours=1), args.days * 24),
        ("day", timedelta(days=1), args.days),
        ("minute", timedelta(minutes=1), 120),
    ):
        Rollup.objects.bulk_create(rollups(granularity, width, count), batch_size=5000)
    print(f"rollups written; {Rollup.objects.filter(user=user).count():,} rows", file=sys.stderr)
    ApiKey.objects.filter(user=user).update(monthly_budget_usd=Decimal("500"))
    return user


def measure(user) -> None:
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
        "/dashboard/costs/?range=30d",
        "/dashboard/performance/",
        "/dashboard/performance/?range=30d",
        "/dashboard/logs/",
        "/dashboard/logs/?range=30d&status=5xx",
        f"/dashboard/logs/{request_id}/",
        "/dashboard/recommendations/",
        "/keys/",
        "/settings/",
    ]
    from django.core.cache import cache

    for page in pages:  # compile the templates and import everything first: that is not the page's cost
        client.get(page)
    print(f"{'page':<52} {'cold ms':>8} {'warm ms':>8} {'queries':>8}")
    for page in pages:
        cache.clear()  # the first render fills the cache of stable rollup buckets' sketches
        started = time.perf_counter()
        client.get(page)
        cold = time.perf_counter() - started
        best, count = float("inf"), 0
        for _ in range(3):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(page)
                elapsed = time.perf_counter() - started
            assert response.status_code == 200, (page, response.status_code)
            if elapsed < best:
                best, count = elapsed, len(queries.captured_queries)
        print(f"{page:<52} {cold * 1000:8.1f} {best * 1000:8.1f} {count:8d}")


if __name__ == "__main__":
    main()
