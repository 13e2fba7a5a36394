"""When the database cannot be reached, keys seen lately keep working; others get a retryable 503."""

from __future__ import annotations

import orjson
import pytest
from django.db import OperationalError

from gateway import auth

pytestmark = pytest.mark.django_db


def _broken(digest):
    raise OperationalError("connection refused")


def test_a_recently_seen_key_is_served_from_the_cache_while_the_database_is_down(owner_key, monkeypatch):
    cache = auth.KeyCache(ttl=0.0)
    principal = cache.lookup(owner_key[1])
    monkeypatch.setattr(auth, "_load", _broken)
    assert cache.lookup(owner_key[1]) == principal


def test_an_unknown_key_while_the_database_is_down_gets_a_retryable_503(api, monkeypatch):
    monkeypatch.setattr(auth, "_load", _broken)
    response = api.get("/v1/models")
    assert response.status_code == 503 and response["retry-after"] == "1"
    assert orjson.loads(response.content)["error"]["code"] == "service_unavailable"
