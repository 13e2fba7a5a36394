"""Writes on recommendations: apply (routing rules), undo, dismiss, and the realised savings of applied ones.

Applying a cheaper_model or newer_snapshot recommendation creates a `gateway.RoutingRule` on each key of
its scope (the keys its traffic came from): that key's requests for the model (of the task type, if the
scope names one) are then served by the suggested model. gateway.auth loads a key's rules with the key, so
a rule takes effect within API_KEY_CACHE_SECONDS. Undo (or dismissing an applied recommendation)
deactivates the rules; they stay, inactive, as the history of what was routed.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey
from analytics.models import Recommendation, RequestLog
from analytics.recommendations.common import Tokens, cost_at, token_sums
from gateway.catalog import get_catalog
from gateway.models import RoutingRule

APPLICABLE = frozenset({Recommendation.Kind.CHEAPER_MODEL, Recommendation.Kind.NEWER_SNAPSHOT})
_MICRO = Decimal("0.000001")


class RecommendationStateError(Exception):
    """The recommendation cannot do that (a kind that cannot be applied, undo of one not applied, ...)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def _locked(recommendation: Recommendation) -> Recommendation:
    return Recommendation.objects.select_for_update().get(pk=recommendation.pk)


def _deactivate(rec: Recommendation) -> int:
    return rec.routing_rules.filter(is_active=True).update(is_active=False, disabled_at=timezone.now())


@transaction.atomic
def recommendation_apply(*, recommendation: Recommendation) -> Recommendation:
    rec = _locked(recommendation)
    if rec.kind not in APPLICABLE:
        raise RecommendationStateError(
            f"A {rec.kind} recommendation cannot be applied by the gateway: follow its advice in your "
            "application. Only cheaper_model and newer_snapshot recommendations route requests.",
            "recommendation_not_applicable",
        )
    if rec.status == Recommendation.Status.APPLIED:
        return rec
    keys = list(
        ApiKey.objects.filter(
            user_id=rec.user_id, id__in=rec.scope.get("api_key_ids") or (), revoked_at__isnull=True
        )
    )
    if not keys:
        raise RecommendationStateError(
            "None of the API keys this recommendation's traffic came from is active any more.",
            "recommendation_not_applicable",
        )
    from_model, task_type = rec.scope["model"], rec.scope.get("task_type") or ""
    now = timezone.now()
    # One active rule per key, model and task type: a newer decision replaces an older one, and a
    # recommendation left without an active rule is no longer applied.
    replaced = RoutingRule.objects.filter(
        api_key__in=keys, from_model=from_model, task_type=task_type, is_active=True
    )
    superseded = set(replaced.exclude(recommendation=None).values_list("recommendation_id", flat=True))
    replaced.update(is_active=False, disabled_at=now)
    Recommendation.objects.filter(pk__in=superseded, status=Recommendation.Status.APPLIED).exclude(
        routing_rules__is_active=True
    ).update(status=Recommendation.Status.NEW, updated_at=now)
    RoutingRule.objects.bulk_create(
        RoutingRule(
            api_key=key,
            from_model=from_model,
            task_type=task_type,
            to_model=rec.suggested_model,
            recommendation=rec,
            created_at=now,
        )
        for key in keys
    )
    rec.status, rec.applied_at, rec.dismissed_at = Recommendation.Status.APPLIED, now, None
    rec.save(update_fields=["status", "applied_at", "dismissed_at", "updated_at"])
    return rec


@transaction.atomic
def recommendation_undo(*, recommendation: Recommendation) -> Recommendation:
    rec = _locked(recommendation)
    if rec.status != Recommendation.Status.APPLIED:
        raise RecommendationStateError("This recommendation is not applied.", "recommendation_not_applied")
    _deactivate(rec)
    rec.status = Recommendation.Status.NEW
    rec.save(update_fields=["status", "updated_at"])
    return rec


@transaction.atomic
def recommendation_dismiss(*, recommendation: Recommendation) -> Recommendation:
    rec = _locked(recommendation)
    _deactivate(rec)
    rec.status, rec.dismissed_at = Recommendation.Status.DISMISSED, timezone.now()
    rec.save(update_fields=["status", "dismissed_at", "updated_at"])
    return rec


def realised_savings(rec: Recommendation) -> Decimal | None:
    """What the requests its rules routed would have cost on the original model, minus what they cost.

    Read from the raw rows, so it covers the request log's retention (30 days). None when the original
    model has no price any more.
    """
    rules = list(rec.routing_rules.values_list("id", flat=True))
    model = get_catalog().get(rec.scope.get("model") or "")
    if not rules or model is None or not model.has_price:
        return None
    totals = RequestLog.objects.filter(
        user_id=rec.user_id, routing_rule_id__in=rules, cost_unknown=False
    ).aggregate(**token_sums())
    tokens = Tokens.of(totals)
    return (cost_at(model, tokens) - tokens.cost).quantize(_MICRO)


def realised_savings_refresh(*, user_id: int) -> int:
    """Recompute the realised savings of the user's recommendations that have (or had) routing rules."""
    recs = Recommendation.objects.filter(user_id=user_id, routing_rules__isnull=False).distinct()
    for rec in recs:
        rec.realised_savings_usd = realised_savings(rec)
        rec.save(update_fields=["realised_savings_usd"])
    return len(recs)
