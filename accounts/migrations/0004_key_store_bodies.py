# A key can keep its request and response bodies on the log, for shadow evaluations.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_key_policies"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="store_bodies",
            field=models.BooleanField(
                default=False,
                help_text="Keep this key's request and response bodies on the log (redacted), as "
                "STORE_REQUEST_BODIES does for every key: a shadow evaluation replays them.",
            ),
        ),
    ]
