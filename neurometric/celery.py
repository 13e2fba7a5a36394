"""The Celery app. Without REDIS_URL, settings make every task run eagerly in-process."""

from __future__ import annotations

import os

from celery import Celery

from analytics.schedule import BEAT_SCHEDULE
from analytics.schedule import QUEUE as ANALYTICS_QUEUE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurometric.settings")

app = Celery("neurometric")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = BEAT_SCHEDULE
# Everything else goes to CELERY_TASK_DEFAULT_QUEUE ("default"); workers consume both (Procfile).
app.conf.task_routes = {"analytics.*": {"queue": ANALYTICS_QUEUE}}
app.autodiscover_tasks()
