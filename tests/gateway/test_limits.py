"""Per-key limits through the Django stack, on both backends: the database (embedded default) and Redis."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
import responses
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from accounts.models import ApiKey, BudgetAlert
from analytics.models import RequestLog
from gateway.durations import format_duration
from tests.conftest import wsgi_call
from tests.gateway.openai_fixtures import UPSTREAM, completion, stream_body
from tests.redis_util import fresh_redis_url

pytestmark = pytest.mark.django_db

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(params=["database", "redis"])
def backend(request):
    url = fresh_redis_url() if request.param == "redis" else ""
    with override_settings(REDIS_URL=url):
        yield request.param


def _limit(owner_key, **policy) -> None:
    ApiKey.objects.filter(pk=owner_key[0].pk).update(**policy)


def _error(response) -> dict:
    return orjson.loads(response.content)["error"]


@pytest.mark.parametrize(
    "seconds, text", [(0.02, "20ms"), (1, "1s"), (59.2, "1m0s"), (360, "6m0s"), (3723, "1h2m3s")]
)
def test_reset_durations_use_openais_format(seconds, text):
    assert format_duration(seconds) == text


@responses.activate
def test_requests_per_minute_refuse_the_request_over_the_limit(api, owner_key, backend):
    responses.post(UPSTREAM, json=completion())
    _limit(owner_key, rpm=3)
    statuses = [api.post("/v1/chat/completions", BODY) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    first, refused = statuses[0], statuses[3]
    assert first["x-ratelimit-limit-requests"] == "3" and first["x-ratelimit-remaining-requests"] == "2"
    assert first["x-ratelimit-reset-requests"].endswith("s")
    error = _error(refused)
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
    assert 1 <= int(refused["retry-after"]) <= 20 and int(refused["retry-after-ms"]) > 0
    assert len(responses.calls) == 3
    assert RequestLog.objects.filter(status_code=429, error_code="rate_limit_exceeded").count() == 1


@responses.activate
def test_tokens_per_minute_reserve_the_prompt_and_settle_with_real_usage(api, owner_key, backend):
    _limit(owner_key, tpm=100)
    responses.post(UPSTREAM, json=completion(prompt=10, completion_tokens=95))
    first = api.post("/v1/chat/completions", BODY)
    assert first.status_code == 200 and first["x-ratelimit-limit-tokens"] == "100"
    second = api.post("/v1/chat/completions", BODY)  # 105 used by the first: the bucket is in debt
    assert second.status_code == 429
    assert (_error(second)["type"], _error(second)["code"]) == ("tokens", "rate_limit_exceeded")


@responses.activate
def test_a_prompt_larger_than_the_token_limit_is_refused_for_good(api, owner_key, backend):
    _limit(owner_key, tpm=5)
    response = api.post(
        "/v1/chat/completions", {**BODY, "messages": [{"role": "user", "content": "word " * 50}]}
    )
    assert response.status_code == 429 and response["x-should-retry"] == "false"
    assert "Request too large" in _error(response)["message"]


@responses.activate
def test_parallel_limit_frees_a_slot_when_a_request_ends(api, owner_key, backend):
    from gateway.limits import get_limiter
    from gateway.policies import Policy

    _limit(owner_key, max_parallel=1)
    responses.post(UPSTREAM, json=completion())
    key_id = str(owner_key[0].pk)
    held = get_limiter().admit(key_id=key_id, policy=Policy(max_parallel=1), request_id="req_held", tokens=0)
    refused = api.post("/v1/chat/completions", BODY)
    assert refused.status_code == 429 and "parallel" in _error(refused)["message"]
    get_limiter().settle(held, used_tokens=0, cost=None)
    assert api.post("/v1/chat/completions", BODY).status_code == 200
    assert api.post("/v1/chat/completions", BODY).status_code == 200  # sequential requests never collide


@responses.activate
def test_spent_budget_gives_insufficient_quota_that_the_sdk_does_not_retry(api, owner, owner_key, backend):
    _limit(owner_key, monthly_budget_usd=Decimal("0.01"))
    responses.post(UPSTREAM, json=completion(prompt=1000, completion_tokens=1000))  # $0.0125 at gpt-4o prices
    assert api.post("/v1/chat/completions", BODY).status_code == 200
    refused = api.post("/v1/chat/completions", BODY)
    assert refused.status_code == 429 and refused["x-should-retry"] == "false"
    assert (_error(refused)["type"], _error(refused)["code"]) == ("insufficient_quota", "insufficient_quota")


@responses.activate
def test_the_budget_counts_what_the_request_log_already_holds_this_month(api, owner, owner_key, backend):
    _limit(owner_key, monthly_budget_usd=Decimal("1.00"))
    RequestLog.objects.create(
        request_id="req_earlier",
        user=owner,
        api_key=owner_key[0],
        status_code=200,
        created_at=timezone.now(),
        cost_usd=Decimal("1.5"),
    )
    responses.post(UPSTREAM, json=completion())
    assert api.post("/v1/chat/completions", BODY).status_code == 429


@responses.activate
def test_budget_alerts_are_emailed_once_per_threshold_and_month(api, owner, owner_key, backend):
    _limit(owner_key, monthly_budget_usd=Decimal("0.02"))
    responses.post(UPSTREAM, json=completion(prompt=1000, completion_tokens=1000))  # $0.0125 each
    for _ in range(3):
        api.post("/v1/chat/completions", BODY)
    thresholds = sorted(BudgetAlert.objects.values_list("threshold", flat=True))
    assert thresholds == [80, 100]
    assert len(mail.outbox) == 2 and all(m.to == [owner.email] for m in mail.outbox)
    assert "80 %" in mail.outbox[0].subject and "whole" in mail.outbox[1].subject


def test_a_model_the_key_may_not_use_gets_403(api, owner_key):
    _limit(owner_key, allowed_models=["gpt-4o-mini", "claude-*"])
    response = api.post("/v1/chat/completions", BODY)
    assert response.status_code == 403
    assert (_error(response)["code"], _error(response)["param"]) == ("model_not_allowed", "model")


@responses.activate
def test_the_key_inherits_its_owners_defaults_unless_it_sets_its_own(api, owner, owner_key):
    owner.rpm, owner.allowed_models = 1, ["gpt-4o"]
    owner.save()
    responses.post(UPSTREAM, json=completion())
    assert api.post("/v1/chat/completions", BODY)["x-ratelimit-limit-requests"] == "1"
    _limit(owner_key, rpm=50)
    assert api.post("/v1/chat/completions", BODY)["x-ratelimit-limit-requests"] == "50"
    assert api.post("/v1/chat/completions", {**BODY, "model": "gpt-4o-mini"}).status_code == 403


def test_an_expired_key_gets_401(api, owner_key):
    _limit(owner_key, expires_at=timezone.now() - timedelta(seconds=1))
    response = api.post("/v1/chat/completions", BODY)
    assert response.status_code == 401 and _error(response)["code"] == "api_key_expired"


@responses.activate
def test_a_key_without_limits_gets_no_rate_limit_headers(api):
    responses.post(UPSTREAM, json=completion())
    response = api.post("/v1/chat/completions", BODY)
    assert response.status_code == 200 and "x-ratelimit-limit-requests" not in response


@responses.activate
def test_limits_fail_open_when_redis_is_down(api, owner_key):
    _limit(owner_key, rpm=1)
    responses.post(UPSTREAM, json=completion())
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        assert [api.post("/v1/chat/completions", BODY).status_code for _ in range(3)] == [200, 200, 200]


@responses.activate
def test_a_key_with_only_a_request_rate_is_not_settled(api, owner_key, backend, monkeypatch):
    """Nothing to give back (no slot, no token debt, no cost to add): no second round trip."""
    from gateway.limits import get_limiter

    limiter = get_limiter()
    settled = []
    original = limiter._settle_send
    monkeypatch.setattr(limiter, "_settle_send", lambda *args: settled.append(args) or original(*args))
    _limit(owner_key, rpm=100)
    responses.post(UPSTREAM, json=completion())
    assert api.post("/v1/chat/completions", BODY).status_code == 200
    assert settled == []
    _limit(owner_key, rpm=100, max_parallel=5)
    assert api.post("/v1/chat/completions", BODY).status_code == 200
    assert len(settled) == 1


def _wsgi_post(app, key: str, body: dict):
    """A request as a WSGI server makes it: the status, and the body iterable it has not closed yet."""
    status, _, iterable = wsgi_call(app, "POST", "/v1/chat/completions", body=orjson.dumps(body), key=key)
    return status, iterable


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@responses.activate
def test_the_parallel_slot_is_back_before_the_answer_ends(owner_key, backend, wsgi_app, stream):
    """The settlement is sent as soon as the usage is known, before the server has written the answer's
    last byte: a client (on any connection, any process) that sends its next request the moment it has
    an answer is never refused by a slot the previous one still holds."""
    USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    _limit(owner_key, max_parallel=1)
    if stream:
        responses.post(UPSTREAM, body=stream_body(["Hi", "!"], usage=USAGE))
    responses.post(UPSTREAM, json=completion())  # the second request's answer (the first's, unstreamed)
    app = wsgi_app
    status, first = _wsgi_post(app, owner_key[1], {**BODY, "stream": stream})
    assert status.startswith("200"), b"".join(first)
    sent = b""
    for chunk in first:  # written to the client, up to the answer's last byte; no further
        sent += chunk
        if not stream or sent.endswith(b"data: [DONE]\n\n"):
            break
    assert sent.endswith(b"data: [DONE]\n\n") if stream else b'"choices"' in sent
    status, second = _wsgi_post(app, owner_key[1], BODY)
    assert status.startswith("200"), b"".join(second)
    second.close()
    first.close()
    assert RequestLog.objects.filter(status_code=200).count() == 2


@responses.activate
def test_a_settlement_survives_redis_forgetting_its_scripts(api, owner_key):
    """The settlement is sent as a bare EVALSHA; after a Redis restart (scripts flushed) it loads the
    script again instead of leaving the slot taken."""
    from gateway.limits import get_limiter

    _limit(owner_key, max_parallel=1)
    responses.post(UPSTREAM, json=completion())
    with override_settings(REDIS_URL=fresh_redis_url()):
        limiter = get_limiter()
        assert api.post("/v1/chat/completions", BODY).status_code == 200
        limiter.redis.script_flush()
        assert [api.post("/v1/chat/completions", BODY).status_code for _ in range(3)] == [200, 200, 200]
        assert limiter.redis.zcard(limiter._keys(str(owner_key[0].pk))[2]) == 0


@responses.activate
def test_limits_hold_after_redis_closed_the_limiters_connections(api, owner_key):
    """Idle connections Redis has closed (a restart, an idle timeout) are reopened: the limit still holds,
    rather than failing open."""
    from gateway.limits import get_limiter

    _limit(owner_key, rpm=2)
    responses.post(UPSTREAM, json=completion())
    with override_settings(REDIS_URL=fresh_redis_url()):
        limiter = get_limiter()
        assert api.post("/v1/chat/completions", BODY).status_code == 200
        limiter.redis.client_kill_filter(_type="normal", skipme=True)
        assert [api.post("/v1/chat/completions", BODY).status_code for _ in range(2)] == [200, 429]


def test_the_budget_month_follows_the_clock_across_a_month_boundary(monkeypatch):
    from datetime import UTC, datetime

    from gateway import limits

    january = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    monkeypatch.setattr(limits, "_month", (0.0, 0.0, ""))
    monkeypatch.setattr(limits.time, "time", lambda: january)
    monkeypatch.setattr(limits, "datetime", _Clock(datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)))
    assert limits.period() == "2026-01"
    monkeypatch.setattr(limits.time, "time", lambda: january + 1)
    monkeypatch.setattr(limits, "datetime", _Clock(datetime(2026, 2, 1, tzinfo=UTC)))
    assert limits.period() == "2026-02"
    assert limits.period(datetime(2025, 12, 3, tzinfo=UTC)) == "2025-12"


class _Clock:
    """A stand-in for `datetime` whose now() is fixed."""

    def __init__(self, now):
        self._now = now

    def now(self, tz=None):
        return self._now


def test_the_limiter_keeps_at_most_a_few_idle_redis_connections():
    """A burst of calls opens as many connections as it needs; afterwards only MAX_IDLE stay open."""
    import redis

    from gateway import redis_scripts

    url = fresh_redis_url()
    calls = redis_scripts.ScriptCalls(redis.Redis.from_url(url))
    script = calls.client.register_script("return ARGV[1]")
    burst = [calls.send(script, [], [i]) for i in range(redis_scripts.MAX_IDLE + 6)]  # all in flight at once
    assert [read() for read in burst] == [str(i).encode() for i in range(redis_scripts.MAX_IDLE + 6)]
    assert len(calls._idle) == redis_scripts.MAX_IDLE
    assert calls.send(script, [], ["again"])() == b"again"
