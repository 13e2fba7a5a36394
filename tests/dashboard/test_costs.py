"""Cost analysis: model × task type, per period, month to date with its projection, budget use per key."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.services import api_key_create
from tests.analytics.factories import NOW, log_row, stored
from tests.dashboard.factories import rolled_up

pytestmark = pytest.mark.django_db


def test_the_breakdown_by_model_and_task_type(web, traffic, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        response = web.get("/dashboard/costs/")
    assert response.status_code == 200
    pivot = {row["model"]: row for row in response.context["pivot"]}
    tasks = response.context["tasks"]
    claude = pivot["claude-3-5-sonnet"]
    summarization = claude["cells"][tasks.index("summarization")]
    claude_rows = [r for r in stored(traffic.current) if r.model == "claude-3-5-sonnet"]
    assert summarization.cost_usd == claude_rows[0].cost_usd
    total = sum((row["total"].cost_usd for row in pivot.values()), Decimal(0))
    assert total == response.context["usage"].current.cost_usd
    body = response.content.decode()
    assert "Breakdown by model and task type" in body and "Model × task type" in body


def test_periods_are_listed_newest_first(web, traffic):
    periods = web.get("/dashboard/costs/").context["periods"]
    assert len(periods) == 24 and periods[0]["start"] > periods[-1]["start"]
    assert sum(p["totals"].requests for p in periods) == 9


def test_month_to_date_and_its_projection(web, user, traffic):
    month = web.get("/dashboard/costs/").context["month"]
    spent = sum((row.cost_usd for row in stored(traffic.rows)), Decimal(0))
    assert month.spent == spent
    # March 18, 12:34:56 UTC: 17.52 of 31 days gone
    fraction = (17 * 86400 + 12 * 3600 + 34 * 60 + 56) / (31 * 86400)
    assert month.projected == (spent / Decimal(str(fraction))).quantize(Decimal("0.01"))
    assert month.day == 18 and month.days == 31


def test_budget_use_per_key(web, user, traffic):
    capped, _ = api_key_create(user=user, name="capped", monthly_budget_usd=Decimal("2"))
    rolled_up([log_row(user, capped, at=NOW - timedelta(days=1), prompt=200_000, completion=50_000)])  # $1
    user.monthly_budget_usd = Decimal("100")
    user.save()
    budgets = {row.key.name: row for row in web.get("/dashboard/costs/").context["budgets"]}
    assert budgets["capped"].spent == Decimal("1") and budgets["capped"].percent == pytest.approx(50)
    assert budgets["production"].budget == Decimal("100") and budgets["production"].inherited


def test_filters_apply(web, traffic):
    response = web.get("/dashboard/costs/", {"task_type": "summarization"})
    assert list(response.context["usage"].by["model"]) == ["claude-3-5-sonnet"]
