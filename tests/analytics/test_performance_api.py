"""GET /v1/analytics/performance: latency percentiles and error rates per model (sketches + raw rows)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from analytics import sketch
from tests.analytics.factories import BOUNDARY, NOW, log_row, pin_clock, rolled_up, ts

pytestmark = pytest.mark.django_db

URL = "/v1/analytics/performance"


def performance(api, **params) -> dict:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    response = api.get(f"{URL}?{query}")
    assert response.status_code == 200, response.content
    return response.json()


def close(value: float, expected: float) -> bool:
    """Within the sketch's 1 % relative accuracy."""
    return abs(value - expected) <= 0.01 * expected


def test_percentiles_per_model_and_provider_from_raw_rows(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    for i in range(1, 101):
        log_row(owner, owner_key[0], at=NOW - timedelta(seconds=i), latency_ms=10.0 * i, overhead_ms=2.0)
    log_row(owner, owner_key[0], at=NOW, model="claude-3-5-sonnet", provider="anthropic", latency_ms=77.0)

    body = performance(api, start_time=ts(NOW) - 600, end_time=ts(NOW) + 1)

    assert body["object"] == "analytics.performance"
    assert body["start_time"] % 60 == 0 and body["end_time"] % 60 == 0
    gpt, claude = body["data"]
    assert (gpt["model"], gpt["provider"], gpt["requests"]) == ("gpt-4o", "openai", 100)
    assert close(gpt["latency_ms"]["p50"], 500) and close(gpt["latency_ms"]["p95"], 950)
    assert close(gpt["latency_ms"]["p99"], 990)
    assert close(gpt["overhead_ms"]["p50"], 2.0)
    assert gpt["ttft_ms"] == {"p50": None, "p95": None}
    assert (claude["model"], claude["requests"]) == ("claude-3-5-sonnet", 1)
    assert close(claude["latency_ms"]["p50"], 77.0)
    assert body["total"]["requests"] == 101 and body["total"]["model"] is None


def test_rollup_sketches_and_raw_rows_merge_into_one_distribution(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    old = [
        log_row(
            owner,
            owner_key[0],
            at=NOW - timedelta(hours=2, seconds=i),
            latency_ms=1000.0 + i,
            ttft_ms=100.0 + i,
        )
        for i in range(60)
    ]
    rolled_up(old)
    recent = [
        log_row(owner, owner_key[0], at=BOUNDARY + timedelta(seconds=i), latency_ms=20.0 + i, ttft_ms=5.0 + i)
        for i in range(40)
    ]

    body = performance(api, start_time=ts(NOW) - 86400)

    [gpt] = body["data"]
    everything = old + recent
    assert gpt["requests"] == 100
    latencies = sketch.build(row.latency_ms for row in everything)
    ttfts = sketch.build(row.ttft_ms for row in everything)
    assert gpt["latency_ms"]["p50"] == round(sketch.quantile(latencies, 0.5), 3)
    assert gpt["latency_ms"]["p95"] == round(sketch.quantile(latencies, 0.95), 3)
    assert gpt["ttft_ms"]["p95"] == round(sketch.quantile(ttfts, 0.95), 3)
    assert close(gpt["latency_ms"]["p50"], 1009)  # 40 fast recent + 60 slow old: the median is old


def test_error_rates_overall_and_by_class(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    statuses = [200] * 12 + [400, 404, 429, 429, 499, 500, 502, 503]
    rows = [
        log_row(owner, owner_key[0], at=NOW - timedelta(minutes=i), status=s) for i, s in enumerate(statuses)
    ]
    rolled_up([row for row in rows if row.created_at < BOUNDARY])

    body = performance(api, start_time=ts(NOW) - 3600)

    [gpt] = body["data"]
    assert gpt["requests"] == 20 and gpt["errors"] == 8
    assert gpt["error_rate"] == 0.4
    assert gpt["errors_by_class"] == {"client": 2, "rate_limit": 2, "server": 3, "cancelled": 1}
    assert gpt["error_rate_by_class"] == {"client": 0.1, "rate_limit": 0.1, "server": 0.15, "cancelled": 0.05}


def test_requests_per_minute_over_the_elapsed_range(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    for i in range(30):
        log_row(owner, owner_key[0], at=NOW - timedelta(seconds=2 * i))

    # From 12:04 to now (12:34:56): 30.93 minutes have elapsed of the range.
    body = performance(api, start_time=ts(NOW) - 30 * 60 - 56, end_time=ts(NOW) + 3600)

    assert body["data"][0]["requests_per_minute"] == round(30 / ((ts(NOW) - body["start_time"]) / 60), 4)


def test_no_requests_gives_empty_figures(api, monkeypatch):
    pin_clock(monkeypatch)

    body = performance(api, start_time=ts(NOW) - 3600)

    assert body["data"] == []
    assert body["total"]["requests"] == 0
    assert body["total"]["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert body["total"]["error_rate"] == 0.0


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("", "start_time"),
        ("start_time=x", "start_time"),
        ("start_time=1773800000&end_time=1773700000", "end_time"),
    ],
)
def test_invalid_parameters_are_400_naming_the_param(api, query, param):
    response = api.get(f"{URL}?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_another_user_sees_none_of_the_owners_performance(api, outsider_api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    rows = [log_row(owner, owner_key[0], at=NOW - timedelta(minutes=m), status=500) for m in (1, 90)]
    rolled_up(rows[1:])

    theirs = performance(outsider_api, start_time=ts(NOW) - 86400)

    assert theirs["data"] == [] and theirs["total"]["requests"] == 0
    assert performance(api, start_time=ts(NOW) - 86400)["total"]["requests"] == 2


def test_without_a_key_it_is_401(client):
    response = client.get(f"{URL}?start_time=1773800000")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
