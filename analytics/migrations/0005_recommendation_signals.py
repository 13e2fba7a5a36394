# Fingerprints of each request for the recommendations, the routing rule that served it, and the field-wise
# agreement of a shadow evaluation.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0004_recommendations"),
    ]

    operations = [
        migrations.AddField(
            model_name="requestlog",
            name="request_hash",
            field=models.CharField(
                blank=True,
                default="",
                help_text="SHA-256 of the request minus stream and user.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="requestlog",
            name="prefix_hash",
            field=models.CharField(
                blank=True,
                default="",
                help_text="SHA-256 of a prompt prefix of ≥ 1,024 tokens.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="requestlog",
            name="prefix_tokens",
            field=models.PositiveIntegerField(blank=True, help_text="Estimated (chars / 4).", null=True),
        ),
        migrations.AddField(
            model_name="requestlog",
            name="system_hash",
            field=models.CharField(
                blank=True, default="", help_text="SHA-256 of the system / developer prompt.", max_length=64
            ),
        ),
        migrations.AddField(
            model_name="requestlog",
            name="system_tokens",
            field=models.PositiveIntegerField(blank=True, help_text="Estimated (chars / 4).", null=True),
        ),
        migrations.AddField(
            model_name="requestlog",
            name="routing_rule_id",
            field=models.BigIntegerField(
                blank=True, help_text="The gateway.RoutingRule that sent it to another model.", null=True
            ),
        ),
        migrations.AddIndex(
            model_name="requestlog",
            index=models.Index(fields=["request_hash"], name="requestlog_request_hash"),
        ),
        migrations.AddIndex(
            model_name="requestlog",
            index=models.Index(
                condition=models.Q(routing_rule_id__isnull=False),
                fields=["routing_rule_id", "created_at"],
                name="requestlog_rule_created",
            ),
        ),
        migrations.AddField(
            model_name="shadowevaluation",
            name="field_agreement",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Field-wise comparisons: JSON field → share of answers agreeing.",
            ),
        ),
    ]
