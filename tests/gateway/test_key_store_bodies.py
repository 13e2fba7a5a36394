"""A key with `store_bodies` keeps its own request and response bodies on the log (what a shadow evaluation
replays), while STORE_REQUEST_BODIES stays off for every other key."""

from __future__ import annotations

import pytest
import responses

from accounts.services import api_key_create
from analytics.models import RequestLog
from tests.conftest import ApiClient
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "write to ada@example.com"}]}


@responses.activate
def test_only_the_key_that_stores_bodies_keeps_them(api, owner, owner_key):
    responses.post(UPSTREAM, json=completion("done"))
    storing, raw = api_key_create(user=owner, name="storing")
    storing.store_bodies = True
    storing.save(update_fields=["store_bodies"])

    kept = ApiClient(raw).post("/v1/chat/completions", BODY)
    plain = api.post("/v1/chat/completions", BODY)

    row = RequestLog.objects.get(request_id=kept["x-request-id"])
    assert row.request_body["messages"][0]["content"] == "write to [email]"  # redacted as ever
    assert row.response_body["choices"][0]["message"]["content"] == "done"
    other = RequestLog.objects.get(request_id=plain["x-request-id"])
    assert other.request_body is None and other.response_body is None
