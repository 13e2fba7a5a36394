"""Staff-managed catalogue rows. A row wins over the entry of the same id in gateway/catalog.json."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class CatalogModel(models.Model):
    """A model added by staff, or a price override of a catalogue model (blank fields keep the file's)."""

    id = models.CharField(max_length=200, primary_key=True, help_text="Public model id clients send.")
    provider = models.CharField(max_length=50, blank=True)
    upstream = models.CharField(max_length=200, blank=True, help_text="Model name sent to the provider.")
    aliases = models.CharField(max_length=500, blank=True, help_text="Comma-separated other ids.")
    family = models.CharField(max_length=100, blank=True)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    price_date = models.DateField(null=True, blank=True, help_text="When the price was taken.")
    is_active = models.BooleanField(default=True, help_text="Off: the model is not served at all.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "catalogue model"

    def __str__(self) -> str:
        return self.id


class LimitState(models.Model):
    """Rate-limit state for the embedded default (with Redis, it lives in Redis): a token bucket's level
    and time, a parallel slot (its expiry in `updated`), or a month's spend in nano-dollars."""

    key = models.CharField(max_length=200, primary_key=True)
    level = models.FloatField()
    updated = models.FloatField(help_text="Unix time of the level; for slots and spend, when it expires.")

    def __str__(self) -> str:
        return self.key


class RoutingRule(models.Model):
    """Requests of a key for `from_model` (of `task_type`, if set) are served by `to_model` instead:
    how an applied recommendation takes effect. Visible on the key and reversible."""

    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="routing_rules")
    from_model = models.CharField(max_length=200)
    task_type = models.CharField(max_length=32, blank=True, help_text="Blank: every task type.")
    to_model = models.CharField(max_length=200)
    recommendation = models.ForeignKey(
        "analytics.Recommendation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="routing_rules",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        task = f" ({self.task_type})" if self.task_type else ""
        return f"{self.from_model}{task} → {self.to_model}"


class ResponseCacheEntry(models.Model):
    """A cached answer, for the embedded default (with REDIS_URL, answers live in Redis): the completion
    body a user got for a request, served again until `expires_at` (gateway/response_cache.py)."""

    key = models.CharField(max_length=80, primary_key=True, help_text="User id and the request's SHA-256.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    body = models.BinaryField(help_text="The completion body, JSON, as the client got it.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The purge deletes expired entries.
            models.Index(fields=["expires_at"], name="responsecache_expires"),
        ]

    def __str__(self) -> str:
        return self.key
