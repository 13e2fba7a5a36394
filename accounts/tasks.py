"""Celery tasks of accounts: thin wrappers that take ids and call a service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="accounts.budget_alert_send", expires=3600, ignore_result=True)
def budget_alert_send(key_id: str, period: str, threshold: int) -> None:
    from accounts.services import budget_alert_send as send

    send(key_id=key_id, period=period, threshold=threshold)
