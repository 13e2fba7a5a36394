"""The recommendation cards and their buttons.

The rules and the actions belong to analytics: apply, undo and dismiss are
`analytics.recommendations.services`, a shadow evaluation is `analytics.shadow.shadow_evaluation_create`.
This module shapes a Recommendation for its card and maps each button (a POST form) to its service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from analytics.models import Recommendation, ShadowEvaluation
from analytics.recommendations.services import (
    APPLICABLE,
    RecommendationStateError,
    recommendation_apply,
    recommendation_dismiss,
    recommendation_undo,
)
from analytics.shadow import ShadowError, shadow_evaluation_create

# action → (service, what the user is told afterwards)
ACTIONS: dict[str, tuple[Callable, str]] = {
    "apply": (recommendation_apply, "Applied: {title}. Matching requests now use the suggested model."),
    "undo": (recommendation_undo, "Undone: {title}. Requests go to the original model again."),
    "dismiss": (recommendation_dismiss, "Dismissed: {title}."),
    "evaluate": (shadow_evaluation_create, "Shadow evaluation queued for: {title}."),
}


class ActionRefused(Exception):
    """The service refused (a kind it cannot apply, nothing to replay ...); the message says why."""


def perform(action: str, *, recommendation: Recommendation) -> str:
    """Call the service for `action` and return the message for the user."""
    service, done = ACTIONS[action]
    try:
        service(recommendation=recommendation)
    except (RecommendationStateError, ShadowError) as exc:
        raise ActionRefused(str(exc) or "That action could not be done.") from exc
    return done.format(title=recommendation.title)


# --- the card -------------------------------------------------------------------------------------------


@dataclass
class Card:
    item: Recommendation
    evaluation: ShadowEvaluation | None
    arithmetic: list[str]
    evidence: list[tuple[str, str]]
    examples: list

    @property
    def confidence_percent(self) -> int:
        return round((self.item.confidence or 0) * 100)

    can_apply: bool = (
        False  # the gateway applies it by routing to the suggested model, which can be evaluated
    )

    @property
    def can_evaluate(self) -> bool:
        return self.can_apply and bool(self.item.suggested_model)


def card(item: Recommendation) -> Card:
    evaluations = sorted(item.evaluations.all(), key=lambda e: e.created_at, reverse=True)  # prefetched
    evidence = item.evidence if isinstance(item.evidence, dict) else {}
    examples = evidence.get("examples") if isinstance(evidence.get("examples"), list) else []
    return Card(
        item=item,
        evaluation=evaluations[0] if evaluations else None,
        arithmetic=[line for line in (item.savings_arithmetic or "").splitlines() if line.strip()],
        evidence=[(_label(k), _value(v)) for k, v in evidence.items() if k != "examples" and _plain(v)],
        examples=examples[:3],
        can_apply=item.kind in APPLICABLE and item.status == Recommendation.Status.NEW,
    )


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _plain(value) -> bool:
    return isinstance(value, str | int | float | Decimal | bool) or value is None


def _value(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
