"""GET /v1/organization/costs: OpenAI's Costs API, with exact decimal amounts and per-price line items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from analytics.models import RequestLog
from tests.analytics.factories import (
    BOUNDARY,
    CLAUDE,
    GPT_4O,
    NOW,
    log_row,
    pin_clock,
    rolled_up,
    total_cost,
    ts,
)

pytestmark = pytest.mark.django_db

URL = "/v1/organization/costs"
DAY = 86400


def costs(api, **params) -> dict:
    response = api.get(f"{URL}?{urlencode(params, doseq=True)}")
    assert response.status_code == 200, response.content
    return response.json()


def all_results(page: dict) -> list[dict]:
    return [result for bucket in page["data"] for result in bucket["results"]]


def amount(page: dict) -> Decimal:
    return sum((Decimal(result["amount_usd"]) for result in all_results(page)), Decimal(0))


@pytest.fixture
def two_models(owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    return [
        log_row(owner, owner_key[0], at=NOW - timedelta(seconds=30), prompt=1000, cached=200, completion=300),
        log_row(
            owner,
            owner_key[0],
            at=NOW - timedelta(seconds=20),
            model="claude-3-5-sonnet",
            provider="anthropic",
            pricing=CLAUDE,
            prompt=2000,
            cached=500,
            cache_write=300,
            completion=100,
            task_type="summarization",
        ),
    ]


def test_the_page_has_openai_costs_shape_with_exact_amounts(api, two_models):
    page = costs(api, start_time=ts(NOW) - DAY)

    assert set(page) == {"object", "data", "has_more", "next_page"}
    assert page["object"] == "page"
    bucket = page["data"][-1]
    assert set(bucket) == {"object", "start_time", "end_time", "results"}
    [result] = bucket["results"]
    assert result == {
        "object": "organization.costs.result",
        "amount": {"value": float(total_cost(two_models)), "currency": "usd"},
        "line_item": None,
        "project_id": None,
        "amount_usd": "0.011625000000",
    }
    assert Decimal(result["amount_usd"]) == total_cost(two_models)


def test_line_items_split_each_model_by_price_class(api, two_models):
    page = costs(api, start_time=ts(NOW) - DAY, group_by="line_item")

    items = {result["line_item"]: Decimal(result["amount_usd"]) for result in all_results(page)}
    assert items == {
        "gpt-4o, input": Decimal("0.002"),  # 800 uncached × $2.50 / 1M
        "gpt-4o, cached input": Decimal("0.00025"),  # 200 × $1.25 / 1M
        "gpt-4o, output": Decimal("0.003"),  # 300 × $10 / 1M
        "claude-3-5-sonnet, input": Decimal("0.0036"),  # (2000 − 500 − 300) × $3 / 1M
        "claude-3-5-sonnet, cached input": Decimal("0.00015"),
        "claude-3-5-sonnet, cache write": Decimal("0.001125"),
        "claude-3-5-sonnet, output": Decimal("0.0015"),
    }
    assert sum(items.values()) == total_cost(two_models)
    assert all(result["amount"]["currency"] == "usd" for result in all_results(page))


def test_line_items_combine_with_model_task_type_and_key(api, owner_key, two_models):
    page = costs(api, start_time=ts(NOW) - DAY, group_by=["line_item", "model", "task_type", "api_key_id"])

    results = all_results(page)
    assert len(results) == 7
    output = next(r for r in results if r["line_item"] == "claude-3-5-sonnet, output")
    assert output["model"] == "claude-3-5-sonnet"
    assert output["task_type"] == "summarization"
    assert output["api_key_id"] == str(owner_key[0].id)


@pytest.mark.parametrize(
    ("group_by", "keys"),
    [
        ("model", {"model"}),
        ("task_type", {"task_type"}),
        ("api_key_id", {"api_key_id"}),
        ("model,task_type", {"model", "task_type"}),
    ],
)
def test_grouped_results_carry_only_the_grouped_fields(api, two_models, group_by, keys):
    page = costs(api, start_time=ts(NOW) - DAY, group_by=group_by)

    base = {"object", "amount", "line_item", "project_id", "amount_usd"}
    assert all(set(result) == base | keys for result in all_results(page))
    assert amount(page) == total_cost(two_models)


def test_unknown_prices_add_nothing_and_totals_stay_exact(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    priced = log_row(owner, owner_key[0], at=NOW - timedelta(seconds=9))
    unpriced = log_row(owner, owner_key[0], at=NOW - timedelta(seconds=8), model="openai/gpt-9", pricing=None)
    assert unpriced.cost_usd is None

    assert amount(costs(api, start_time=ts(NOW) - DAY)) == total_cost([priced])
    assert amount(costs(api, start_time=ts(NOW) - DAY, group_by="line_item")) == total_cost([priced])


def test_amounts_are_the_exact_sum_of_rows_across_rollups_and_raw_rows(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    rows = [
        log_row(
            owner,
            owner_key[0],
            at=NOW - timedelta(hours=4 * i, minutes=i),
            model=("gpt-4o", "claude-3-5-sonnet")[i % 2],
            pricing=(GPT_4O, CLAUDE)[i % 2],
            prompt=1234 * i + 17,
            cached=(97 * i) % 500,
            cache_write=(i % 3) * 11,
            completion=321 * i + 3,
        )
        for i in range(30)
    ]
    rows.append(
        log_row(owner, owner_key[0], at=NOW - timedelta(seconds=2), prompt=999_999, completion=77_777)
    )
    rolled_up([row for row in rows if row.created_at < BOUNDARY])

    daily = costs(api, start_time=ts(NOW) - 6 * DAY, end_time=ts(NOW))
    hourly = costs(api, start_time=ts(NOW) - 6 * DAY, end_time=ts(NOW), bucket_width="1h", limit=168)
    items = costs(api, start_time=ts(NOW) - 6 * DAY, end_time=ts(NOW), group_by="line_item,model")

    assert not (daily["has_more"] or hourly["has_more"] or items["has_more"])

    assert amount(daily) == amount(hourly) == amount(items) == total_cost(rows)


def test_buckets_older_than_the_raw_retention_give_one_line_item_per_model(
    api, owner, owner_key, monkeypatch, settings
):
    settings.REQUEST_LOG_RETENTION_DAYS = 30
    pin_clock(monkeypatch)
    old = log_row(owner, owner_key[0], at=NOW - timedelta(days=40))
    rolled_up([old])
    old_cost = total_cost([old])
    RequestLog.objects.filter(id=old.id).delete()  # pruned: only its rollups are left
    recent = log_row(owner, owner_key[0], at=NOW - timedelta(days=2), prompt=1000, completion=0)

    page = costs(api, start_time=ts(NOW) - 45 * DAY, end_time=ts(NOW), group_by="line_item", limit=180)

    items = [(r["line_item"], Decimal(r["amount_usd"])) for r in all_results(page)]
    assert items == [("gpt-4o", old_cost), ("gpt-4o, input", total_cost([recent]))]


def test_hour_buckets_and_paging(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    row = log_row(owner, owner_key[0], at=datetime(2026, 3, 18, 3, 30, tzinfo=UTC))
    rolled_up([row])

    first = costs(api, start_time=ts(datetime(2026, 3, 18, tzinfo=UTC)), bucket_width="1h", limit=4)
    second = costs(
        api,
        start_time=ts(datetime(2026, 3, 18, tzinfo=UTC)),
        bucket_width="1h",
        limit=4,
        page=first["next_page"],
    )

    assert [len(b["results"]) for b in first["data"]] == [0, 0, 0, 1]
    assert first["has_more"] is True
    assert second["data"][0]["start_time"] == ts(datetime(2026, 3, 18, 4, tzinfo=UTC))
    assert len(costs(api, start_time=ts(NOW) - 3 * DAY, bucket_width="1h")["data"]) == 24
    assert len(costs(api, start_time=ts(NOW) - 30 * DAY)["data"]) == 7


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("", "start_time"),
        ("start_time=1773800000&bucket_width=1m", "bucket_width"),
        ("start_time=1773800000&group_by=provider", "group_by"),
        ("start_time=1773800000&limit=181", "limit"),
        ("start_time=1773800000&bucket_width=1h&limit=169", "limit"),
        ("start_time=1773800000&end_time=1", "end_time"),
        ("start_time=1773800000&page=YnVja2V0OjE", "page"),
    ],
)
def test_invalid_parameters_are_400_naming_the_param(api, query, param):
    response = api.get(f"{URL}?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_a_request_finished_a_second_ago_is_in_the_costs(api, owner, owner_key):
    now = timezone.now()
    row = log_row(owner, owner_key[0], at=now - timedelta(seconds=1))

    assert amount(costs(api, start_time=ts(now) - 60)) == total_cost([row])
    assert amount(costs(api, start_time=ts(now) - 60, group_by="line_item")) == total_cost([row])


@pytest.mark.parametrize("group_by", ["", "line_item", "model,api_key_id,task_type"])
def test_another_user_sees_none_of_the_owners_costs(
    api, outsider_api, owner, owner_key, monkeypatch, group_by
):
    pin_clock(monkeypatch)
    rows = [log_row(owner, owner_key[0], at=NOW - timedelta(hours=h)) for h in (0, 6, 30)]
    rolled_up([row for row in rows if row.created_at < BOUNDARY])

    theirs = costs(outsider_api, start_time=ts(NOW) - 3 * DAY, group_by=group_by)

    assert all_results(theirs) == []
    assert amount(theirs) == 0
    assert amount(costs(api, start_time=ts(NOW) - 3 * DAY, group_by=group_by)) == total_cost(rows)


def test_without_a_key_it_is_401(client):
    response = client.get(f"{URL}?start_time=1773800000")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
