"""GET /v1/requests.csv and /v1/organization/costs.csv: the same data as the JSON APIs, streamed as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from analytics.models import RequestLog
from tests.analytics.factories import BOUNDARY, CLAUDE, NOW, log_row, pin_clock, rolled_up, total_cost, ts

pytestmark = pytest.mark.django_db

DAY = 86400


def read_csv(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def header(response) -> list[str]:
    return b"".join(response.streaming_content).decode().splitlines()[0].split(",")


# --- requests.csv ----------------------------------------------------------------------------------------


def test_requests_csv_has_a_header_and_one_row_per_request_newest_first(api, owner, owner_key):
    now = timezone.now()
    rows = [log_row(owner, owner_key[0], at=now - timedelta(seconds=s), prompt=100 + s) for s in (30, 20, 10)]

    response = api.get("/v1/requests.csv")

    assert response["Content-Disposition"] == 'attachment; filename="requests.csv"'
    lines = read_csv(response)
    assert [line["id"] for line in lines] == [row.request_id for row in reversed(rows)]
    assert lines[0]["prompt_tokens"] == "110"
    assert lines[0]["status"] == "200"
    assert Decimal(lines[0]["cost_usd"]) == total_cost([rows[-1]])
    assert sum(Decimal(line["cost_usd"]) for line in lines) == total_cost(rows)


def test_requests_csv_applies_the_list_filters(api, owner, owner_key):
    now = timezone.now()
    log_row(owner, owner_key[0], at=now - timedelta(seconds=3))
    failed = log_row(
        owner, owner_key[0], at=now - timedelta(seconds=2), status=503, model="claude-3-5-sonnet"
    )

    lines = read_csv(api.get("/v1/requests.csv?status=5xx&model=claude-3-5-sonnet"))

    assert [line["id"] for line in lines] == [failed.request_id]


def test_requests_csv_streams_more_rows_than_one_read_chunk(api, owner, owner_key, monkeypatch):
    from analytics import selectors

    real = selectors.request_iter
    monkeypatch.setattr(selectors, "request_iter", lambda **kwargs: real(**kwargs, chunk=7))
    now = timezone.now()
    rows = [log_row(owner, owner_key[0], at=now - timedelta(seconds=i)) for i in range(25)]

    lines = read_csv(api.get("/v1/requests.csv"))

    assert [line["id"] for line in lines] == [row.request_id for row in rows]


def test_text_a_spreadsheet_would_run_as_a_formula_is_quoted(api, owner, owner_key):
    log_row(owner, owner_key[0], at=timezone.now(), end_user='=HYPERLINK("http://evil")', tags=["+1", "ok"])

    [line] = read_csv(api.get("/v1/requests.csv"))

    assert line["end_user"] == '\'=HYPERLINK("http://evil")'
    assert line["tags"] == "'+1,ok"


def test_an_export_leaves_its_own_log_row(api):
    response = api.get("/v1/requests.csv")
    b"".join(response.streaming_content)

    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert (row.endpoint, row.status_code) == ("requests.export", 200)


# --- costs.csv -------------------------------------------------------------------------------------------


def test_costs_csv_has_one_row_per_bucket_and_group(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    rows = [
        log_row(owner, owner_key[0], at=NOW - timedelta(days=2, hours=1)),
        log_row(owner, owner_key[0], at=NOW - timedelta(seconds=5)),
        log_row(
            owner,
            owner_key[0],
            at=NOW - timedelta(seconds=4),
            model="claude-3-5-sonnet",
            provider="anthropic",
            pricing=CLAUDE,
        ),
    ]
    rolled_up([row for row in rows if row.created_at < BOUNDARY])

    response = api.get(f"/v1/organization/costs.csv?start_time={ts(NOW) - 3 * DAY}&group_by=model")

    assert response["Content-Disposition"] == 'attachment; filename="costs.csv"'
    lines = read_csv(response)
    assert [(line["start_time"][:10], line["model"]) for line in lines] == [
        ("2026-03-15", ""),  # an empty bucket: one row of 0
        ("2026-03-16", "gpt-4o"),
        ("2026-03-17", ""),
        ("2026-03-18", "claude-3-5-sonnet"),
        ("2026-03-18", "gpt-4o"),
    ]
    assert all(line["currency"] == "usd" for line in lines)
    assert sum(Decimal(line["amount_usd"]) for line in lines) == total_cost(rows)


def test_costs_csv_with_line_items_adds_up_to_the_rows(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    rows = [log_row(owner, owner_key[0], at=NOW - timedelta(hours=h), cached=100) for h in (1, 30)]
    rolled_up(rows)

    lines = read_csv(api.get(f"/v1/organization/costs.csv?start_time={ts(NOW) - DAY}&group_by=line_item"))

    assert {line["line_item"] for line in lines} == {
        "gpt-4o, input",
        "gpt-4o, cached input",
        "gpt-4o, output",
    }
    assert sum(Decimal(line["amount_usd"]) for line in lines) == total_cost(rows)


def test_costs_csv_pages_a_long_range_with_x_next_page(api, monkeypatch):
    pin_clock(monkeypatch)

    response = api.get(f"/v1/organization/costs.csv?start_time={ts(NOW) - 10 * DAY}&limit=4")

    assert len(read_csv(response)) == 4
    assert response["x-next-page"]


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/requests.csv?status=teapot", "status"),
        ("/v1/organization/costs.csv", "start_time"),
        ("/v1/organization/costs.csv?start_time=1773800000&bucket_width=1m", "bucket_width"),
    ],
)
def test_invalid_parameters_are_a_json_400(api, path, param):
    response = api.get(path)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["param"] == param


# --- privacy --------------------------------------------------------------------------------------------


def test_another_user_exports_none_of_the_owners_data(api, outsider_api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    rows = [log_row(owner, owner_key[0], at=NOW - timedelta(hours=h)) for h in (0, 5)]
    rolled_up([row for row in rows if row.created_at < BOUNDARY])

    requests_csv = outsider_api.get("/v1/requests.csv")
    costs_lines = read_csv(
        outsider_api.get(f"/v1/organization/costs.csv?start_time={ts(NOW) - DAY}&group_by=model,line_item")
    )

    assert read_csv(requests_csv) == []
    assert [line["model"] for line in costs_lines] == ["", ""]
    assert all(Decimal(line["amount_usd"]) == 0 for line in costs_lines)


@pytest.mark.parametrize("path", ["/v1/requests.csv", "/v1/organization/costs.csv?start_time=1773800000"])
def test_without_a_key_it_is_401(client, path):
    response = client.get(path)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
