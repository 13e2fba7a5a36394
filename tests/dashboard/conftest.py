"""Dashboard test helpers: two users with passwords (the owner and an outsider), logged-in clients, and a
small, known day of traffic (rolled up the way the rollup job would) pinned to the analytics clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from analytics.models import Recommendation, RequestLog
from tests.analytics.factories import CLAUDE, NOW, log_row, pin_clock
from tests.dashboard.factories import rolled_up

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()  # log-in throttling counters
    yield
    cache.clear()


@pytest.fixture
def user(db) -> User:
    return User.objects.create_user(email="alice@example.com", password=PASSWORD)


@pytest.fixture
def other(db) -> User:
    return User.objects.create_user(email="mallory@example.com", password=PASSWORD)


@pytest.fixture
def client_for():
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def web(user, client_for) -> Client:
    """The owner, logged in."""
    return client_for(user)


@pytest.fixture
def outsider_web(other, client_for) -> Client:
    return client_for(other)


@dataclass
class Traffic:
    key: ApiKey
    rows: list[RequestLog]
    current: list[RequestLog]  # the last 24 hours
    previous: list[RequestLog]  # the 24 hours before them


def make_traffic(user: User, monkeypatch, *, name: str = "production") -> Traffic:
    """A known mix: gpt-4o chat and classification, a streamed claude summary, errors of each class, one
    request in the raw window (the last minutes), and a quieter previous day."""
    pin_clock(monkeypatch)
    key, _ = api_key_create(user=user, name=name)
    hour = timedelta(hours=1)
    current = [
        log_row(user, key, at=NOW - 3 * hour, task_type="chat", latency_ms=800, prompt=1200, completion=300),
        log_row(
            user, key, at=NOW - 3 * hour, task_type="classification", latency_ms=300, prompt=400, completion=2
        ),
        log_row(
            user, key, at=NOW - 2 * hour, task_type="classification", latency_ms=350, prompt=380, completion=1
        ),
        log_row(
            user,
            key,
            at=NOW - 5 * hour,
            model="claude-3-5-sonnet",
            provider="anthropic",
            pricing=CLAUDE,
            task_type="summarization",
            stream=True,
            ttft_ms=420,
            latency_ms=2400,
            prompt=5000,
            completion=400,
        ),
        log_row(user, key, at=NOW - 4 * hour, status=500, prompt=0, completion=0, error_type="api_error"),
        log_row(user, key, at=NOW - 4 * hour, status=429, prompt=0, completion=0),
        log_row(user, key, at=NOW - 6 * hour, status=499, stream=True, ttft_ms=380, completion=40),
        log_row(user, key, at=NOW - 7 * hour, status=400, prompt=0, completion=0),
        # in the raw window: read from the raw row, not a rollup
        log_row(user, key, at=NOW - timedelta(minutes=3), task_type="chat", latency_ms=900, completion=250),
    ]
    previous = [
        log_row(user, key, at=NOW - 30 * hour, task_type="chat", latency_ms=700),
        log_row(user, key, at=NOW - 31 * hour, task_type="chat", latency_ms=650),
    ]
    rows = current + previous
    rolled_up([row for row in rows if row.created_at < NOW - timedelta(minutes=10)])
    return Traffic(key=key, rows=rows, current=current, previous=previous)


@pytest.fixture
def traffic(user, monkeypatch) -> Traffic:
    return make_traffic(user, monkeypatch)


@pytest.fixture
def other_traffic(other, monkeypatch) -> Traffic:
    return make_traffic(other, monkeypatch, name="mallory-secret-key")


def recommendation_for(user: User, **fields) -> Recommendation:
    values = {
        "kind": Recommendation.Kind.CHEAPER_MODEL,
        "fingerprint": f"fp-{user.id}-{fields.get('title', 'x')}",
        "title": "Use gpt-4o-mini for classification",
        "detail": "Your classification requests get one-word answers from gpt-4o.",
        "scope": {"model": "gpt-4o", "task_type": "classification", "api_key_ids": []},
        "suggested_model": "gpt-4o-mini",
        "estimated_monthly_savings_usd": "123.4500",
        "savings_arithmetic": "1,000 requests × $0.002 paid\n1,000 requests × $0.0001 on gpt-4o-mini",
        "confidence": 0.8,
        "evidence": {"requests": 1000, "p95_completion_tokens": 3, "examples": ["req_1", "req_2"]},
    }
    values.update(fields)
    return Recommendation.objects.create(user=user, **values)
