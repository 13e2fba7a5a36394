"""GET /metrics: Prometheus totals read from the request log and its rollups, behind a bearer token."""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.services import api_key_create, user_get_or_create
from analytics import metrics, rollups
from analytics.models import RequestLog, Rollup
from analytics.services import request_log_write_batch
from tests.analytics.factories import CLAUDE, GPT_4O, pin_clock

TOKEN = "metrics-secret-token"
_request_ids = itertools.count()


@pytest.fixture(autouse=True)
def _metrics_on():
    """The token set, and no histograms cached by another test (only this module's keys: never FLUSHDB)."""
    keys = [
        f"{metrics.CACHE_PREFIX}:{name}:{part}" for name in ("days", "recent") for part in ("total", "parts")
    ]
    cache.delete_many(keys)
    with override_settings(METRICS_TOKEN=TOKEN):
        yield
    cache.delete_many(keys)


@pytest.fixture
def people(db):
    """Two users, each with an API key."""
    result = []
    for name in ("ada", "grace"):
        user, _ = user_get_or_create(email=f"{name}@example.com")
        result.append((user, api_key_create(user=user, name=name)[0]))
    return result


@pytest.fixture
def moment(monkeypatch) -> datetime:
    """The analytics' "now", pinned so that the raw-window boundary does not move during a test."""
    return pin_clock(monkeypatch, timezone.now())


def record(person, *, at: datetime, model="gpt-4o", provider="openai", status=200, **fields) -> None:
    """One request, logged through the gateway's write path (analytics.services)."""
    user, key = person
    row = {
        "request_id": f"req_metrics_{next(_request_ids)}",
        "user_id": user.id,
        "api_key_id": str(key.id),
        "created_ts": at.timestamp(),
        "endpoint": "chat.completions",
        "requested_model": model,
        "model": model,
        "served_model": model,
        "provider": provider,
        "status_code": status,
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "pricing": GPT_4O if provider == "openai" else CLAUDE,
        "latency_ms": 300.0,
        "task_type": "chat",
    } | fields
    request_log_write_batch([row])


def scrape(token: str = TOKEN):
    return Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")


def samples() -> dict[tuple[str, frozenset], float]:
    """The scrape, parsed: (sample name, labels) -> value."""
    response = scrape()
    assert response.status_code == 200, response.content
    parsed = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return parsed


def totals(parsed: dict) -> dict:
    """Every counter and histogram sample (not the lag gauge): what must never go down."""
    return {key: value for key, value in parsed.items() if key[0] != "neurometric_rollup_lag_seconds"}


def value(parsed: dict, name: str, **labels) -> float:
    return parsed[(name, frozenset(labels.items()))]


def outcome(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status == 499:
        return "cancelled"
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "ok"


def assert_figures_match_the_log(parsed: dict, rows: list[RequestLog]) -> None:
    """Counters and histograms of `parsed` against the logged rows, per model and provider."""
    for model, provider in {(row.model, row.provider) for row in rows}:
        mine = [row for row in rows if (row.model, row.provider) == (model, provider)]
        labels = {"model": model, "provider": provider}
        outcomes = Counter(outcome(row.status_code) for row in mine)
        for name in ("ok", "client_error", "rate_limited", "server_error", "cancelled"):
            got = value(parsed, "neurometric_requests_total", **labels, outcome=name)
            assert got == outcomes[name], (labels, name)
        for kind in ("prompt", "completion", "cached", "reasoning"):
            expected = sum(getattr(row, f"{kind}_tokens") for row in mine)
            assert value(parsed, "neurometric_tokens_total", **labels, type=kind) == expected
        cost = sum((row.cost_usd for row in mine if row.cost_usd is not None), Decimal(0))
        assert Decimal(str(value(parsed, "neurometric_cost_usd_total", **labels))) == cost

        for name, observed in (
            ("neurometric_request_duration_seconds", [row.latency_ms / 1000 for row in mine]),
            ("neurometric_time_to_first_token_seconds", [row.ttft_ms / 1000 for row in mine if row.ttft_ms]),
        ):
            counts = [value(parsed, f"{name}_bucket", **labels, le=str(float(le))) for le in metrics.BUCKETS]
            # the test values stay > 1 % away from every bound, where the buckets are exact
            assert counts == [sum(v <= le for v in observed) for le in metrics.BUCKETS], name
            assert counts == sorted(counts)
            assert value(parsed, f"{name}_bucket", **labels, le="+Inf") == len(observed)
            assert value(parsed, f"{name}_count", **labels) == len(observed)
            assert value(parsed, f"{name}_sum", **labels) == pytest.approx(sum(observed), rel=0.01)


# --- access ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_are_off_while_the_token_is_unset():
    with override_settings(METRICS_TOKEN=""):
        assert scrape().status_code == 404
        assert Client().get("/metrics").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
)
def test_a_scrape_without_the_right_bearer_token_gets_401(authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}

    response = Client().get("/metrics", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"neurometric_" not in response.content


@pytest.mark.django_db
def test_a_scrape_with_the_token_gets_the_prometheus_text_format():
    response = scrape()

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.content.decode()
    assert "# TYPE neurometric_requests_total counter" in text
    assert "# TYPE neurometric_request_duration_seconds histogram" in text
    assert samples()[("neurometric_rollup_lag_seconds", frozenset())] == 0


@pytest.mark.django_db
def test_only_get_and_head_are_allowed():
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


# --- the figures -------------------------------------------------------------------------------------------


def log_a_mix(people, moment: datetime) -> None:
    """Two users, two models, errors and streams: three days ago, twenty minutes ago (both rolled up by the
    caller) and in the raw window. Latencies stay more than 1 % away from the histogram bounds."""
    ada, grace = people
    old, recent = moment - timedelta(days=3), moment - timedelta(minutes=20)
    record(ada, at=old, latency_ms=40.0, cached_tokens=400, reasoning_tokens=50)
    record(ada, at=old, status=429, prompt_tokens=0, completion_tokens=0, latency_ms=3.0)
    record(ada, at=old, stream=True, latency_ms=7_000.0, ttft_ms=180.0)
    record(grace, at=old, model="claude-sonnet-4", provider="anthropic", status=500, latency_ms=45_000.0)
    record(
        grace,
        at=recent,
        model="claude-sonnet-4",
        provider="anthropic",
        stream=True,
        latency_ms=700.0,
        ttft_ms=90.0,
        cached_tokens=100,
        cache_write_tokens=200,
    )
    record(ada, at=recent, status=499, stream=True, latency_ms=200_000.0, ttft_ms=1_300.0)


def log_the_raw_window(people, moment: datetime) -> None:
    """Rows newer than the boundary, not rolled up yet."""
    ada, grace = people
    now, minutes_ago = moment - timedelta(seconds=10), moment - timedelta(minutes=5)
    record(
        grace,
        at=minutes_ago,
        model="claude-sonnet-4",
        provider="anthropic",
        stream=True,
        latency_ms=2_000.0,
        ttft_ms=400.0,
        reasoning_tokens=120,
    )
    record(ada, at=now, status=400, prompt_tokens=0, completion_tokens=0, latency_ms=12.0)
    record(ada, at=now, latency_ms=95.0)


def test_the_figures_equal_what_was_logged_for_every_user(people, moment):
    log_a_mix(people, moment)
    rollups.rollup_pending()
    log_the_raw_window(people, moment)
    assert RequestLog.objects.filter(id__gt=rollups._cursor_position()).count() == 3  # not rolled up

    parsed = samples()

    assert_figures_match_the_log(parsed, list(RequestLog.objects.all()))
    assert value(parsed, "neurometric_requests_total", model="gpt-4o", provider="openai", outcome="ok") == 3
    assert value(parsed, "neurometric_rollup_lag_seconds") == pytest.approx(300, abs=5)
    assert "ada@example.com" not in scrape().content.decode()


def test_the_totals_stay_the_same_as_the_tail_is_rolled_up_and_time_passes(people, moment, monkeypatch):
    log_a_mix(people, moment)
    rollups.rollup_pending()
    log_the_raw_window(people, moment)
    before = totals(samples())

    rollups.rollup_pending()
    assert totals(samples()) == before  # rolled up but still read raw: nothing counted twice

    # later, the same rows are read from minute, hour and day rollups instead of raw rows
    for later in (timedelta(minutes=15), timedelta(hours=2), timedelta(days=2)):
        pin_clock(monkeypatch, moment + later)
        assert totals(samples()) == before, later
    assert_figures_match_the_log(samples(), list(RequestLog.objects.all()))


def test_the_totals_do_not_drop_when_raw_rows_are_pruned(people, moment):
    log_a_mix(people, moment)
    rollups.rollup_pending()
    log_the_raw_window(people, moment)
    logged = list(RequestLog.objects.all())
    before = totals(samples())

    assert rollups.prune_raw_logs(older_than_days=1) == 4

    assert totals(samples()) == before
    assert_figures_match_the_log(samples(), logged)


def test_a_late_row_with_an_old_time_is_counted_once_rolled_up(people, moment):
    log_a_mix(people, moment)
    rollups.rollup_pending()
    before = samples()  # caches the histograms of the past days
    ok = {"model": "gpt-4o", "provider": "openai", "outcome": "ok"}

    record(people[1], at=moment - timedelta(days=3), latency_ms=20.0)  # a spool replay, say
    waiting = samples()
    assert totals(waiting) == totals(before)  # not read yet: counted once, when rolled up
    assert value(waiting, "neurometric_rollup_lag_seconds") > 3 * 86400 - 60

    rollups.rollup_pending()
    after = samples()
    assert (
        value(after, "neurometric_requests_total", **ok)
        == value(before, "neurometric_requests_total", **ok) + 1
    )
    assert_figures_match_the_log(after, list(RequestLog.objects.all()))  # the cached day was re-read


def test_cached_histograms_equal_a_fresh_read(people, moment):
    log_a_mix(people, moment)
    rollups.rollup_pending()
    log_the_raw_window(people, moment)

    first = samples()
    assert samples() == first  # from the cache
    cache.delete_many([f"{metrics.CACHE_PREFIX}:days:total", f"{metrics.CACHE_PREFIX}:recent:parts"])
    assert samples() == first


def test_histogram_bounds_are_exact_within_one_percent(people, moment):
    for n, bound in enumerate(metrics.BUCKETS):
        for factor in (0.989, 1.011):  # just inside and just outside 1 % of the bound
            at = moment - timedelta(days=2) if n % 2 else moment - timedelta(seconds=10)
            record(
                people[0], at=at, latency_ms=bound * 1000 * factor, stream=True, ttft_ms=bound * 1000 * factor
            )
    rollups.rollup_pending()  # half of them from rollups, half (in the raw window) from raw rows

    assert_figures_match_the_log(samples(), list(RequestLog.objects.all()))


def test_label_values_are_escaped(people, moment):
    odd = 'my "model"\\with\nnewline'
    record(people[0], at=moment - timedelta(seconds=5), model=odd, provider="vllm")

    parsed = samples()

    assert value(parsed, "neurometric_requests_total", model=odd, provider="vllm", outcome="ok") == 1


def test_requests_to_the_analytics_routes_are_not_counted(people, moment):
    record(people[0], at=moment - timedelta(seconds=5), endpoint="usage", model="", provider="")

    assert not [key for key in samples() if key[0] == "neurometric_requests_total"]


# --- speed (not a test of time: run by hand) ---------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("METRICS_BENCH"), reason="set METRICS_BENCH=<rollup rows> to run")
def test_scrape_time_with_many_rollup_rows(people, moment, capsys):
    """METRICS_BENCH=200000 pytest tests/analytics/test_metrics.py -k scrape_time -s: day rollups over
    ~2 years, 8 model/provider pairs × users × task types, sketches of ~60 buckets."""
    wanted = int(os.environ["METRICS_BENCH"])
    users = [user_get_or_create(email=f"bench{n}@example.com")[0] for n in range(20)]
    pairs = [(f"model-{n}", f"provider-{n % 3}") for n in range(8)]
    days = 730
    per_day = max(1, wanted // days)
    groups = [
        (user, model, provider, task) for user in users for model, provider in pairs for task in "abcdefgh"
    ]
    first_day = rollups.bucket_floor(moment - timedelta(days=days), rollups.DAY)
    batch = []
    for day in range(days):
        for n in range(per_day):
            user, model, provider, task = groups[(day * per_day + n) % len(groups)]
            latency = {str(300 + 5 * k + (n % 7)): 1 + (k * n) % 9 for k in range(60)}
            batch.append(
                Rollup(
                    granularity="day",
                    bucket_start=first_day + timedelta(days=day),
                    user=user,
                    model=model,
                    provider=provider,
                    task_type=task,
                    requests=sum(latency.values()),
                    prompt_tokens=10**6,
                    completion_tokens=10**5,
                    cost_usd=Decimal("1.25"),
                    latency_sketch=latency,
                    ttft_sketch={str(200 + k): 1 for k in range(20)},
                )
            )
        if len(batch) >= 20_000:
            Rollup.objects.bulk_create(batch, batch_size=5000)
            batch = []
    Rollup.objects.bulk_create(batch, batch_size=5000)
    for n in range(2000):  # and a busy raw window
        record(people[n % 2], at=moment - timedelta(seconds=n % 500), latency_ms=50.0 + n)

    def best_of_three(before=lambda: None) -> str:
        seconds = []
        for _ in range(3):
            before()
            started = time.perf_counter()
            assert scrape().status_code == 200
            seconds.append(time.perf_counter() - started)
        return f"{min(seconds):.2f} s"

    keys = [
        f"{metrics.CACHE_PREFIX}:{name}:{part}" for name in ("days", "recent") for part in ("total", "parts")
    ]
    cold = best_of_three(lambda: cache.delete_many(keys))
    warm = best_of_three()
    fresh = best_of_three(lambda: record(people[0], at=moment - timedelta(seconds=1)))
    with capsys.disabled():
        print(
            f"\n{Rollup.objects.count():,} rollup rows, 2,000 raw rows in the window: scrape with an empty "
            f"cache {cold}, warm {warm}, warm after a new request {fresh} (best of three)"
        )
