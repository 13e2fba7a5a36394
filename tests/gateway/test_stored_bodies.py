"""Request and response bodies are kept on the log row only when STORE_REQUEST_BODIES is on."""

from __future__ import annotations

import pytest
import responses
from django.test import override_settings

from analytics.models import RequestLog
from tests.gateway.openai_fixtures import UPSTREAM, completion, stream_body

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


@responses.activate
@override_settings(STORE_REQUEST_BODIES=True)
def test_a_long_streamed_answer_is_kept_whole_and_in_order(api):
    """The relay keeps a stream's text joined 32 pieces at a time (gateway/streaming.py `_Text`): what is
    stored, and counted when the provider reports no usage, is still every piece in order."""
    from gateway.tokens import count_text

    pieces = [f"w{i} " for i in range(100)]
    responses.post(UPSTREAM, body=stream_body(pieces))  # no usage: it is estimated from the text
    response = api.post("/v1/chat/completions", {**BODY, "stream": True})
    b"".join(response.streaming_content)
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert row.response_body == {"content": "".join(pieces)}
    assert row.usage_estimated and row.completion_tokens == count_text("".join(pieces), "gpt-4o")
