"""The request log: one row for every authenticated /v1 request, however it ended; its rollups; and the
recommendations drawn from it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class RequestLog(models.Model):
    request_id = models.CharField(max_length=64, unique=True, help_text="The x-request-id the client got.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(help_text="When the request arrived.")
    endpoint = models.CharField(max_length=64, default="chat.completions")

    requested_model = models.CharField(max_length=200, blank=True, help_text="The model id the client sent.")
    model = models.CharField(
        max_length=200, blank=True, help_text="The public model id that served it (differs after a fallback)."
    )
    served_model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    stream = models.BooleanField(default=False)

    status_code = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)

    prompt_tokens = models.PositiveIntegerField(
        default=0, help_text="Includes cached and cache-write tokens."
    )
    cached_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0, help_text="Includes reasoning tokens.")
    reasoning_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False, help_text="Counted with tiktoken, not reported.")

    cost_usd = models.DecimalField(
        max_digits=24,
        decimal_places=12,
        null=True,
        blank=True,
        help_text="Null when the price is unknown (see cost_unknown).",
    )
    cost_unknown = models.BooleanField(default=False)
    pricing = models.JSONField(null=True, blank=True, help_text="The USD-per-1M-token prices used.")
    cache_hit = models.BooleanField(
        default=False, help_text="Answered from the response cache: cost 0, tokens are the cached answer's."
    )
    cost_saved_usd = models.DecimalField(
        max_digits=24,
        decimal_places=12,
        null=True,
        blank=True,
        help_text="On a cache hit: what the answer would have cost at the catalogue price.",
    )

    latency_ms = models.FloatField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to the first streamed token.")
    upstream_ms = models.FloatField(default=0, help_text="Time spent waiting on the provider.")
    overhead_ms = models.FloatField(default=0, help_text="Latency minus the provider's share.")

    attempts = models.JSONField(
        null=True, blank=True, help_text="Every attempt, when retried or fallen back."
    )
    fallback_used = models.BooleanField(default=False, help_text="A fallback model rescued the request.")

    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    end_user = models.CharField(max_length=256, blank=True, help_text="The request's `user` field.")
    task_type = models.CharField(max_length=32, blank=True)
    tags = models.JSONField(null=True, blank=True, help_text="From the x-neurometric-tags header.")
    request_body = models.JSONField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)

    # Fingerprints of the request, computed by the log writer (analytics.hashing), for the recommendations;
    # blank when the request had no body to read (or no system prompt, or no long prefix).
    request_hash = models.CharField(
        max_length=64, blank=True, default="", help_text="SHA-256 of the request minus stream and user."
    )
    prefix_hash = models.CharField(
        max_length=64, blank=True, default="", help_text="SHA-256 of a prompt prefix of ≥ 1,024 tokens."
    )
    prefix_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Estimated (chars / 4).")
    system_hash = models.CharField(
        max_length=64, blank=True, default="", help_text="SHA-256 of the system / developer prompt."
    )
    system_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Estimated (chars / 4).")
    routing_rule_id = models.BigIntegerField(
        null=True, blank=True, help_text="The gateway.RoutingRule that sent it to another model."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Per-user time-range queries: the dashboard, the usage and costs APIs, the request list.
            models.Index(fields=["user", "-created_at"], name="requestlog_user_created"),
            # Per-key views and limits.
            models.Index(fields=["api_key", "-created_at"], name="requestlog_key_created"),
            # Identical requests (the response-cache recommendation; a response cache's lookups).
            models.Index(fields=["request_hash"], name="requestlog_request_hash"),
            # Realised savings of an applied recommendation: the rows its routing rules routed.
            models.Index(
                fields=["routing_rule_id", "created_at"],
                name="requestlog_rule_created",
                condition=models.Q(routing_rule_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.requested_model} {self.status_code}"


class RollupFigures(models.Model):
    """What a rollup row counts of its requests (Rollup and LatencyRollup alike)."""

    requests = models.PositiveIntegerField(default=0)
    stream_requests = models.PositiveIntegerField(default=0)
    errors_client = models.PositiveIntegerField(default=0, help_text="4xx other than 429 and 499.")
    errors_rate_limit = models.PositiveIntegerField(default=0, help_text="429.")
    errors_server = models.PositiveIntegerField(default=0, help_text="5xx.")
    errors_cancelled = models.PositiveIntegerField(default=0, help_text="499: the client went away.")
    prompt_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, default=0)
    cost_unknown_requests = models.PositiveIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0)
    latency_sketch = models.JSONField(default=dict)
    ttft_sketch = models.JSONField(default=dict)
    overhead_sketch = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Rollup(RollupFigures):
    """Request-log aggregates per bucket of time and per user × key × model × provider × task type.

    Latency, time to first token and gateway overhead are mergeable sketches (analytics.sketch), so buckets
    combine into any range with their p50 / p95 / p99. A bucket is recomputed whole from the raw rows, so
    rolling it again gives the same rows.
    """

    class Granularity(models.TextChoices):
        MINUTE = "minute"
        HOUR = "hour"
        DAY = "day"

    granularity = models.CharField(max_length=6, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    task_type = models.CharField(max_length=32, blank=True)

    class Meta:
        indexes = [
            # Every read: one user's buckets of one granularity over a time range (dashboard, APIs).
            models.Index(fields=["user", "granularity", "bucket_start"], name="rollup_user_bucket"),
            # Re-rolling a bucket deletes and rewrites its rows.
            models.Index(fields=["granularity", "bucket_start"], name="rollup_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket_start:%Y-%m-%d %H:%M} user {self.user_id} {self.model}"


# LatencyRollup's granularities (minutes have none: a range's minutes are only its edges), and the
# dimensions it keeps of Rollup's grain.
LATENCY_GRANULARITIES = (Rollup.Granularity.HOUR, Rollup.Granularity.DAY)
LATENCY_DIMENSIONS = frozenset({"model", "provider"})


def rollup_model(granularity: str, columns) -> type[Rollup] | type[LatencyRollup]:
    """Where a read of `granularity` buckets that groups or filters by `columns` (Rollup's column names)
    finds its rows: LatencyRollup — a few rows per bucket — when it needs neither keys nor task types,
    else Rollup."""
    if granularity in LATENCY_GRANULARITIES and LATENCY_DIMENSIONS.issuperset(columns):
        return LatencyRollup
    return Rollup


class LatencyRollup(RollupFigures):
    """A bucket's figures per user × model × provider: its Rollup rows (every key and task type) summed
    and their sketches merged, so a page without a key or task-type filter reads a few rows per bucket,
    not one per key × task type. Counts add up and sketches merge exactly, so the figures are the same.
    (Named for what it first held: the latency sketches; it holds every figure since migration 0009.)

    Hour and day buckets only (minutes are read only at a range's edges). Written only by
    analytics.rollups, in the transaction that writes the bucket's Rollup rows, from those rows: the two
    never disagree.
    """

    granularity = models.CharField(max_length=6, choices=Rollup.Granularity.choices)
    bucket_start = models.DateTimeField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=50, blank=True)

    class Meta:
        indexes = [
            # The dashboard's and the performance API's sketch reads: one user's buckets over a range.
            models.Index(fields=["user", "granularity", "bucket_start"], name="latencyrollup_user_bucket"),
            # Re-rolling a bucket for every user (rollup_rebuild) deletes and rewrites its rows.
            models.Index(fields=["granularity", "bucket_start"], name="latencyrollup_bucket"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.granularity} {self.bucket_start:%Y-%m-%d %H:%M} user {self.user_id} "
            f"{self.model} ({self.provider})"
        )


class RollupCursor(models.Model):
    """How far the rollup has read the request log (by row id), so rows that arrive late are folded in."""

    name = models.CharField(max_length=50, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_id}"


class Recommendation(models.Model):
    """A concrete way for one user to spend less, with the savings, the arithmetic and the evidence."""

    class Kind(models.TextChoices):
        CHEAPER_MODEL = "cheaper_model", "Cheaper model for a task"
        NEWER_SNAPSHOT = "newer_snapshot", "Newer, cheaper snapshot"
        RESPONSE_CACHE = "response_cache", "Response cache"
        PROMPT_CACHING = "prompt_caching", "Provider prompt caching"
        OUTPUT_LENGTH = "output_length", "Output length"
        BATCH_API = "batch_api", "Batch API"
        WASTE = "waste", "Errors and retries"
        SYSTEM_PROMPT = "system_prompt", "System prompt size"

    class Status(models.TextChoices):
        NEW = "new"
        DISMISSED = "dismissed"
        APPLIED = "applied"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recommendations"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    fingerprint = models.CharField(
        max_length=64, help_text="Kind and scope, hashed: the same advice is updated."
    )
    title = models.CharField(max_length=200)
    detail = models.TextField(help_text="Plain-language explanation.")
    scope = models.JSONField(default=dict, help_text="model, task_type, api_key_id, system_prompt_hash ...")
    suggested_model = models.CharField(max_length=200, blank=True)
    estimated_monthly_savings_usd = models.DecimalField(max_digits=14, decimal_places=4)
    savings_arithmetic = models.TextField(help_text="How the estimate was computed, step by step.")
    confidence = models.FloatField(help_text="0 to 1.")
    evidence = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)
    realised_savings_usd = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)

    class Meta:
        ordering = ["-estimated_monthly_savings_usd"]
        constraints = [
            models.UniqueConstraint(fields=["user", "fingerprint"], name="recommendation_once_per_scope"),
        ]

    def __str__(self) -> str:
        return self.title


class ShadowEvaluation(models.Model):
    """A replay of a sample of a recommendation's traffic on the suggested model, compared with the
    original answers: the quality check behind a cheaper-model recommendation."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    recommendation = models.ForeignKey(Recommendation, on_delete=models.CASCADE, related_name="evaluations")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    sample_size = models.PositiveIntegerField(default=50)
    budget_usd = models.DecimalField(max_digits=10, decimal_places=4)
    spent_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    method = models.CharField(max_length=32, blank=True, help_text="exact, fieldwise or judge.")
    judge_model = models.CharField(max_length=200, blank=True)
    compared = models.PositiveIntegerField(default=0)
    agreed = models.PositiveIntegerField(default=0)
    agreement = models.FloatField(null=True, blank=True)
    ci_low = models.FloatField(null=True, blank=True, help_text="95 % Wilson interval of the agreement.")
    ci_high = models.FloatField(null=True, blank=True)
    examples = models.JSONField(default=list, help_text="A few side-by-side answers.")
    field_agreement = models.JSONField(
        default=dict, blank=True, help_text="Field-wise comparisons: JSON field → share of answers agreeing."
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.recommendation_id} {self.status}"
