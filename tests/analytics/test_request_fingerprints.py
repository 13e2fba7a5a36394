"""The log writer fingerprints each request: request hash, system prompt and long prefix."""

from __future__ import annotations

import hashlib

import orjson
import pytest
import responses

from analytics.hashing import PREFIX_MIN_TOKENS, request_hash, request_signals
from analytics.models import RequestLog
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db

SYSTEM = {"role": "system", "content": "You label support tickets. " * 200}  # 5,400 characters: 1,350 tokens
ASK = {"role": "user", "content": "My invoice is wrong."}


def _row(api, body: dict, **headers) -> RequestLog:
    return RequestLog.objects.get(
        request_id=api.post("/v1/chat/completions", body, **headers)["x-request-id"]
    )


def test_request_hash_is_the_sorted_body_without_stream_and_user():
    body = {"model": "gpt-4o", "messages": [ASK], "temperature": 0, "stream": True, "user": "u1"}
    expected = hashlib.sha256(
        orjson.dumps({"model": "gpt-4o", "messages": [ASK], "temperature": 0}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    assert request_hash(body) == expected
    assert (
        request_hash({**body, "stream": False, "user": "u2", "stream_options": {"include_usage": True}})
        == expected
    )
    assert request_hash({**body, "temperature": 0.5}) != expected


def test_a_long_system_prompt_is_the_prefix_of_a_single_turn_request():
    signals = request_signals({"model": "gpt-4o", "messages": [SYSTEM, ASK]})
    assert signals["system_tokens"] == len(SYSTEM["content"]) // 4 == 1350
    assert signals["prefix_tokens"] == 1350
    other = request_signals({"model": "gpt-4o", "messages": [SYSTEM, {"role": "user", "content": "Refund?"}]})
    assert other["prefix_hash"] == signals["prefix_hash"] and other["system_hash"] == signals["system_hash"]
    assert other["request_hash"] != signals["request_hash"]


def test_a_shared_first_message_joins_the_prefix_when_more_turns_follow():
    document = {"role": "user", "content": "x" * 4 * PREFIX_MIN_TOKENS}
    turns = [document, {"role": "assistant", "content": "Read it."}, ASK]
    signals = request_signals({"model": "gpt-4o", "messages": turns})
    assert signals["prefix_tokens"] == PREFIX_MIN_TOKENS and "system_hash" not in signals
    assert "prefix_hash" not in request_signals(
        {"model": "gpt-4o", "messages": [document]}
    )  # the question itself


def test_a_short_prompt_has_no_prefix():
    signals = request_signals(
        {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."}, ASK]}
    )
    assert signals["system_tokens"] == 2 and "prefix_hash" not in signals


def test_an_unreadable_body_is_logged_without_fingerprints():
    assert request_signals({"model": "gpt-4o", "messages": [ASK], "x": {1, 2}}) == {}  # a set: not JSON


@responses.activate
def test_the_gateway_row_carries_the_fingerprints(api):
    responses.post(UPSTREAM, json=completion())
    body = {"model": "gpt-4o", "messages": [SYSTEM, ASK], "temperature": 0}
    first, again = _row(api, body), _row(api, {**body, "user": "someone"})
    tagged = _row(
        api, body, HTTP_X_NEUROMETRIC_TASK="classification"
    )  # task named: fingerprinted all the same
    assert first.request_hash == again.request_hash == tagged.request_hash == request_hash(body)
    assert first.system_hash and first.system_tokens == 1350
    assert first.prefix_hash == tagged.prefix_hash and first.prefix_tokens == 1350
    assert tagged.task_type == "classification"
    assert first.routing_rule_id is None
