"""The overview: cards with the change against the previous period, and every chart, from the rollups and
the raw window, in a bounded number of queries."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import RequestLog
from dashboard.reports import period_of
from tests.analytics.factories import NOW, log_row, pin_clock, stored
from tests.dashboard.factories import rolled_up

pytestmark = pytest.mark.django_db

# session, user, keys, filter menus; then rollups + raw rows for each of: the period's totals, the previous
# period's totals, the per-bucket series, the period's latency per bucket, the previous period's latency
MAX_QUERIES = 14


def figures(response) -> dict[str, dict]:
    body = response.content.decode()
    found = {}
    for name in response.context["figures"]:
        element = f"fig-{name.replace('_', '-')}"
        start = body.index(f'id="{element}" type="application/json">') + len(
            f'id="{element}" type="application/json">'
        )
        found[name] = json.loads(body[start : body.index("</script>", start)])
    return found


def cards(response) -> dict[str, dict]:
    return {card["label"]: card for card in response.context["cards"]}


def test_cards_count_the_period_and_compare_with_the_previous_one(
    web, traffic, django_assert_max_num_queries
):
    with django_assert_max_num_queries(MAX_QUERIES):
        response = web.get("/dashboard/")
    assert response.status_code == 200
    found = cards(response)
    assert found["Requests"]["value"] == "9"
    assert found["Requests"]["change"] == pytest.approx(350.0)  # 9 against 2
    current_cost = sum((row.cost_usd for row in stored(traffic.current)), Decimal(0))
    assert found["Cost"]["value"] == current_cost
    assert found["Error rate"]["value"] == "44.4%"  # 500, 429, 499 and 400 of 9
    assert found["Avg latency"]["value"] == pytest.approx(sum(r.latency_ms for r in traffic.current) / 9)
    assert found["Cache savings"]["value"] == 0


def test_every_chart_is_drawn_from_the_data(web, traffic):
    response = web.get("/dashboard/")
    drawn = figures(response)
    assert set(drawn) == {
        "requests",
        "cost_over_time",
        "cost_by_model",
        "cost_by_task",
        "latency",
        "ttft",
        "errors",
    }
    names = {trace["name"] for trace in drawn["requests"]["data"]}
    assert names == {
        "OK",
        "Client errors (4xx)",
        "Rate limited (429)",
        "Server errors (5xx)",
        "Cancelled (499)",
    }
    assert sum(sum(trace["y"]) for trace in drawn["requests"]["data"]) == 9
    assert len(drawn["requests"]["data"][0]["x"]) == 24  # hourly buckets over 24 h
    assert set(drawn["cost_by_model"]["data"][0]["y"]) == {"gpt-4o", "claude-3-5-sonnet"}
    assert "summarization" in drawn["cost_by_task"]["data"][0]["y"]
    assert {trace["name"] for trace in drawn["latency"]["data"]} == {"p50", "p95", "p99"}
    assert any(v is not None for v in drawn["ttft"]["data"][0]["y"])
    assert drawn["errors"]["data"][0]["values"] == [1, 1, 1, 1]
    body = response.content.decode()
    assert 'data-chart="fig-requests"' in body and "vendor/plotly.min.js" in body
    assert "cdn" not in body.lower()


def test_the_raw_window_counts_at_once(web, traffic):
    """The request of 3 minutes ago has no rollup yet; it is counted from its raw row."""
    response = web.get("/dashboard/")
    drawn = figures(response)
    ok = next(trace for trace in drawn["requests"]["data"] if trace["name"] == "OK")
    assert ok["y"][-1] == 1  # the current hour: only the raw row


@pytest.mark.parametrize(
    ("params", "requests"),
    [
        ({"model": "claude-3-5-sonnet"}, "1"),
        ({"provider": "anthropic"}, "1"),
        ({"task_type": "classification"}, "2"),
        ({"model": "gpt-4o", "task_type": "chat"}, "6"),  # the errors are chat requests too
    ],
)
def test_filters_narrow_every_figure(web, traffic, params, requests, django_assert_max_num_queries):
    with django_assert_max_num_queries(MAX_QUERIES):
        response = web.get("/dashboard/", params)
    assert cards(response)["Requests"]["value"] == requests


def test_the_key_filter_offers_only_the_users_keys(web, traffic, other_traffic):
    response = web.get("/dashboard/", {"api_key_id": str(traffic.key.id)})
    assert cards(response)["Requests"]["value"] == "9"
    choices = dict(response.context["form"].fields["api_key_id"].choices)
    assert str(traffic.key.id) in choices and str(other_traffic.key.id) not in choices


@pytest.mark.parametrize(("range_key", "buckets"), [("24h", 24), ("7d", 168), ("30d", 30)])
def test_time_ranges(web, traffic, range_key, buckets, django_assert_max_num_queries):
    with django_assert_max_num_queries(MAX_QUERIES):
        response = web.get("/dashboard/", {"range": range_key})
    assert len(figures(response)["requests"]["data"][0]["x"]) == buckets
    assert cards(response)["Requests"]["value"] == ("9" if range_key == "24h" else "11")


def test_a_custom_range_of_whole_days(web, traffic):
    response = web.get("/dashboard/", {"range": "custom", "start": "2026-03-17", "end": "2026-03-18"})
    assert response.context["period"].key == "custom"
    assert cards(response)["Requests"]["value"] == "11"
    bad = web.get("/dashboard/", {"range": "custom", "start": "2026-03-18", "end": "2026-03-01"})
    assert "ends before it starts" in bad.content.decode()


def test_a_new_user_sees_how_to_start(web, user, monkeypatch):
    pin_clock(monkeypatch)
    body = web.get("/dashboard/").content.decode()
    assert "Send your first request" in body and 'href="/keys/new/"' in body


def test_cache_savings_are_the_cache_hits_at_the_catalogue_price(web, user, traffic):
    """A hit is logged with provider "cache" and cost 0; it saved its tokens at gpt-4o's $2.50 / $10."""
    rows = [
        log_row(
            user, traffic.key, at=NOW - timedelta(hours=2), provider="cache", cache_hit=True
        ),  # rolled up
        log_row(user, traffic.key, at=NOW - timedelta(minutes=2), provider="cache", cache_hit=True),  # raw
    ]
    RequestLog.objects.filter(pk__in=[r.pk for r in rows]).update(
        cost_usd=0, cost_saved_usd=Decimal("0.0045")
    )
    rolled_up(rows[:1])
    card = cards(web.get("/dashboard/"))["Cache savings"]
    assert card["value"] == Decimal("0.009")  # 2 × (1,000 × $2.50 + 200 × $10) / 1M
    assert card["change"] is None  # none the day before


def test_period_boundaries_are_aligned(monkeypatch):
    pin_clock(monkeypatch)
    for key, width in (("24h", 3600), ("7d", 3600), ("30d", 86400)):
        period = period_of(key)
        assert period.start % width == 0 and period.end % width == 0
        assert period.end > NOW.timestamp()


def test_charts_read_rollups_not_the_raw_log(web, traffic):
    """Raw rows are read only for the last minutes (the raw window), never over the whole range."""
    with CaptureQueriesContext(connection) as queries:
        web.get("/dashboard/", {"range": "30d"})
    raw = [q["sql"] for q in queries.captured_queries if 'FROM "analytics_requestlog"' in q["sql"]]
    assert raw, "the raw window is read"
    assert all("2026-03-18" in sql and "12:24:00" in sql for sql in raw), raw  # from the raw boundary on


def test_quantiles_in_one_pass_match_the_sketch_module():
    import random

    from analytics import sketch
    from dashboard.selectors import quantiles

    rng = random.Random(5)
    for size in (1, 2, 7, 100, 1001):
        values = sketch.build(rng.lognormvariate(6, 1) for _ in range(size))
        qs = (0.5, 0.95, 0.99, 0.0, 1.0)
        assert quantiles(values, qs) == {q: sketch.quantile(values, q) for q in qs}
    assert quantiles({}, (0.5,)) == {}


def test_stable_buckets_sketches_are_cached_between_renders(web, traffic):
    """Hours that ended well before the raw boundary are merged once; later renders read their merged
    sketches from the cache and query only the recent buckets' rollups."""

    def sketch_queries() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            response = web.get("/dashboard/")
        assert cards(response)["Requests"]["value"] == "9"
        return [q["sql"] for q in queries.captured_queries if "latency_sketch" in q["sql"]]

    first = sketch_queries()
    assert any("'hour'" in sql for sql in first)
    second = sketch_queries()
    assert not any("'hour'" in sql for sql in second)
    assert figures(web.get("/dashboard/"))["latency"] == figures(web.get("/dashboard/"))["latency"]
