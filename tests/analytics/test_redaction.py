"""Stored bodies are redacted: emails, card numbers (Luhn-valid only) and API keys."""

from __future__ import annotations

import pytest
import responses
from django.test import override_settings

from analytics.models import RequestLog
from analytics.redaction import redact, redact_text
from tests.gateway.openai_fixtures import UPSTREAM, completion


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mail me at jane.doe+x@example.co.uk now", "mail me at [email] now"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [card] exp 12/29"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("order 1234567890123456 shipped", "order 1234567890123456 shipped"),  # fails Luhn: not a card
        ("key nm-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "key [api-key]"),
        (
            "openai sk-proj-abcdefghijklmnopqrstu and anthropic sk-ant-api03-abcdefghijklmnop",
            "openai [api-key] and anthropic [api-key]",
        ),
        ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", "google [api-key]"),
        ("call +1 555 123 4567", "call +1 555 123 4567"),
    ],
)
def test_sensitive_strings_are_replaced(text, expected):
    assert redact_text(text) == expected


def test_redaction_walks_nested_json():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "me@x.io"}]}], "n": 1}
    assert redact(body) == {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "[email]"}]}],
        "n": 1,
    }


@pytest.mark.django_db
@responses.activate
@override_settings(STORE_REQUEST_BODIES=True)
def test_stored_bodies_are_redacted(api):
    responses.post(UPSTREAM, json=completion("Sure, jane@example.com noted"))
    response = api.post(
        "/v1/chat/completions",
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "I am jane@example.com, card 4242 4242 4242 4242"}],
        },
    )
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert row.request_body["messages"][0]["content"] == "I am [email], card [card]"
    assert row.response_body["choices"][0]["message"]["content"] == "Sure, [email] noted"


@pytest.mark.django_db
@responses.activate
def test_a_key_pasted_into_the_model_user_or_tags_is_never_stored(api):
    """Bodies off (the default): the short fields the client fills in are still stored, so keys are
    redacted there too — and only keys: an email is a legitimate `user`."""
    pasted = "nm-" + "k" * 40
    responses.post(UPSTREAM, json=completion("hi"))
    ok = api.post(
        "/v1/chat/completions",
        {"model": "gpt-4o", "user": "jane@example.com", "messages": [{"role": "user", "content": "hi"}]},
        HTTP_X_NEUROMETRIC_TAGS=f"team=search,oops={pasted}",
    )
    unknown = api.post(
        "/v1/chat/completions",
        {"model": pasted, "user": pasted, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert unknown.status_code == 404
    rows = RequestLog.objects.filter(request_id__in=[ok["x-request-id"], unknown["x-request-id"]])
    assert rows.count() == 2
    for row in rows:
        stored = " ".join(
            str(v) for v in (row.requested_model, row.model, row.end_user, row.tags, row.error_message)
        )
        assert pasted not in stored
    unknown_row = rows.get(request_id=unknown["x-request-id"])
    assert unknown_row.requested_model == "[api-key]" and unknown_row.end_user == "[api-key]"
    assert "[api-key]" in unknown_row.error_message
    ok_row = rows.get(request_id=ok["x-request-id"])
    assert ok_row.end_user == "jane@example.com"
    assert "[api-key]" in str(ok_row.tags) and "search" in str(ok_row.tags)
