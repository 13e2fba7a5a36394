"""Routing rules: a key's requests for one model (of one task type, if the rule names one) are served by
another model — how an applied recommendation takes effect (analytics.recommendations.services).

The rules come with the principal (gateway.auth loads them with the key, in its cached lookup), so a key
without rules costs nothing here; the request is classified (`analytics.classify`, well under a
millisecond) only when a rule for the requested model names a task type.
"""

from __future__ import annotations

from dataclasses import dataclass

from analytics.classify import classify, normalise_task
from gateway.validation import ChatRequest


@dataclass(frozen=True, slots=True)
class RuleMatch:
    to_model: str
    rule_id: int
    task_type: str  # "" for a rule of every task type


def apply_routing_rules(principal, chat: ChatRequest, *, task_hint: str | None = None) -> RuleMatch | None:
    """The rule that serves this request with another model, or None.

    A rule of the request's task type wins over one for every task type; among equals, the newest (the
    principal's rules are ordered newest first). `task_hint` is the client's x-neurometric-task, which is
    trusted over the classifier, as on the log row.
    """
    rules = [rule for rule in principal.routing_rules if rule[0] == chat.model]
    if not rules:
        return None
    task = None
    if any(task_type for _, task_type, _, _ in rules):
        task = (normalise_task(task_hint) if task_hint else None) or classify(chat.body)
    for wanted in (task, ""):
        for _, task_type, to_model, rule_id in rules:
            if wanted is not None and task_type == wanted and to_model != chat.model:
                return RuleMatch(to_model=to_model, rule_id=rule_id, task_type=task_type)
    return None
