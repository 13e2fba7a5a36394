"""Shared test helpers: three personas (owner, another user) and an API client that speaks JSON."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client
from django.test.client import ClientHandler

from accounts.services import api_key_create, user_get_or_create
from gateway.auth import key_cache
from gateway.catalog import invalidate_catalog
from neurometric.handler import ApiChain


class _ClientHandler(ApiChain, ClientHandler):
    """Django's test handler, with the served application's middleware chains (API calls skip the page
    middleware)."""


class ApiClient:
    """Django's test client, sending bearer keys and JSON the way the OpenAI SDK does."""

    def __init__(self, key: str | None):
        self.client = Client()
        self.client.handler = _ClientHandler(enforce_csrf_checks=False)
        self.key = key

    def _headers(self, extra: dict | None) -> dict:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {self.key}"} if self.key else {}
        headers.update(extra or {})
        return headers

    def post(self, path: str, body=None, *, raw: bytes | None = None, **extra):
        data = raw if raw is not None else orjson.dumps(body)
        return self.client.post(path, data=data, content_type="application/json", **self._headers(extra))

    def get(self, path: str, **extra):
        return self.client.get(path, **self._headers(extra))


@pytest.fixture(autouse=True)
def _fresh_caches():
    key_cache.clear()
    invalidate_catalog()
    yield


@pytest.fixture
def owner(db):
    user, _ = user_get_or_create(email="owner@example.com")
    return user


@pytest.fixture
def owner_key(owner):
    return api_key_create(user=owner, name="test")


@pytest.fixture
def api(owner_key) -> ApiClient:
    return ApiClient(owner_key[1])


@pytest.fixture
def outsider_api(db) -> ApiClient:
    user, _ = user_get_or_create(email="outsider@example.com")
    return ApiClient(api_key_create(user=user, name="outsider")[1])
