"""The Celery worker down: request logs do not wait for it, rollups do.

The server runs as in production, with Redis as the broker (so Celery is not eager) and no worker. Log rows
are written by the web process's own writer thread, so every request has its row at once; the rollup tick
that beat sends waits in Redis, and when a real worker starts it rolls every one of those rows up.
"""

from __future__ import annotations

import re
import sys
import time
from decimal import Decimal

import pytest
import redis
import requests
from celery import Celery
from django.db.models import Sum

from accounts.services import api_key_create, user_get_or_create
from analytics.models import RequestLog, Rollup
from analytics.schedule import BEAT_SCHEDULE, QUEUE
from tests.e2e.conftest import LiveServer, LoggedProcess
from tests.redis_util import fresh_redis_url

pytestmark = pytest.mark.e2e

REQUESTS = 24
TICK = BEAT_SCHEDULE["analytics-rollup-pending"]
TOTALS = ("requests", "errors_server", "prompt_tokens", "completion_tokens", "cost_usd")


@pytest.fixture(scope="module")
def broker_url() -> str:
    return fresh_redis_url()  # skips where no Redis answers (fails in CI)


@pytest.fixture(scope="module")
def queued_server(django_db_setup, fake_provider, broker_url, tmp_path_factory):
    """The production form: REDIS_URL set, so tasks go to the broker and only a worker runs them."""
    server = LiveServer(
        fake_provider, tmp_path_factory.mktemp("worker-down") / "server.log", REDIS_URL=broker_url
    )
    yield server.start()
    server.stop()


class Worker(LoggedProcess):
    """`celery worker` as the Procfile runs it, on the server's environment (the same database and broker)."""

    def start(self) -> Worker:
        self.spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "neurometric",
                "worker",
                "--queues",
                f"default,{QUEUE}",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--hostname",
                f"e2e-worker-down-{time.monotonic_ns()}@%h",
                "--without-gossip",
                "--without-mingle",
            ]
        )
        return self


def _rollup_totals(user, granularity: str) -> dict:
    totals = Rollup.objects.filter(user=user, granularity=granularity).aggregate(
        **{name: Sum(name) for name in TOTALS}
    )
    return {name: value or 0 for name, value in totals.items()}


def test_with_the_worker_down_logs_land_and_are_rolled_up_when_it_returns(
    queued_server, broker_url, transactional_db, tmp_path
):
    user, _ = user_get_or_create(email="worker-down@example.com")
    api_key, raw = api_key_create(user=user, name="worker-down")
    headers = {"Authorization": f"Bearer {raw}"}
    statuses = []
    for i in range(REQUESTS):
        text = "!error 500" if i % 6 == 5 else f"request {i} !words {i + 1}"
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
        response = requests.post(
            f"{queued_server.url}/v1/chat/completions", json=body, headers=headers, timeout=30
        )
        statuses.append(response.status_code)
    assert statuses.count(200) == REQUESTS - REQUESTS // 6

    # Every request has its row although no worker runs: log writing never goes through Celery.
    deadline = time.monotonic() + 10
    while RequestLog.objects.filter(api_key=api_key).count() < REQUESTS and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = RequestLog.objects.filter(api_key=api_key)
    assert rows.count() == REQUESTS
    expected = {
        "requests": REQUESTS,
        "errors_server": REQUESTS // 6,
        **rows.aggregate(**{name: Sum(name) for name in ("prompt_tokens", "completion_tokens", "cost_usd")}),
    }
    assert expected["prompt_tokens"] > 0 and expected["cost_usd"] > Decimal(0)

    # Beat's tick, sent as beat sends it (its queue and expiry), waits in Redis; nothing is rolled up.
    beat = Celery(broker=broker_url)
    beat.send_task(TICK["task"], **TICK["options"])
    beat.close()
    broker = redis.Redis.from_url(broker_url)
    assert broker.llen(QUEUE) == 1
    time.sleep(1)
    assert not Rollup.objects.filter(user=user).exists()
    assert broker.llen(QUEUE) == 1

    worker = Worker(tmp_path / "worker.log", queued_server.env).start()
    try:
        deadline = time.monotonic() + 60
        while _rollup_totals(user, Rollup.Granularity.DAY) != expected and time.monotonic() < deadline:
            assert worker.process.poll() is None, f"the worker exited:\n{worker.output()}"
            time.sleep(0.25)
        for granularity in Rollup.Granularity.values:
            assert _rollup_totals(user, granularity) == expected, (granularity, worker.output())
        assert broker.llen(QUEUE) == 0
        assert re.search(r"Task analytics\.rollup_pending\[[^\]]+\] succeeded", worker.output())
    finally:
        worker.stop()
