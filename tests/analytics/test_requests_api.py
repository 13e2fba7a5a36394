"""GET /v1/requests and /v1/requests/{request_id}: the caller's request log, newest first."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
import responses
from django.utils import timezone

from accounts.services import api_key_create
from tests.analytics.factories import log_row, stored, ts
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db


def listing(api, **params) -> dict:
    response = api.get(f"/v1/requests?{urlencode(params)}")
    assert response.status_code == 200, response.content
    return response.json()


def ids(page: dict) -> list[str]:
    return [item["id"] for item in page["data"]]


@pytest.fixture
def history(owner, owner_key):
    """Six requests a minute apart, newest last, with various models, statuses, keys and tasks."""
    now = timezone.now()
    second_key, _ = api_key_create(user=owner, name="second")
    specs = [
        {"status": 200},
        {"status": 429, "error_type": "requests", "error_code": "rate_limit_exceeded"},
        {"status": 200, "model": "claude-3-5-sonnet", "provider": "anthropic", "task_type": "summarization"},
        {
            "status": 502,
            "error_type": "server_error",
            "error_code": "upstream_error",
            "error_message": "boom",
        },
        {"status": 200, "api_key": second_key},
        {"status": 503, "model": "claude-3-5-sonnet", "provider": "anthropic"},
    ]
    rows = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        key = spec.pop("api_key", owner_key[0])
        rows.append(log_row(owner, key, at=now - timedelta(minutes=len(specs) - i), **spec))
    return rows, second_key


def test_the_list_is_newest_first_in_openai_list_shape(api, history):
    rows, _ = history

    page = listing(api)

    assert set(page) == {"object", "data", "has_more", "next_cursor"}
    assert page["object"] == "list"
    assert ids(page) == [row.request_id for row in reversed(rows)]
    assert page["has_more"] is False and page["next_cursor"] is None


def test_pages_follow_the_cursor_without_gaps_or_repeats(api, history):
    rows, _ = history
    seen, params = [], {"limit": 4}
    pages = 0
    while True:
        page = listing(api, **params)
        pages += 1
        seen += ids(page)
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        params["after"] = page["next_cursor"]

    assert pages == 2
    assert seen == [row.request_id for row in reversed(rows)]


def test_rows_with_the_same_timestamp_page_in_id_order(api, owner, owner_key):
    moment = timezone.now() - timedelta(seconds=5)
    rows = [log_row(owner, owner_key[0], at=moment) for _ in range(5)]

    first = listing(api, limit=2)
    second = listing(api, limit=2, after=first["next_cursor"])
    third = listing(api, limit=2, after=second["next_cursor"])

    assert ids(first) + ids(second) + ids(third) == [row.request_id for row in reversed(rows)]
    assert third["has_more"] is False


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"model": "claude-3-5-sonnet"}, [5, 2]),
        ({"provider": "anthropic"}, [5, 2]),
        ({"task_type": "summarization"}, [2]),
        ({"status": "200"}, [4, 2, 0]),
        ({"status": "429"}, [1]),
        ({"status": "5xx"}, [5, 3]),
        ({"status": "4xx"}, [1]),
        ({"model": "claude-3-5-sonnet", "status": "5xx"}, [5]),
    ],
)
def test_filters_narrow_the_list(api, history, filters, expected):
    rows, _ = history

    assert ids(listing(api, **filters)) == [rows[i].request_id for i in expected]


def test_filters_by_key_and_time_range(api, history):
    rows, second_key = history

    assert ids(listing(api, api_key_id=str(second_key.id))) == [rows[4].request_id]
    start, end = ts(rows[1].created_at), ts(rows[3].created_at)
    assert ids(listing(api, start_time=start, end_time=end)) == [rows[2].request_id, rows[1].request_id]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=abc", "status"),
        ("status=6xx", "status"),
        ("api_key_id=not-a-uuid", "api_key_id"),
        ("start_time=soon", "start_time"),
        ("after=%%%", "after"),
        ("after=bm90LWEtY3Vyc29y", "after"),
    ],
)
def test_invalid_parameters_are_400_naming_the_param(api, query, param):
    response = api.get(f"/v1/requests?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_one_request_has_the_full_shape(api, owner, owner_key):
    row = log_row(
        owner,
        owner_key[0],
        at=timezone.now() - timedelta(seconds=2),
        prompt=1000,
        cached=200,
        completion=300,
        reasoning_tokens=120,
        ttft_ms=180.5,
        stream=True,
        finish_reason="stop",
        tags=["checkout"],
        end_user="user-42",
        attempts=[{"model": "gpt-4o", "provider": "openai", "status": 503, "error_code": None, "ms": 10.0}],
        fallback_used=True,
    )

    response = api.get(f"/v1/requests/{row.request_id}")

    assert response.status_code == 200
    body = response.json()
    [row] = stored([row])
    assert body == {
        "object": "request",
        "id": row.request_id,
        "created": ts(row.created_at),
        "endpoint": "chat.completions",
        "api_key_id": str(owner_key[0].id),
        "model": "gpt-4o",
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o-2024-08-06",
        "provider": "openai",
        "status": 200,
        "error": None,
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 300,
            "total_tokens": 1300,
            "cached_tokens": 200,
            "cache_write_tokens": 0,
            "reasoning_tokens": 120,
            "estimated": False,
        },
        "cost_usd": "0.005250000000",
        "cost_unknown": False,
        "latency_ms": 250.0,
        "ttft_ms": 180.5,
        "overhead_ms": 4.0,
        "attempts": row.attempts,
        "fallback_used": True,
        "task_type": "chat",
        "tags": ["checkout"],
        "end_user": "user-42",
        "stream": True,
        "finish_reason": "stop",
        "cache_hit": False,
        "cost_saved_usd": None,
        "routing_rule_id": None,
    }


def test_a_failed_request_carries_its_error_and_an_unknown_cost_is_null(api, owner, owner_key):
    row = log_row(
        owner,
        owner_key[0],
        at=timezone.now(),
        status=502,
        error_type="server_error",
        error_code="upstream_error",
        error_message="The provider failed.",
        pricing=None,
    )

    body = api.get(f"/v1/requests/{row.request_id}").json()

    assert body["error"] == {
        "type": "server_error",
        "code": "upstream_error",
        "message": "The provider failed.",
    }
    assert body["cost_usd"] is None and body["cost_unknown"] is True


@responses.activate
def test_a_chat_completion_is_listed_and_found_by_its_request_id_at_once(api):
    responses.post(UPSTREAM, json=completion(prompt=12, completion_tokens=3))
    reply = api.post(
        "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    )
    request_id = reply["x-request-id"]

    assert ids(listing(api)) == [request_id]
    detail = api.get(f"/v1/requests/{request_id}").json()
    assert detail["usage"]["total_tokens"] == 15
    assert detail["status"] == 200


def test_the_analytics_calls_themselves_are_not_listed_but_can_be_looked_up(api):
    models = api.get("/v1/models")
    listing(api)

    assert ids(listing(api)) == []
    assert api.get(f"/v1/requests/{models['x-request-id']}").json()["endpoint"] == "models.list"


# --- privacy --------------------------------------------------------------------------------------------


def test_another_users_request_is_404_like_an_unknown_one(api, outsider_api, owner, owner_key):
    row = log_row(owner, owner_key[0], at=timezone.now())

    theirs = outsider_api.get(f"/v1/requests/{row.request_id}")
    unknown = outsider_api.get("/v1/requests/req_0000000000000000")

    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "request_not_found"
    assert row.request_id in theirs.json()["error"]["message"]  # only echoes what was asked
    assert api.get(f"/v1/requests/{row.request_id}").status_code == 200


def test_another_user_lists_none_of_the_owners_requests(api, outsider_api, history):
    rows, second_key = history

    assert ids(listing(outsider_api)) == []
    assert ids(listing(outsider_api, api_key_id=str(second_key.id))) == []
    assert ids(listing(outsider_api, model="gpt-4o", status="2xx")) == []


@pytest.mark.parametrize("path", ["/v1/requests", "/v1/requests/req_abc"])
def test_without_a_key_it_is_401(client, path):
    response = client.get(path)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
