"""Data migrations' steps that call the current code (they run only while their migration is the latest)."""


def latency_rollups_backfill(apps, schema_editor):
    """Rewrite every LatencyRollup row from the Rollup rows (analytics.rollups.latency_rollups_rewrite)."""
    if not apps.get_model("analytics", "Rollup").objects.exists():
        return  # a new database (or the tests'): nothing to fill, and the current models are not touched
    from analytics.rollups import latency_rollups_rewrite

    latency_rollups_rewrite()
