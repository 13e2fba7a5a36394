"""LatencyRollup rows for the rollups written before they existed (analytics.rollups.latency_rollups_rewrite).

It reads the current models rather than the historical ones: it runs only while 0007 is the latest state.
"""

from django.db import migrations


def backfill(apps, schema_editor):
    if not apps.get_model("analytics", "Rollup").objects.exists():
        return  # a new database (or the tests'): nothing to fill, and the current models are not touched
    from analytics.rollups import latency_rollups_rewrite

    latency_rollups_rewrite()


class Migration(migrations.Migration):
    atomic = False  # one short transaction per block of buckets, as the rollup job writes them

    dependencies = [
        ("analytics", "0007_latency_rollups"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
