"""A finished request is freed by reference counting the moment it ends, not left to the cyclic collector.

Memory under load depends on it: a gevent worker holding 500 streams runs a full collection rarely, so every
request left in a reference cycle (its WSGI request, body, Call, response) stayed in memory until then —
~770 finished requests, 60 MB, in one worker. Each case below makes a request through the served
application with the collector off and checks that collecting finds nothing that request left behind.

The gateway's operations only: the analytics API's DRF serializers are cyclic by design (each field refers
to its parent), which at a dashboard's request rate the collector handles."""

from __future__ import annotations

import gc
import io
from collections import Counter

import orjson
import pytest
import responses
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import ApiKey
from gateway.metering import Call
from gateway.usage import Usage
from gateway.validation import ChatRequest
from tests.conftest import wsgi_call
from tests.gateway.openai_fixtures import UPSTREAM, completion, stream_body

pytestmark = pytest.mark.django_db

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}

CASES = {
    "plain": ("POST", "/v1/chat/completions", BODY),
    "stream": ("POST", "/v1/chat/completions", {**BODY, "stream": True}),
    "invalid": ("POST", "/v1/chat/completions", {"model": "gpt-4o"}),
    "unknown model": ("POST", "/v1/chat/completions", {**BODY, "model": "no-such-model"}),
    "rate limited": ("POST", "/v1/chat/completions", BODY),
    "upstream error": ("POST", "/v1/chat/completions", BODY),
    "models": ("GET", "/v1/models", None),
    "bad key": ("POST", "/v1/chat/completions", BODY),
}


# What a request is made of. Only these are looked for: objects of other threads (a limiter's renewal
# thread ending, a connection pool closed) may turn to garbage while the request runs.
REQUEST_PARTS = (WSGIRequest, Request, APIView, HttpResponseBase, Call, ChatRequest, Usage, io.BytesIO)


def _garbage_of(request) -> Counter:
    """What the cyclic collector finds of a request after `request()` ran with it off, by type."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        request()
        gc.collect()
        return Counter(type(o).__qualname__ for o in gc.garbage if isinstance(o, REQUEST_PARTS))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize("case", CASES)
@responses.activate
def test_a_finished_request_leaves_nothing_for_the_cyclic_collector(owner_key, wsgi_app, case):
    method, path, body = CASES[case]
    if case == "stream":
        responses.post(UPSTREAM, body=stream_body(["Hi", "!"], usage=USAGE))
    elif case == "upstream error":
        error = {"error": {"message": "bad", "type": "invalid_request_error"}}
        responses.post(UPSTREAM, status=400, json=error)
    else:
        responses.post(UPSTREAM, json=completion())
    if case == "rate limited":
        ApiKey.objects.filter(pk=owner_key[0].pk).update(rpm=1)
    key = "nm-not-a-key" if case == "bad key" else owner_key[1]

    def request() -> str:
        data = orjson.dumps(body) if body is not None else b""
        status, _, iterable = wsgi_call(wsgi_app, method, path, body=data, key=key)
        b"".join(iterable)
        iterable.close()
        return status

    request()  # warm: caches, lazily built objects
    statuses = []
    garbage = _garbage_of(lambda: statuses.append(request()))
    expected = {"plain": "200", "stream": "200", "models": "200", "invalid": "400", "unknown model": "404"}
    expected.update({"rate limited": "429", "upstream error": "400", "bad key": "401"})
    assert statuses[0].startswith(expected[case])
    assert not garbage, garbage.most_common(40)
