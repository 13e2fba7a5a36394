"""The request log page: filters, and keyset pagination (a cursor of (created_at, id), never OFFSET)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import api_key_create
from dashboard.views import PAGE_SIZE
from tests.analytics.factories import NOW, log_row, pin_clock

pytestmark = pytest.mark.django_db


def test_the_table_lists_the_users_requests_newest_first(web, traffic, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        response = web.get("/dashboard/logs/")
    rows = response.context["rows"]
    assert [row.created_at for row in rows] == sorted((row.created_at for row in rows), reverse=True)
    assert len(rows) == 11  # the last 7 days
    body = response.content.decode()
    assert traffic.key.prefix in body  # the key column, without a query per row
    assert f'href="/dashboard/logs/{traffic.current[0].request_id}/"' in body


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"status": "5xx"}, 1),
        ({"status": "4xx"}, 3),
        ({"status": "429"}, 1),
        ({"status": "2xx"}, 7),
        ({"model": "claude-3-5-sonnet"}, 1),
        ({"provider": "anthropic"}, 1),
        ({"task_type": "classification"}, 2),
        ({"range": "24h"}, 9),
    ],
)
def test_filters(web, traffic, params, count):
    assert len(web.get("/dashboard/logs/", params).context["rows"]) == count


def test_the_key_filter(web, user, traffic):
    other_key, _ = api_key_create(user=user, name="second")
    log_row(user, other_key, at=NOW - timedelta(minutes=1))
    response = web.get("/dashboard/logs/", {"api_key_id": str(other_key.id)})
    assert [row.api_key_id for row in response.context["rows"]] == [other_key.id]


def test_keyset_pagination_walks_every_row_once_without_offset(web, user, monkeypatch):
    pin_clock(monkeypatch)
    key, _ = api_key_create(user=user, name="busy")
    made = {log_row(user, key, at=NOW - timedelta(seconds=i)).request_id for i in range(PAGE_SIZE * 2 + 5)}
    seen, url, pages = [], "/dashboard/logs/", 0
    while url:
        with CaptureQueriesContext(connection) as queries:
            response = web.get(url)
        assert not any("OFFSET" in q["sql"].upper() for q in queries.captured_queries)
        seen += [row.request_id for row in response.context["rows"]]
        pages += 1
        cursor = response.context["next_cursor"]
        url = f"/dashboard/logs/?after={cursor}" if cursor else None
        if cursor:
            assert f"after={cursor}" in response.content.decode()
    assert pages == 3 and len(seen) == len(set(seen)) == len(made) and set(seen) == made


def test_a_damaged_cursor_falls_back_to_the_first_page(web, traffic):
    response = web.get("/dashboard/logs/", {"after": "not-a-cursor!"})
    assert response.status_code == 200 and len(response.context["rows"]) == 11
    assert "no longer valid" in response.content.decode()


def test_no_rows(web, user, monkeypatch):
    pin_clock(monkeypatch)
    assert "No requests match" in web.get("/dashboard/logs/").content.decode()
