"""Dashboard test data: rollups as the rollup job leaves them, LatencyRollup rows included."""

from tests.analytics.factories import rolled_up

__all__ = ["rolled_up"]
