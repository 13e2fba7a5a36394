"""Formerly the LatencyRollup backfill. It now does nothing: 0010 rewrites every LatencyRollup row (with the
figures 0009 adds) once the columns exist, and the backfill reads the current models, which a database
migrating from 0007 would not have yet at this step.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0007_latency_rollups"),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop, elidable=True),
    ]
