"""Performance: latency, time to first token, throughput and errors per model and provider."""

from __future__ import annotations

import pytest

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
