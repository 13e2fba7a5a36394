"""Recommendations: concrete ways for a user to spend less, each with its savings, arithmetic and evidence.

Every rule is a module with a `find(window) -> list[Finding]` and its thresholds as module constants
(`common` describes the window, the monthly scaling and the confidence). `generate_for_user` runs them all
over the user's last 30 days of request-log rows and keeps the Recommendation rows in step:

- a finding is identified by its `fingerprint` (kind and scope, hashed): the same advice updates its row;
- a NEW recommendation is updated with the latest numbers, and deleted once its rule no longer fires;
- a DISMISSED one stays dismissed — unless its estimated monthly savings grew by more than RESURRECT_GROWTH
  (50 %) since it was dismissed, when it comes back as NEW with the new numbers;
- an APPLIED one keeps the estimate it was applied on; its realised savings are refreshed
  (`services.realised_savings_refresh`).

Findings worth less than MIN_MONTHLY_SAVINGS_USD a month are dropped as noise.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction

from accounts.models import User
from analytics import selectors as log_selectors
from analytics.models import Recommendation, RequestLog
from analytics.recommendations import (
    batch_api,
    cheaper_model,
    newer_snapshot,
    output_length,
    prompt_caching,
    response_cache,
    system_prompt,
    waste,
)
from analytics.recommendations.common import WINDOW_DAYS, Finding, Window, fingerprint
from analytics.recommendations.services import realised_savings_refresh

RULES = {
    Recommendation.Kind.CHEAPER_MODEL: cheaper_model,
    Recommendation.Kind.NEWER_SNAPSHOT: newer_snapshot,
    Recommendation.Kind.RESPONSE_CACHE: response_cache,
    Recommendation.Kind.PROMPT_CACHING: prompt_caching,
    Recommendation.Kind.OUTPUT_LENGTH: output_length,
    Recommendation.Kind.BATCH_API: batch_api,
    Recommendation.Kind.WASTE: waste,
    Recommendation.Kind.SYSTEM_PROMPT: system_prompt,
}
MIN_MONTHLY_SAVINGS_USD = Decimal("1.00")
RESURRECT_GROWTH = Decimal(
    "1.5"
)  # a dismissed recommendation returns when its savings grew by more than 50 %

_UPDATED = (
    "kind",
    "title",
    "detail",
    "scope",
    "suggested_model",
    "estimated_monthly_savings_usd",
    "savings_arithmetic",
    "confidence",
    "evidence",
)


def find_all(window: Window) -> list[Finding]:
    """Every rule's findings worth reporting, each fingerprint once."""
    found: dict[str, Finding] = {}
    for rule in RULES.values():
        for finding in rule.find(window):
            if finding.monthly(window) >= MIN_MONTHLY_SAVINGS_USD:
                found.setdefault(fingerprint(finding.kind, finding.scope), finding)
    return list(found.values())


def _values(finding: Finding, window: Window) -> dict:
    return {
        "kind": finding.kind,
        "title": finding.title[:200],
        "detail": finding.detail,
        "scope": finding.scope,
        "suggested_model": finding.suggested_model,
        "estimated_monthly_savings_usd": finding.monthly(window),
        "savings_arithmetic": finding.full_arithmetic(window),
        "confidence": finding.confidence(window),
        "evidence": {**finding.evidence, "window_days": window.days},
    }


def generate_for_user(*, user_id: int, now: datetime | None = None) -> list[Recommendation]:
    """Study the user's traffic and upsert their recommendations; returns the ones whose rule fired."""
    window = Window.ending(user_id=user_id, now=now or log_selectors.now())
    findings = {fingerprint(f.kind, f.scope): f for f in find_all(window)}
    current = []
    with transaction.atomic():
        # One generation per user at a time (the daily task and `run_analytics` may overlap).
        User.objects.select_for_update().filter(pk=user_id).exists()
        existing = {rec.fingerprint: rec for rec in Recommendation.objects.filter(user_id=user_id)}
        for key, finding in findings.items():
            values = _values(finding, window)
            rec = existing.get(key)
            if rec is None:
                rec = Recommendation.objects.create(user_id=user_id, fingerprint=key, **values)
            elif rec.status == Recommendation.Status.NEW:
                _update(rec, values)
            elif rec.status == Recommendation.Status.DISMISSED and (
                values["estimated_monthly_savings_usd"] > rec.estimated_monthly_savings_usd * RESURRECT_GROWTH
            ):
                rec.status, rec.dismissed_at = Recommendation.Status.NEW, None
                _update(rec, values, "status", "dismissed_at")
            current.append(rec)
        stale = [rec.pk for key, rec in existing.items() if key not in findings]
        Recommendation.objects.filter(pk__in=stale, status=Recommendation.Status.NEW).delete()
        realised_savings_refresh(user_id=user_id)
    return current


def _update(rec: Recommendation, values: dict, *extra: str) -> None:
    for name, value in values.items():
        setattr(rec, name, value)
    rec.save(update_fields=[*_UPDATED, *extra, "updated_at"])


def users_with_traffic(now: datetime | None = None) -> list[int]:
    """Users with model requests in the last 30 days, the ones worth studying."""
    since = (now or log_selectors.now()) - timedelta(days=WINDOW_DAYS)
    return list(
        RequestLog.objects.filter(created_at__gte=since, endpoint__in=log_selectors.MODEL_ENDPOINTS)
        .order_by()
        .values_list("user_id", flat=True)
        .distinct()
    )


def generate_for_all(now: datetime | None = None) -> dict[str, int]:
    """`generate_for_user` for every user with traffic; how many users and recommendations."""
    users = users_with_traffic(now)
    recommendations = sum(len(generate_for_user(user_id=user_id, now=now)) for user_id in users)
    return {"users": len(users), "recommendations": recommendations}
