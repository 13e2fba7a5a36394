"""Fill LatencyRollup's new figures (0009) from the Rollup rows (analytics.rollups.latency_rollups_rewrite).

It reads the current models rather than the historical ones: it runs only while 0009 is the latest state.
"""

from django.db import migrations

from analytics.backfills import latency_rollups_backfill


class Migration(migrations.Migration):
    atomic = False  # one short transaction per block of buckets, as the rollup job writes them

    dependencies = [
        ("analytics", "0009_latency_rollups_figures"),
    ]

    operations = [
        migrations.RunPython(latency_rollups_backfill, migrations.RunPython.noop, elidable=True),
    ]
