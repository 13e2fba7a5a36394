"""Infrastructure faults: Redis down — the gateway keeps serving, limits fail open, logs still land.
(PostgreSQL restarted under load: tests/e2e/test_postgres_restart_e2e.py, opt-in.)"""

from __future__ import annotations

import time

import pytest
import requests

from accounts.services import api_key_create, user_get_or_create
from analytics.models import RequestLog
from tests.e2e.conftest import LiveServer, _free_port

pytestmark = pytest.mark.e2e

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def redis_down_server(live_server_proc, fake_provider, tmp_path_factory):
    dead = f"redis://127.0.0.1:{_free_port()}/0"
    server = LiveServer(fake_provider, tmp_path_factory.mktemp("redis-down") / "server.log", REDIS_URL=dead)
    yield server.start()
    server.stop()


def test_with_redis_down_the_gateway_serves_limits_fail_open_and_logs_land(
    redis_down_server, transactional_db
):
    user, _ = user_get_or_create(email="redis-down@example.com")
    api_key, raw = api_key_create(user=user, name="r", rpm=2)
    headers = {"Authorization": f"Bearer {raw}"}
    statuses = [
        requests.post(
            f"{redis_down_server.url}/v1/chat/completions", json=BODY, headers=headers, timeout=30
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [200] * 5  # fail open: an RPM of 2 is not enforced without Redis
    deadline = time.monotonic() + 10
    while RequestLog.objects.filter(api_key=api_key).count() < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert RequestLog.objects.filter(api_key=api_key, status_code=200).count() == 5
    assert "fail open" in redis_down_server.output()
