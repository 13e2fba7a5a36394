"""Shared test helpers: three personas (owner, another user) and an API client that speaks JSON."""

from __future__ import annotations

import io

import orjson
import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.test.client import ClientHandler

from accounts.services import api_key_create, user_get_or_create
from gateway.auth import key_cache
from gateway.catalog import invalidate_catalog
from neurometric.handler import ApiChain, Handler


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


@pytest.fixture
def wsgi_app():
    """The served WSGI application (neurometric/wsgi.py's Handler), keeping the test's database connection
    as the test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield Handler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def wsgi_call(app, method: str, path: str, *, body: bytes = b"", key: str | None = None, **headers: str):
    """A request as a WSGI server makes it: the status line, the headers (names lower-cased) and the body
    iterable, not yet read or closed. `headers`: extra environ entries, e.g. HTTP_ACCEPT="text/html"."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        **headers,
    }
    if key:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    started = []
    iterable = app(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
    status, names = started[0]
    return status, {name.lower(): value for name, value in names}, iterable
