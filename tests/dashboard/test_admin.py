"""Django admin for staff: users, keys, the request log (read-only and fast), rollups, recommendations,
the catalogue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from analytics.admin import CAP_COUNT, CappedCountPaginator
from analytics.models import RequestLog
from tests.analytics.factories import NOW, log_row
from tests.dashboard.conftest import recommendation_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db, client_for):
    admin_user = User.objects.create_superuser(email="root@example.com", password="x-admin-pass-1")
    return client_for(admin_user)


def test_staff_pages_render(staff, traffic, user):
    recommendation_for(user)
    for url in (
        "/admin/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{user.pk}/change/",
        "/admin/accounts/apikey/",
        f"/admin/accounts/apikey/{traffic.key.pk}/change/",
        "/admin/analytics/requestlog/",
        f"/admin/analytics/requestlog/{traffic.rows[0].pk}/change/",
        "/admin/analytics/rollup/",
        "/admin/analytics/recommendation/",
        "/admin/gateway/catalogmodel/",
        "/admin/gateway/catalogmodel/add/",
        "/admin/gateway/routingrule/",
    ):
        assert staff.get(url).status_code == 200, url


def test_the_request_log_list_never_counts_the_whole_table(staff, traffic, django_assert_max_num_queries):
    with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(10):
        response = staff.get("/admin/analytics/requestlog/")
    assert response.status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
    log_queries = [q["sql"] for q in queries.captured_queries if 'FROM "analytics_requestlog"' in q["sql"]]
    assert not any("MIN(" in sql.upper() or "DISTINCT" in sql.upper() for sql in log_queries), log_queries
    body = response.content.decode()
    assert traffic.rows[0].request_id in body


def test_the_paginator_caps_its_count(user, monkeypatch):
    monkeypatch.setattr("analytics.admin.CAP_COUNT", 3)
    rows = [log_row(user, None, at=NOW - timedelta(seconds=i)) for i in range(5)]
    assert len(rows) == 5
    assert CappedCountPaginator(RequestLog.objects.all(), 2).count == 4  # "more than 3"
    assert CAP_COUNT == 10_000


def test_the_request_log_is_read_only(staff, traffic):
    row = traffic.rows[0]
    assert staff.get("/admin/analytics/requestlog/add/").status_code == 403
    staff.post(f"/admin/analytics/requestlog/{row.pk}/change/", {"status_code": 200})
    staff.post(f"/admin/analytics/requestlog/{row.pk}/delete/", {"post": "yes"})
    assert RequestLog.objects.filter(pk=row.pk, status_code=row.status_code).exists()


def test_filters_search_and_the_date_drill_down(staff, traffic):
    assert staff.get("/admin/analytics/requestlog/", {"status_class": "5xx"}).context["cl"].result_count == 1
    assert (
        staff.get("/admin/analytics/requestlog/", {"provider": "anthropic"}).context["cl"].result_count == 1
    )
    found = staff.get("/admin/analytics/requestlog/", {"q": traffic.rows[0].request_id})
    assert found.context["cl"].result_count == 1
    body = staff.get("/admin/analytics/requestlog/").content.decode()
    assert "created_at__year=2026" in body or "created_at__month=3" in body
    march = staff.get("/admin/analytics/requestlog/", {"created_at__year": "2026", "created_at__month": "3"})
    assert march.status_code == 200 and "created_at__day=17" in march.content.decode()
    day = staff.get(
        "/admin/analytics/requestlog/",
        {"created_at__year": "2026", "created_at__month": "3", "created_at__day": "17"},
    )
    assert day.context["cl"].result_count == 2  # the previous day's two requests


def test_revoke_keys_and_search_by_prefix_or_owner(staff, user):
    key, _ = api_key_create(user=user, name="to revoke")
    assert staff.get("/admin/accounts/apikey/", {"q": key.prefix}).context["cl"].result_count == 1
    assert staff.get("/admin/accounts/apikey/", {"q": "alice@"}).context["cl"].result_count == 1
    staff.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_user_actions(staff, user):
    for action, check in (
        ("deactivate", lambda u: not u.is_active),
        ("activate", lambda u: u.is_active),
        ("make_staff", lambda u: u.is_staff),
        ("remove_staff", lambda u: not u.is_staff),
    ):
        staff.post("/admin/accounts/user/", {"action": action, "_selected_action": [str(user.pk)]})
        user.refresh_from_db()
        assert check(user), action


def test_staff_cannot_deactivate_themselves(staff):
    me = User.objects.get(email="root@example.com")
    staff.post("/admin/accounts/user/", {"action": "deactivate", "_selected_action": [str(me.pk)]})
    me.refresh_from_db()
    assert me.is_active
