"""Every periodic task, in one place (neurometric/celery.py loads it into beat).

Each entry carries an `expires` shorter than its period, so a run still queued when the next one is due
is dropped instead of piling up behind a slow worker, and a named queue, so analytics work never delays
the default queue (budget alerts). Keep this module free of Django imports: the Celery app loads it
before Django is set up.
"""

from __future__ import annotations

from celery.schedules import crontab

QUEUE = "analytics"

BEAT_SCHEDULE = {
    # Fold new (and late) request-log rows into the minute, hour and day rollups.
    "analytics-rollup-pending": {
        "task": "analytics.rollup_pending",
        "schedule": 30.0,
        "options": {"queue": QUEUE, "expires": 25},
    },
    # Delete raw request-log rows past REQUEST_LOG_RETENTION_DAYS; rollups are kept.
    "analytics-prune-raw-logs": {
        "task": "analytics.prune_raw_logs",
        "schedule": crontab(hour=3, minute=17),
        "options": {"queue": QUEUE, "expires": 3600},
    },
    # Study every user's last 30 days of requests and refresh their recommendations (after the prune).
    "analytics-generate-recommendations": {
        "task": "analytics.generate_recommendations",
        "schedule": crontab(hour=4, minute=7),
        "options": {"queue": QUEUE, "expires": 6 * 3600},
    },
}
