"""Every dashboard page issues a small, fixed number of queries: the same for a quiet account and a busy
one, whether the cache of merged sketches is empty (the first view) or filled (the next ones)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import api_key_create
from analytics import sketch
from analytics.models import Rollup
from analytics.rollups import latency_rollups_rewrite
from gateway.catalog import get_catalog, invalidate_catalog
from tests.analytics.factories import NOW, log_row, pin_clock
from tests.dashboard.conftest import recommendation_for

pytestmark = pytest.mark.django_db

MODELS = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-3-5-sonnet", "anthropic")]
TASKS = ["chat", "classification", "summarization", "extraction"]

# The most queries each page may issue. Session, user and the page's own reads; a figure over a range
# reads its rollups and the raw window past them, never one query per bucket, group or row.
PAGES = {
    "/dashboard/": 12,
    "/dashboard/?range=7d": 12,
    "/dashboard/?range=30d": 12,
    "/dashboard/?range=30d&model=gpt-4o&task_type=chat": 12,
    "/dashboard/costs/": 12,
    "/dashboard/costs/?range=7d": 12,
    "/dashboard/costs/?range=30d": 12,
    "/dashboard/performance/": 8,
    "/dashboard/performance/?range=7d": 8,
    "/dashboard/performance/?range=30d": 8,
    "/dashboard/logs/": 5,
    "/dashboard/logs/?range=30d&status=5xx": 5,
    "/dashboard/recommendations/": 7,
    "/keys/": 6,
}


def busy_account(user, *, groups: int, days: int, recent: int) -> None:
    """Rollups for `groups` key × model × task combinations: a row per day for `days` days, per hour for
    the last two days and per minute for the last hour and a half, as the rollup job leaves them; and
    `recent` raw rows in the raw window."""
    keys = [api_key_create(user=user, name=f"key {n}")[0] for n in range(3)]
    combinations = itertools.islice(itertools.cycle(itertools.product(keys, MODELS, TASKS)), groups)
    latency, ttft = sketch.build([250.0, 400.0, 1200.0]), sketch.build([90.0, 130.0])
    today = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    this_hour = NOW.replace(minute=0, second=0, microsecond=0)
    this_minute = NOW.replace(second=0, microsecond=0)
    starts = (
        [("day", today - timedelta(days=n)) for n in range(1, days + 1)]
        + [("hour", this_hour - timedelta(hours=n)) for n in range(1, 49)]
        + [("minute", this_minute - timedelta(minutes=n)) for n in range(1, 91)]
    )
    Rollup.objects.bulk_create(
        Rollup(
            granularity=granularity,
            bucket_start=start,
            user=user,
            api_key=key,
            model=model,
            provider=provider,
            task_type=task,
            requests=3,
            errors_server=1,
            prompt_tokens=3000,
            completion_tokens=600,
            cost_usd=Decimal("0.003"),
            latency_ms_sum=1850.0,
            latency_sketch=latency,
            ttft_sketch=ttft,
            overhead_sketch=sketch.build([2.0, 3.0, 4.0]),
        )
        for key, (model, provider), task in combinations
        for granularity, start in starts
    )
    latency_rollups_rewrite(user_ids=[user.id])
    for n in range(recent):
        log_row(user, keys[n % 3], at=NOW - timedelta(seconds=5 + n), task_type=TASKS[n % 4])
    for n in range(recent):
        recommendation_for(user, title=f"Advice {n}", fingerprint=f"fp-{user.id}-{n}")


@pytest.fixture(autouse=True)
def _clock_and_catalog(monkeypatch, settings):
    """The analytics clock pinned; the model catalogue (priced cache savings) read once, as a process
    does every CATALOG_REFRESH_SECONDS, rather than by whichever page comes first."""
    pin_clock(monkeypatch)
    settings.CATALOG_REFRESH_SECONDS = 3600
    invalidate_catalog()
    get_catalog()
    yield
    invalidate_catalog()


def queries(web, page: str) -> tuple[int, int]:
    """Queries of a first view (the cache of merged sketches empty) and of the next one."""
    counts = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as captured:
            response = web.get(page)
        assert response.status_code == 200, page
        counts.append(len(captured.captured_queries))
    return counts[0], counts[1]


@pytest.fixture
def quiet_counts(user, client_for) -> dict[str, tuple[int, int]]:
    busy_account(user, groups=2, days=2, recent=2)
    web = client_for(user)
    found = {}
    for page in PAGES:
        cache.clear()
        found[page] = queries(web, page)
    return found


def test_every_page_issues_a_bounded_number_of_queries_whatever_the_traffic(quiet_counts, other, client_for):
    busy_account(other, groups=40, days=45, recent=30)
    web = client_for(other)
    for page, most in PAGES.items():
        cache.clear()
        cold, warm = queries(web, page)
        assert (cold, warm) == quiet_counts[page], page
        assert warm <= cold <= most, (page, cold, most)


def test_the_log_detail_page_reads_one_request(web, user):
    busy_account(user, groups=2, days=2, recent=3)
    request_id = log_row(user, at=NOW - timedelta(minutes=1)).request_id
    with CaptureQueriesContext(connection) as captured:
        assert web.get(f"/dashboard/logs/{request_id}/").status_code == 200
    assert len(captured.captured_queries) <= 4
