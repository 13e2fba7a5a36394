"""Migration 0010 fills the figures 0009 adds to LatencyRollup from the Rollup rows already stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Sum

from accounts.services import api_key_create, user_get_or_create
from analytics.models import LatencyRollup, Rollup
from tests.analytics.factories import log_row, rolled_up

FIGURES = ("requests", "errors_server", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_usd")


def _migrate(target: str) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("analytics", target)])


@pytest.mark.django_db(transaction=True)
def test_0010_fills_the_new_figures_from_the_rollups():
    user, _ = user_get_or_create(email="migrate@example.com")
    key, _ = api_key_create(user=user, name="m")
    start = datetime(2026, 3, 1, tzinfo=UTC)
    rolled_up(
        [
            log_row(
                user,
                key,
                at=start + timedelta(minutes=37 * i),
                model=("gpt-4o", "gpt-4o-mini")[i % 2],
                status=(200, 200, 503)[i % 3],
                prompt=100 + i,
                cached=i,
                completion=7 * i,
            )
            for i in range(40)
        ]
    )
    expected = _sums(Rollup.objects.filter(granularity="hour"))
    LatencyRollup.objects.update(**{name: 0 for name in FIGURES})  # as 0009 leaves them: new columns at 0
    _migrate("0009_latency_rollups_figures")
    _migrate("0010_latency_rollups_figures_backfill")
    assert _sums(LatencyRollup.objects.filter(granularity="hour")) == expected
    assert expected[("gpt-4o", "prompt_tokens")] > 0 and expected[("gpt-4o-mini", "errors_server")] > 0
    loader = MigrationExecutor(connection).loader
    _migrate(max(name for app, name in loader.graph.leaf_nodes() if app == "analytics"))


def _sums(rows) -> dict:
    found = {}
    for row in rows.values("model").annotate(**{name: Sum(name) for name in FIGURES}):
        for name in FIGURES:
            found[(row["model"], name)] = row[name]
    return found
