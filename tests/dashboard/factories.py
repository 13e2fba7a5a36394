"""Dashboard test data: rollups as the rollup job leaves them, LatencyRollup rows included."""

from __future__ import annotations

from django.db.models import Model

from analytics.rollups import latency_rollups_rewrite
from tests.analytics import factories


def rolled_up(rows: list[Model], *granularities: str) -> list[Model]:
    """`tests.analytics.factories.rolled_up`, then the LatencyRollup rows the job writes with them."""
    factories.rolled_up(rows, *granularities)
    latency_rollups_rewrite()
    return rows
