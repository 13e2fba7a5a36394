"""The analytics Celery tasks and beat schedule: names and entries snapshotted, so a rename fails loudly."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.utils import timezone

from accounts.services import api_key_create, user_get_or_create
from analytics import tasks
from analytics.models import RequestLog, Rollup
from analytics.schedule import BEAT_SCHEDULE
from neurometric.celery import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ada(db):
    user, _ = user_get_or_create(email="ada@example.com")
    return user, api_key_create(user=user, name="ada")[0]


def test_registered_analytics_task_names():
    app.loader.import_default_modules()
    assert sorted(name for name in app.tasks if name.startswith("analytics.")) == [
        "analytics.generate_recommendations",
        "analytics.prune_raw_logs",
        "analytics.rollup_pending",
        "analytics.run_shadow_evaluation",
    ]


def test_beat_schedule_snapshot():
    assert BEAT_SCHEDULE == {
        "analytics-rollup-pending": {
            "task": "analytics.rollup_pending",
            "schedule": 30.0,
            "options": {"queue": "analytics", "expires": 25},
        },
        "analytics-prune-raw-logs": {
            "task": "analytics.prune_raw_logs",
            "schedule": crontab(hour=3, minute=17),
            "options": {"queue": "analytics", "expires": 3600},
        },
        "analytics-generate-recommendations": {
            "task": "analytics.generate_recommendations",
            "schedule": crontab(hour=4, minute=7),
            "options": {"queue": "analytics", "expires": 6 * 3600},
        },
    }
    assert app.conf.beat_schedule == BEAT_SCHEDULE


def test_every_scheduled_task_exists_expires_before_its_next_run_and_uses_the_analytics_queue():
    app.loader.import_default_modules()
    periods = {
        "analytics-rollup-pending": 30,
        "analytics-prune-raw-logs": 24 * 3600,
        "analytics-generate-recommendations": 24 * 3600,
    }
    assert periods.keys() == BEAT_SCHEDULE.keys()
    for name, entry in BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks
        assert entry["options"]["queue"] == "analytics"
        assert 0 < entry["options"]["expires"] < periods[name]


def test_analytics_tasks_are_routed_to_the_analytics_queue():
    router = app.amqp.router
    for name in (
        "analytics.rollup_pending",
        "analytics.prune_raw_logs",
        "analytics.generate_recommendations",
        "analytics.run_shadow_evaluation",
    ):
        assert router.route({}, name)["queue"].name == "analytics"
    assert router.route({}, "accounts.budget_alert_send")["queue"].name == "default"


def test_workers_consume_both_queues():
    worker = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("worker:"))
    assert "--queues default,analytics" in worker
    assert "--queues default,analytics" in (ROOT / "Makefile").read_text()


def test_rollup_task_runs_the_rollups(ada):
    user, key = ada
    RequestLog.objects.create(
        request_id="req_task",
        user=user,
        api_key=key,
        created_at=timezone.now() - timedelta(hours=1),
        model="gpt-4o-mini",
        status_code=200,
    )
    summary = tasks.rollup_pending()
    assert summary["rows"] == 1
    assert Rollup.objects.filter(user=user).count() == 3


def test_prune_task_uses_the_retention_setting(ada):
    user, _ = ada
    now = timezone.now()
    for n, days in enumerate((settings.REQUEST_LOG_RETENTION_DAYS + 1, 1)):
        RequestLog.objects.create(
            request_id=f"req_prune_{n}", user=user, created_at=now - timedelta(days=days), status_code=200
        )
    tasks.rollup_pending()
    assert tasks.prune_raw_logs() == 1
    assert RequestLog.objects.count() == 1
