"""Pages without a key or task-type filter read latency from LatencyRollup rows (per model × provider):
the same percentiles as merging the Rollup rows (per key × model × provider × task type) they come from."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics import selectors as analytics_selectors
from analytics.models import LatencyRollup, Rollup
from dashboard import reports
from dashboard import selectors as dashboard_selectors
from dashboard.selectors import Filters
from tests.dashboard.conftest import make_traffic

pytestmark = pytest.mark.django_db

LATENCY_ROLLUPS = LatencyRollup._meta.db_table


@pytest.fixture
def two_keys_traffic(user, monkeypatch):
    """Each model × provider spread over two keys and several task types: several Rollup rows per
    LatencyRollup row."""
    make_traffic(user, monkeypatch, name="production")
    make_traffic(user, monkeypatch, name="staging")


def figures(user_id: int, key: str) -> tuple:
    """The latency figures of the overview and the performance page over a preset range."""
    cache.clear()
    period = reports.period_of(key)
    latency = reports.latency(user_id=user_id, period=period, filters=Filters())
    performance = reports.performance(user_id=user_id, period=period)
    return (
        {
            ts: (f.requests, f.latency, f.ttft, [f.latency_q(q) for q in (0.5, 0.95, 0.99)])
            for ts, f in latency.by_bucket.items()
        },
        (latency.previous.requests, latency.previous.latency),
        [(p.model, p.provider, p.totals, p.latency, p.ttft, p.overhead) for p in performance.groups],
        {
            at: (f.requests, f.latency, f.ttft, f.overhead, round(f.latency_ms_sum, 6))
            for at, f in performance.over_time.items()
        },
    )


def fine_rollups_only(monkeypatch) -> None:
    """Every read from Rollup, as if LatencyRollup did not exist."""
    for module in (dashboard_selectors, analytics_selectors):
        monkeypatch.setattr(module, "rollup_model", lambda granularity, columns: Rollup)


@pytest.mark.parametrize("key", ["24h", "7d", "30d"])
def test_pages_read_the_same_percentiles_from_latency_rollups(user, two_keys_traffic, monkeypatch, key):
    with CaptureQueriesContext(connection) as captured:
        coarse = figures(user.id, key)
    assert any(LATENCY_ROLLUPS in query["sql"] for query in captured.captured_queries)
    assert Rollup.objects.count() > LatencyRollup.objects.count()

    fine_rollups_only(monkeypatch)
    fine = figures(user.id, key)

    assert coarse == fine
    assert coarse[2] and any(groups for groups in coarse[0].values())  # something was compared


def test_filtered_pages_read_the_fine_rollups(web, user, two_keys_traffic):
    cache.clear()
    with CaptureQueriesContext(connection) as captured:
        response = web.get("/dashboard/", {"range": "7d", "task_type": "chat"})
    assert response.status_code == 200
    assert not any(LATENCY_ROLLUPS in query["sql"] for query in captured.captured_queries)


def test_pages_agree_with_and_without_latency_rollups(web, user, two_keys_traffic, monkeypatch):
    """The rendered performance table is the same whichever rows the sketches come from."""
    cache.clear()
    coarse = web.get("/dashboard/performance/", {"range": "7d"}).context["rows"]
    fine_rollups_only(monkeypatch)
    cache.clear()
    fine = web.get("/dashboard/performance/", {"range": "7d"}).context["rows"]
    assert coarse == fine
