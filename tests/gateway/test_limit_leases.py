"""Leases (gateway/limit_leases.py): a busy key far from its limits is admitted inside the process, and what
its leased requests use reaches the shared limits exactly. Renewals are driven by the tests (`renew`),
not by the background thread, so that each step is deterministic."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import orjson
import pytest
import responses
from django.core import mail
from django.test import override_settings

from accounts.models import ApiKey, BudgetAlert
from analytics.models import RequestLog
from gateway import limit_leases
from gateway.limits import NANO, RateLimited, RedisLimiter, get_limiter
from gateway.policies import Policy
from tests.gateway.openai_fixtures import UPSTREAM, completion
from tests.redis_util import fresh_redis_url

pytestmark = pytest.mark.django_db

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
WIDE = {"rpm": 1000, "tpm": 1_000_000, "max_parallel": 1000, "monthly_budget_usd": Decimal("100")}


@pytest.fixture
def limiter(monkeypatch):
    """The Redis limiter, without its renewal thread: the tests renew."""
    monkeypatch.setattr(limit_leases.Leases, "_run", lambda leases: None)
    with override_settings(REDIS_URL=fresh_redis_url()):
        yield get_limiter()


@pytest.fixture
def script_calls(limiter, monkeypatch):
    """The limiter's script calls to Redis, as they are sent."""
    calls = []
    send = limiter._scripts.send
    monkeypatch.setattr(limiter._scripts, "send", lambda script, *a: calls.append(script) or send(script, *a))
    return calls


def _limit(owner_key, **policy) -> None:
    ApiKey.objects.filter(pk=owner_key[0].pk).update(**policy)


def _posts(api, count: int) -> list:
    responses_ = [api.post("/v1/chat/completions", BODY) for _ in range(count)]
    assert [r.status_code for r in responses_] == [200] * count
    return responses_


def _renew(limiter) -> None:
    limiter.leases.renew_all()


def _lease_records(limiter, owner_key) -> dict:
    return limiter.redis.hgetall(limiter._keys(str(owner_key[0].pk))[4])


def _go_idle(limiter) -> None:
    """As if the key had not been asked for since IDLE_SECONDS: the next renewal gives everything back."""
    for lease in limiter.leases._leases.values():
        lease.seen -= limit_leases.IDLE_SECONDS


@responses.activate
def test_a_busy_key_far_from_its_limits_is_admitted_from_its_lease_without_redis(
    api, owner_key, limiter, script_calls
):
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, **WIDE)
    _posts(api, limit_leases.MIN_REQUESTS)  # each checked in Redis: the key becomes busy
    assert limiter._admit_script in script_calls
    _renew(limiter)
    slots, hold, _ = _lease_records(limiter, owner_key).popitem()[1].decode().split(":")
    assert (int(slots), int(hold)) == (10, int(Decimal("100") * NANO / 100))  # 1 % of 1000 slots, of $100
    script_calls.clear()
    leased = _posts(api, 8)
    assert script_calls == []  # neither admitted nor settled in Redis
    assert leased[-1]["x-ratelimit-limit-requests"] == "1000"
    assert 970 <= int(leased[-1]["x-ratelimit-remaining-requests"]) <= 1000
    assert RequestLog.objects.filter(status_code=200).count() == limit_leases.MIN_REQUESTS + 8


@responses.activate
def test_what_leased_requests_used_reaches_the_shared_limits_when_the_lease_is_renewed(
    api, owner_key, limiter
):
    responses.post(UPSTREAM, json=completion(prompt=1000, completion_tokens=1000))  # $0.0125 at gpt-4o prices
    _limit(owner_key, **WIDE)
    started = time.time()
    _posts(api, limit_leases.MIN_REQUESTS)
    _renew(limiter)
    _posts(api, 6)  # leased
    _go_idle(limiter)
    _renew(limiter)  # gives the lease back: what it left, and what its requests cost
    keys = limiter._keys(str(owner_key[0].pk))
    spent = int(limiter.redis.get(keys[3]))
    logged = sum(RequestLog.objects.values_list("cost_usd", flat=True))
    assert spent == int(logged * NANO) and logged == Decimal("0.0125") * (limit_leases.MIN_REQUESTS + 6)
    level = float(limiter.redis.hget(keys[0], "level"))
    used = limit_leases.MIN_REQUESTS + 6  # and the bucket refilled at most this much since:
    assert 1000 - used <= level <= 1000 - used + (time.time() - started) * 1000 / 60
    assert _lease_records(limiter, owner_key) == {} and limiter.leases._leases == {}


@pytest.mark.parametrize("used", ["requests", "slots", "budget"])
@responses.activate
def test_no_lease_once_a_key_has_used_half_of_a_limit(api, owner_key, limiter, script_calls, used):
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, **WIDE)
    keys = limiter._keys(str(owner_key[0].pk))
    _posts(api, limit_leases.MIN_REQUESTS)
    if used == "requests":
        limiter.redis.hset(keys[0], mapping={"level": 505, "ts": time.time()})  # 505 - 10 < 500
    elif used == "slots":
        limiter.redis.zadd(keys[2], {f"req-{i}": time.time() + 600 for i in range(495)})  # 495 + 10 > 500
    else:
        limiter.redis.set(keys[3], int(Decimal("49.5") * NANO))  # $49.5 + $1 > $50
    _renew(limiter)
    assert _lease_records(limiter, owner_key) == {}
    script_calls.clear()
    _posts(api, 2)
    assert script_calls.count(limiter._admit_script) == 2  # every request checked in Redis


@responses.activate
def test_narrow_limits_are_never_leased(api, owner_key, limiter, script_calls):
    """An rpm of 100 would give a lease of one request: not worth it, so every request is checked."""
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, rpm=100)
    _posts(api, limit_leases.MIN_REQUESTS + 2)
    _renew(limiter)
    script_calls.clear()
    _posts(api, 3)
    assert script_calls.count(limiter._admit_script) == 3 and limiter.leases._leases == {}


@responses.activate
def test_a_changed_limit_applies_at_once_despite_a_lease(api, owner_key, limiter):
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, **WIDE)
    _posts(api, limit_leases.MIN_REQUESTS)
    _renew(limiter)
    assert _lease_records(limiter, owner_key)
    _limit(owner_key, rpm=3, tpm=None, max_parallel=None, monthly_budget_usd=None)
    statuses = [api.post("/v1/chat/completions", BODY).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


@responses.activate
def test_a_lease_of_a_process_that_died_stops_counting_after_its_hold(api, owner_key, limiter):
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, max_parallel=5)
    records = limiter._keys(str(owner_key[0].pk))[4]
    limiter.redis.hset(records, "live-lease", f"5:0:{time.time() + 60}")
    refused = api.post("/v1/chat/completions", BODY)
    assert refused.status_code == 429 and orjson.loads(refused.content)["error"]["type"] == "requests"
    limiter.redis.hset(records, "live-lease", f"5:0:{time.time() - 1}")  # its hold ran out
    assert api.post("/v1/chat/completions", BODY).status_code == 200
    assert limiter.redis.hgetall(records) == {}


@responses.activate
def test_a_budget_hold_counts_against_the_budget_in_every_process(api, owner_key, limiter):
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, monthly_budget_usd=Decimal("1"))
    _posts(api, 1)
    records = limiter._keys(str(owner_key[0].pk))[4]
    limiter.redis.hset(records, "other-process", f"0:{int(NANO)}:{time.time() + 60}")  # holds the whole $1
    refused = api.post("/v1/chat/completions", BODY)
    assert refused.status_code == 429
    assert orjson.loads(refused.content)["error"]["code"] == "insufficient_quota"


@responses.activate
def test_budget_alerts_come_from_lease_renewals_too(api, owner, owner_key, limiter):
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, rpm=1000, monthly_budget_usd=Decimal("1"))
    _posts(api, limit_leases.MIN_REQUESTS)  # cheap, checked in Redis
    limiter.redis.set(limiter._keys(str(owner_key[0].pk))[3], int(Decimal("0.30") * NANO))
    _renew(limiter)
    assert _lease_records(limiter, owner_key)
    # $0.55 at gpt-4o prices: a leased request that takes the spend from $0.30 past 80 % of $1
    responses.replace(responses.POST, UPSTREAM, json=completion(prompt=100_000, completion_tokens=30_000))
    _posts(api, 1)  # its cost is reported by the next renewal
    assert BudgetAlert.objects.count() == 0
    _renew(limiter)
    assert list(BudgetAlert.objects.values_list("threshold", flat=True)) == [80]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [owner.email]


@responses.activate
def test_no_leases_when_they_are_turned_off(api, owner_key):
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, **WIDE)
    with override_settings(LIMIT_LEASES=False, REDIS_URL=fresh_redis_url()):
        limiter = get_limiter()
        assert limiter.leases is None
        _posts(api, limit_leases.MIN_REQUESTS + 3)
        assert limiter.redis.keys("*:leases") == []


def test_processes_with_leases_never_admit_more_than_the_limit(monkeypatch):
    """Two limiters (two processes' worth) on one Redis, their renewal threads running every 10 ms, 8
    threads each admitting as fast as they can against an rpm of 3,000: never more than 3,000 (plus what
    the bucket refilled meanwhile); at most the two leases' shares fewer (held at the end)."""
    monkeypatch.setattr(limit_leases, "SYNC_SECONDS", 0.01)
    url = fresh_redis_url()
    with override_settings(REDIS_URL=url):
        processes = [RedisLimiter(url), RedisLimiter(url)]
    policy = Policy(rpm=3000)
    admitted = []

    def admit(limiter: RedisLimiter, n: int) -> None:
        for i in range(600):
            try:
                admission = limiter.admit(key_id="k", policy=policy, request_id=f"{n}-{i}", tokens=0)
            except RateLimited:
                continue
            admitted.append(admission)
            limiter.settle(admission, used_tokens=0, cost=None)

    started = time.time()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(admit, processes * 4, range(8)))
    elapsed = time.time() - started
    assert any(admission.lease is not None for admission in admitted)  # leases were used
    assert 3000 - 2 * 30 <= len(admitted) <= 3000 + elapsed * 3000 / 60


def test_a_renewal_thread_that_dies_is_replaced_by_the_next_busy_key(monkeypatch):
    """Whatever ends the renewal thread (even an exception that is not an Exception), the next busy key
    starts another: leases are never left without renewals."""
    import threading as threads

    class Stop(BaseException):
        pass

    calls = []
    renewed = threads.Event()

    def renew(lease, *returned):
        calls.append(returned)
        renewed.set()
        if len(calls) == 1:
            raise Stop  # the first thread dies here
        return (1, "100", "0", "-1")

    monkeypatch.setattr(threads, "excepthook", lambda args: None)  # Stop's traceback, expected
    leases = limit_leases.Leases(renew, alert=lambda *args: None)
    policy = Policy(rpm=1000)
    for _ in range(limit_leases.MIN_REQUESTS):
        leases.asked("k", policy, -1)
    assert renewed.wait(5)
    deadline = time.monotonic() + 5
    while leases._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert leases._thread is None  # it died, and said so
    renewed.clear()
    for _ in range(limit_leases.MIN_REQUESTS):
        leases.asked("k", policy, -1)
    assert renewed.wait(5) and len(calls) == 2
    deadline = time.monotonic() + 5
    while leases.take("k", policy, 0) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert leases.take("k", policy, 0) is not None  # granted by the second thread
