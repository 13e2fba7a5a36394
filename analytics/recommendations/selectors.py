"""Reads of a user's recommendations, with their latest evaluation and routing rules, in a fixed number of
queries (one for the recommendations, one each for the prefetched evaluations and rules)."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from analytics.models import Recommendation, ShadowEvaluation
from gateway.models import RoutingRule


def _with_relations(rows: QuerySet[Recommendation]) -> QuerySet[Recommendation]:
    return rows.prefetch_related(
        Prefetch("evaluations", queryset=ShadowEvaluation.objects.order_by("-created_at")),
        Prefetch("routing_rules", queryset=RoutingRule.objects.order_by("-created_at", "-id")),
    )


def recommendation_list(*, user_id: int, status: str | None = None) -> list[Recommendation]:
    """The user's recommendations, largest estimated savings first."""
    rows = Recommendation.objects.filter(user_id=user_id)
    if status:
        rows = rows.filter(status=status)
    return list(_with_relations(rows.order_by("-estimated_monthly_savings_usd", "created_at")))


def recommendation_get(*, user_id: int, recommendation_id: str) -> Recommendation | None:
    """One of the user's recommendations; another user's id, like an unknown one, gives None."""
    try:
        pk = uuid.UUID(recommendation_id)
    except ValueError:
        return None
    return _with_relations(Recommendation.objects.filter(user_id=user_id, pk=pk)).first()


def latest_evaluation(rec: Recommendation) -> ShadowEvaluation | None:
    evaluations = list(rec.evaluations.all())  # prefetched, newest first
    return evaluations[0] if evaluations else None
