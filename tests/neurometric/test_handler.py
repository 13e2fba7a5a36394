"""The served application's two middleware chains (neurometric/handler.py): API calls skip the page
middleware, pages keep all of it. Driven the way gunicorn drives it: a WSGI environ in, status and
headers out."""

from __future__ import annotations

import orjson
import pytest
from django.test import override_settings

from neurometric.handler import Handler
from tests.conftest import wsgi_call


@pytest.fixture
def app(db, wsgi_app):
    return wsgi_app


def _call(app, method: str, path: str, *, key: str | None = None, body: bytes = b"", accept: str = ""):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    status, headers, iterable = wsgi_call(app, method, path, body=body, key=key, **headers)
    try:
        data = b"".join(iterable)
    finally:
        iterable.close()
    return int(status.split()[0]), headers, data


def test_an_api_call_skips_the_page_middleware(app, owner_key):
    status, headers, data = _call(app, "GET", "/v1/models", key=owner_key[1])
    assert status == 200
    assert orjson.loads(data)["object"] == "list"
    assert headers["content-length"] == str(len(data))  # set by ApiEdgeMiddleware, not CommonMiddleware
    assert headers["x-request-id"].startswith("req_")
    assert headers["x-content-type-options"] == "nosniff"  # SecurityMiddleware is in API_MIDDLEWARE
    assert "x-frame-options" not in headers  # XFrameOptionsMiddleware is not
    assert "set-cookie" not in headers
    assert "vary" not in headers  # nor the session and CSRF middleware, which vary on Cookie


def test_api_errors_keep_the_envelope_and_a_length(app, owner_key):
    status, headers, data = _call(app, "GET", "/v1/no-such-route", key=owner_key[1])
    assert status == 404
    assert orjson.loads(data)["error"]["code"] == "not_found"
    assert headers["content-length"] == str(len(data))
    status, headers, data = _call(app, "POST", "/v1/chat/completions", key=owner_key[1], body=b"{not json")
    assert status == 400
    assert orjson.loads(data)["error"]["code"] == "invalid_json"
    assert headers["content-length"] == str(len(data))
    status, _, data = _call(app, "GET", "/v1/models", key="nm-wrong")
    assert status == 401
    assert orjson.loads(data)["error"]["code"] == "invalid_api_key"


def test_a_page_keeps_the_page_middleware(app):
    status, headers, data = _call(app, "GET", "/login/")
    assert status == 200
    assert b"csrfmiddlewaretoken" in data
    assert headers["x-frame-options"] == "DENY"
    assert "csrftoken" in headers["set-cookie"]
    assert headers["x-content-type-options"] == "nosniff"


def test_api_middleware_must_come_from_middleware(settings):
    with override_settings(API_MIDDLEWARE=["django.middleware.gzip.GZipMiddleware"]):
        with pytest.raises(ValueError, match="GZipMiddleware"):
            Handler().load_middleware()


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "*/*", "application/json"])
def test_the_api_answers_json_whatever_accept_says(app, owner_key, accept):
    """As OpenAI's API does: no 406 for a client that sends a browser's or a library's Accept header."""
    status, headers, data = _call(app, "GET", "/v1/models", key=owner_key[1], accept=accept)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert orjson.loads(data)["object"] == "list"
