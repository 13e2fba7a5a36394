"""Users log in with their email; API keys are stored only as a SHA-256 digest plus a display prefix."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)  # None gives an unusable password: API-only users
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class LimitFields(models.Model):
    """Key policies. On a user they are the defaults every key inherits; on a key, blank means inherit."""

    rpm = models.PositiveIntegerField("requests per minute", null=True, blank=True)
    tpm = models.PositiveIntegerField("tokens per minute", null=True, blank=True)
    max_parallel = models.PositiveIntegerField("parallel requests", null=True, blank=True)
    monthly_budget_usd = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="USD per calendar month (UTC)."
    )
    allowed_models = models.JSONField(
        null=True, blank=True, help_text='Model ids or patterns such as "gpt-4o*"; empty: every model.'
    )

    class Meta:
        abstract = True


class User(AbstractBaseUser, PermissionsMixin, LimitFields):
    email = models.EmailField(unique=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    def __str__(self) -> str:
        return self.email


class ApiKey(LimitFields):
    """An `nm-` key. The secret itself is never stored: only its digest and a short display prefix."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True, help_text="Shown to people: nm- and 8 more.")
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the full key, hex.")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    fallbacks = models.JSONField(
        default=list, blank=True, help_text="Models tried in order when the requested one fails."
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="The key stops working then.")
    cache_ttl_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Answer identical requests from the response cache for this long; blank: off.",
    )
    store_bodies = models.BooleanField(
        default=False,
        help_text="Keep this key's request and response bodies on the log (redacted), as "
        "STORE_REQUEST_BODIES does for every key: a shadow evaluation replays them.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class BudgetAlert(models.Model):
    """One email per key, calendar month and threshold (80 or 100 % of the monthly budget)."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="budget_alerts")
    period = models.CharField(max_length=7, help_text="YYYY-MM, UTC.")
    threshold = models.PositiveSmallIntegerField()
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "period", "threshold"], name="budget_alert_once"),
        ]

    def __str__(self) -> str:
        return f"{self.api_key.prefix} {self.period} {self.threshold}%"
