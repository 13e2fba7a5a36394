"""Performance: latency, time to first token, throughput and errors per model and provider."""

from __future__ import annotations

import json

import pytest

from analytics import selectors
from analytics.api import performance_object
from dashboard.reports import period_of
from tests.analytics.factories import NOW

pytestmark = pytest.mark.django_db


def test_per_model_and_provider_figures(web, traffic, django_assert_max_num_queries):
    with django_assert_max_num_queries(10):
        response = web.get("/dashboard/performance/")
    assert response.status_code == 200
    rows = {(row["model"], row["provider"]): row for row in response.context["rows"]}
    gpt = rows[("gpt-4o", "openai")]
    assert gpt["requests"] == 8 and gpt["errors"] == 4
    assert gpt["errors_by_class"] == {"client": 1, "rate_limit": 1, "server": 1, "cancelled": 1}
    claude = rows[("claude-3-5-sonnet", "anthropic")]
    assert claude["latency_ms"]["p50"] == pytest.approx(2400, rel=0.01)
    assert claude["ttft_ms"]["p50"] == pytest.approx(420, rel=0.01)
    providers = {row["provider"]: row for row in response.context["provider_rows"]}
    assert providers["openai"]["requests"] == 8 and providers["anthropic"]["requests"] == 1
    assert response.context["total"]["requests"] == 9
    assert response.context["overhead"]["p50"] == pytest.approx(4.0, rel=0.01)


def test_charts_and_tables_render(web, traffic):
    body = web.get("/dashboard/performance/", {"range": "7d"}).content.decode()
    for name in ("latency-by-model", "ttft-by-model", "p95-over-time", "errors-by-provider"):
        assert f'data-chart="fig-{name}"' in body
    assert "Gateway overhead" in body and "claude-3-5-sonnet" in body


def test_empty(web, user, monkeypatch):
    from tests.analytics.factories import pin_clock

    pin_clock(monkeypatch)
    response = web.get("/dashboard/performance/")
    assert response.status_code == 200 and "No requests in this period." in response.content.decode()


@pytest.mark.parametrize("range_key", ["24h", "7d", "30d"])
def test_every_range_agrees_with_the_performance_api(web, user, traffic, range_key):
    """Whether the page reads its buckets once for both the table and the series (24 h, 30 d) or the
    table from the coarsest rollups (7 d), each row is what the API's own merge gives over the range."""
    period = period_of(range_key)
    minutes = max((min(period.end, int(NOW.timestamp())) - period.start) / 60, 1)
    groups, _ = selectors.performance_by_model(user_id=user.id, start=period.start, end=period.end)
    expected = {(g.model, g.provider): performance_object(g, minutes) for g in groups}
    rows = web.get("/dashboard/performance/", {"range": range_key}).context["rows"]
    assert {
        (row["model"], row["provider"]): {k: row[k] for k in expected[(row["model"], row["provider"])]}
        for row in rows
    } == expected
    series = {trace["name"] for trace in figures_of(web, range_key)["p95_over_time"]["data"]}
    assert series == {"gpt-4o", "claude-3-5-sonnet"}


def figures_of(web, range_key: str) -> dict:
    response = web.get("/dashboard/performance/", {"range": range_key})
    body = response.content.decode()
    found = {}
    for name in response.context["figures"]:
        marker = f'id="fig-{name.replace("_", "-")}" type="application/json">'
        start = body.index(marker) + len(marker)
        found[name] = json.loads(body[start : body.index("</script>", start)])
    return found
