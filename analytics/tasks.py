"""Celery tasks of analytics: thin wrappers that call a service. Their schedule is analytics/schedule.py."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="analytics.rollup_pending", ignore_result=True)
def rollup_pending() -> dict:
    from analytics.rollups import rollup_pending as roll_up

    return roll_up()


@shared_task(name="analytics.prune_raw_logs", ignore_result=True)
def prune_raw_logs(older_than_days: int | None = None) -> int:
    from django.conf import settings

    from analytics.rollups import prune_raw_logs as prune

    return prune(older_than_days=older_than_days or settings.REQUEST_LOG_RETENTION_DAYS)


@shared_task(name="analytics.generate_recommendations", ignore_result=True)
def generate_recommendations(user_id: int | None = None) -> dict:
    """Recommendations for one user, or for every user with traffic in the last 30 days."""
    from analytics.recommendations import generate_for_all, generate_for_user

    if user_id is not None:
        return {"users": 1, "recommendations": len(generate_for_user(user_id=user_id))}
    return generate_for_all()


@shared_task(name="analytics.run_shadow_evaluation", ignore_result=True)
def run_shadow_evaluation(evaluation_id: str) -> str | None:
    from analytics.shadow import shadow_evaluation_run

    evaluation = shadow_evaluation_run(evaluation_id=evaluation_id)
    return evaluation.status if evaluation is not None else None
