"""Limits under concurrency against live servers: with Redis, with the embedded default (the database),
and two server processes sharing one Redis; and what the official SDK does with the 429s."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import openai
import pytest
import requests

from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_revoke, user_get_or_create
from analytics.models import RequestLog
from tests.e2e.conftest import LiveServer
from tests.redis_util import fresh_redis_url

pytestmark = pytest.mark.e2e

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def redis_url():
    return fresh_redis_url()


@pytest.fixture(scope="module")
def redis_servers(live_server_proc, fake_provider, tmp_path_factory, redis_url):
    servers = [
        LiveServer(
            fake_provider, tmp_path_factory.mktemp("redis-a") / "server.log", REDIS_URL=redis_url
        ).start(),
        LiveServer(
            fake_provider, tmp_path_factory.mktemp("redis-b") / "server.log", REDIS_URL=redis_url
        ).start(),
    ]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def database_server(live_server_proc, fake_provider, tmp_path_factory):
    server = LiveServer(fake_provider, tmp_path_factory.mktemp("db") / "server.log", REDIS_URL=None).start()
    yield server
    server.stop()


def _key(**policy) -> str:
    user, _ = user_get_or_create(email="limits@example.com")
    api_key, raw = api_key_create(user=user, name="limits")
    ApiKey.objects.filter(pk=api_key.pk).update(**policy)
    return raw


def _burst(urls: list[str], key: str, count: int) -> list[int]:
    barrier = threading.Barrier(count)

    def one(i: int) -> int:
        barrier.wait()
        response = requests.post(
            f"{urls[i % len(urls)]}/v1/chat/completions",
            json=BODY,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_sixty_concurrent_requests_against_rpm_20_give_exactly_20_with_redis(transactional_db, redis_servers):
    statuses = _burst([redis_servers[0].url], _key(rpm=20), 60)
    assert statuses.count(200) == 20 and statuses.count(429) == 40


def test_sixty_concurrent_requests_against_rpm_20_give_exactly_20_on_the_embedded_default(
    transactional_db, database_server
):
    statuses = _burst([database_server.url], _key(rpm=20), 60)
    assert statuses.count(200) == 20 and statuses.count(429) == 40


def test_two_server_processes_sharing_one_redis_hold_one_limit_together(transactional_db, redis_servers):
    statuses = _burst([s.url for s in redis_servers], _key(rpm=20), 60)
    assert statuses.count(200) == 20


def test_a_busy_key_leased_by_every_process_of_two_servers_still_holds_its_limit(
    transactional_db, redis_servers, redis_url
):
    """An rpm of 600 is wide enough for leases (gateway/limit_leases.py): 16 clients on keep-alive
    connections spread over two servers (four worker processes) make the key busy in each, and the
    processes admit it from leases while it has more than half its requests left. Over the whole run the
    key gets its 600 requests, plus what the bucket refilled meanwhile, never more; fewer only by what
    leases still held at the end (6 requests a process)."""
    import redis

    key = _key(rpm=600)
    leases_key = f"nm:limit:{{{ApiKey.objects.get(prefix=key[:11]).pk}}}:leases"
    urls = [s.url for s in redis_servers]
    client = redis.Redis.from_url(redis_url)
    leased, done = [], threading.Event()

    def watch() -> None:
        while not done.is_set():
            leased.append(client.hlen(leases_key))
            time.sleep(0.005)

    def client_loop(n: int) -> list[int]:
        with requests.Session() as session:
            return [
                session.post(
                    f"{urls[n % 2]}/v1/chat/completions",
                    json=BODY,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                ).status_code
                for _ in range(60)
            ]

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.time()
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = [status for run in pool.map(client_loop, range(16)) for status in run]
    elapsed = time.time() - started
    done.set()
    watcher.join()
    assert set(statuses) == {200, 429}
    assert max(leased) >= 1  # processes held leases
    assert 600 - 4 * 6 <= statuses.count(200) <= 600 + elapsed * 600 / 60


def test_a_budget_is_not_overspent_by_more_than_the_requests_in_flight(transactional_db, redis_servers):
    # Each answer is 2,000 words: 2,000 × $10/M = $0.02 at gpt-4o prices; the budget is $0.05.
    key = _key(monthly_budget_usd=Decimal("0.05"), max_parallel=4)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "!words 2000"}]}
    barrier = threading.Barrier(12)

    def one(_: int) -> int:
        barrier.wait()
        return requests.post(
            f"{redis_servers[0].url}/v1/chat/completions",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
        ).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(one, range(12)))
    # then, sequentially, until the budget refuses
    for _ in range(5):
        statuses.append(
            requests.post(
                f"{redis_servers[0].url}/v1/chat/completions",
                json=body,
                timeout=30,
                headers={"Authorization": f"Bearer {key}"},
            ).status_code
        )
    time.sleep(0.5)
    spent = sum(
        RequestLog.objects.filter(api_key__prefix=key[:11], status_code=200).values_list(
            "cost_usd", flat=True
        )
    )
    assert statuses[-1] == 429 and statuses.count(200) >= 3
    assert spent - Decimal("0.05") <= 4 * Decimal("0.02")  # at most the requests in flight


def test_revocation_and_limit_changes_reach_every_process_within_one_second(transactional_db, redis_servers):
    key = _key()
    urls = [s.url for s in redis_servers]
    headers = {"Authorization": f"Bearer {key}"}
    for url in urls:
        assert requests.post(f"{url}/v1/chat/completions", json=BODY, headers=headers).status_code == 200
    ApiKey.objects.filter(prefix=key[:11]).update(rpm=7)
    time.sleep(1.1)
    for url in urls:
        response = requests.post(f"{url}/v1/chat/completions", json=BODY, headers=headers)
        assert response.headers["x-ratelimit-limit-requests"] == "7"
    api_key_revoke(key_or_prefix=key)
    time.sleep(1.1)
    for url in urls:
        assert requests.post(f"{url}/v1/chat/completions", json=BODY, headers=headers).status_code == 401


def test_sdk_retries_a_rate_limit_as_its_rules_say_then_raises(transactional_db, redis_servers):
    key = _key(max_parallel=1)
    url = redis_servers[0].url
    holder = threading.Thread(
        target=requests.post,
        kwargs={
            "url": f"{url}/v1/chat/completions",
            "timeout": 30,
            "headers": {"Authorization": f"Bearer {key}"},
            "json": {"model": "gpt-4o", "messages": [{"role": "user", "content": "!slow 10000"}]},
        },
    )
    holder.start()
    time.sleep(0.5)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=2)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**BODY)
    elapsed = time.monotonic() - started
    holder.join()
    assert caught.value.code == "rate_limit_exceeded"
    assert elapsed >= 1.5  # two retries, each after retry-after: 1
    time.sleep(0.5)
    refused = RequestLog.objects.filter(api_key__prefix=key[:11], status_code=429).count()
    assert refused == 3


def test_sdk_does_not_retry_a_spent_budget(transactional_db, redis_servers):
    key = _key(monthly_budget_usd=Decimal("0"))
    client = openai.OpenAI(base_url=f"{redis_servers[0].url}/v1", api_key=key, max_retries=2)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**BODY)
    assert caught.value.code == "insufficient_quota"
    time.sleep(0.5)
    assert RequestLog.objects.filter(api_key__prefix=key[:11]).count() == 1
