"""Request and response bodies are kept on the log row only when STORE_REQUEST_BODIES is on."""

from __future__ import annotations

import pytest
import responses
from django.test import override_settings

from analytics.models import RequestLog
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "remember me"}]}


@responses.activate
def test_bodies_are_off_by_default(api):
    responses.post(UPSTREAM, json=completion())
    row = RequestLog.objects.get(request_id=api.post("/v1/chat/completions", BODY)["x-request-id"])
    assert row.request_body is None and row.response_body is None


@responses.activate
@override_settings(STORE_REQUEST_BODIES=True)
def test_bodies_are_stored_when_the_setting_is_on(api):
    responses.post(UPSTREAM, json=completion("stored answer"))
    row = RequestLog.objects.get(request_id=api.post("/v1/chat/completions", BODY)["x-request-id"])
    assert row.request_body["messages"][0]["content"] == "remember me"
    assert row.response_body["choices"][0]["message"]["content"] == "stored answer"
