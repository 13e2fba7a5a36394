"""Authentication, routing and upstream failures on /v1: every error in OpenAI's envelope, with x-request-id.

The provider's HTTP is mocked with `responses`; a rejected key never leaves a log row, every authenticated
request leaves exactly one.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import requests
import responses
from django.conf import settings
from django.test import override_settings

from accounts.services import api_key_revoke
from analytics.models import RequestLog
from gateway.providers import ADAPTERS
from gateway.providers.openai import OpenAIProvider
from tests.conftest import ApiClient
from tests.gateway.openai_fixtures import UPSTREAM, completion, stream_body

pytestmark = pytest.mark.django_db

URL = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say hello"}]
CHAT = {"model": "gpt-4o", "messages": MESSAGES}
PROVIDER_KEY = "sk-test-provider-key"

_CATALOG = json.loads((Path(settings.BASE_DIR) / "gateway" / "catalog.json").read_text())["models"]
MISTRAL_MODEL = next(m["id"] for m in _CATALOG if m["provider"] == "mistral")
SLASH_MODEL = next(m["id"] for m in _CATALOG if "/" in m["id"])


@pytest.fixture(autouse=True)
def _one_upstream_attempt():
    """These tests pin how one upstream answer maps to the client's; retrying is another feature's tests."""
    with override_settings(UPSTREAM_MAX_RETRIES=0):
        yield


def envelope(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = orjson.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def logged(response) -> RequestLog:
    """The one row this response left, found by the x-request-id the client got."""
    assert RequestLog.objects.count() == 1
    return RequestLog.objects.get(request_id=response["x-request-id"])


def sse_data(response) -> list[bytes]:
    raw = b"".join(response.streaming_content)
    return [part[6:] for part in raw.split(b"\n\n") if part.startswith(b"data: ")]


# --- authentication -------------------------------------------------------------------------------------


def test_missing_authorization_gets_401_invalid_api_key_and_no_log_row(db):
    response = ApiClient(None).post(URL, CHAT)

    error = envelope(response, 401)
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert response["x-request-id"].startswith("req_")
    assert RequestLog.objects.count() == 0


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Basic x", id="basic"),
        pytest.param("Bearer ", id="bearer-empty"),
        pytest.param("Bearer", id="bearer-only"),
        pytest.param("Token nm-abcdefghijklmnopqrstuvwxyz", id="other-scheme"),
        pytest.param("nm-abcdefghijklmnopqrstuvwxyz", id="no-scheme"),
    ],
)
def test_malformed_authorization_header_gets_401(api, header):
    response = api.post(URL, CHAT, HTTP_AUTHORIZATION=header)

    assert envelope(response, 401)["code"] == "invalid_api_key"
    assert "x-request-id" in response
    assert RequestLog.objects.count() == 0


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("nm-" + "A" * 43, id="unknown-nm-key"),
        pytest.param("sk-proj-abcdefghijklmnopqrstuvwxyz", id="openai-style-key"),
        pytest.param("nm-short", id="too-short"),
    ],
)
def test_unknown_key_gets_401_with_the_key_masked(db, key):
    response = ApiClient(key).post(URL, CHAT)

    error = envelope(response, 401)
    assert error["code"] == "invalid_api_key"
    assert key not in error["message"]
    assert RequestLog.objects.count() == 0


def test_bearer_scheme_is_case_insensitive(api, owner_key):
    response = api.get("/v1/models", HTTP_AUTHORIZATION=f"bearer {owner_key[1]}")
    assert response.status_code == 200


def test_revoked_key_gets_401_and_no_log_row(api, owner_key):
    assert api.get("/v1/models").status_code == 200
    RequestLog.objects.all().delete()

    api_key_revoke(key_or_prefix=owner_key[1])
    response = api.post(URL, CHAT)

    assert envelope(response, 401)["code"] == "invalid_api_key"
    assert RequestLog.objects.count() == 0


def test_key_of_an_inactive_user_gets_401(api, owner):
    owner.is_active = False
    owner.save(update_fields=["is_active"])

    response = api.post(URL, CHAT)

    assert envelope(response, 401)["code"] == "invalid_api_key"
    assert RequestLog.objects.count() == 0


def test_a_key_from_another_user_still_works_independently(api, outsider_api):
    assert api.get("/v1/models").status_code == 200
    assert outsider_api.get("/v1/models").status_code == 200
    assert RequestLog.objects.values("user").distinct().count() == 2


# --- x-request-id -----------------------------------------------------------------------------------------


@responses.activate
def test_success_carries_x_request_id_equal_to_the_logged_row(api):
    responses.post(UPSTREAM, json=completion())
    response = api.post(URL, CHAT)

    assert response.status_code == 200
    assert response["x-request-id"].startswith("req_")
    assert logged(response).status_code == 200


def test_each_request_gets_its_own_request_id(api):
    ids = {api.get("/v1/models")["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == ids


# --- routes and methods -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_unknown_v1_route_gets_404_json_envelope_not_html(api, method):
    response = getattr(api, method)("/v1/nope")

    error = envelope(response, 404)
    assert error["code"] == "not_found"
    assert b"<html" not in response.content.lower()
    assert "x-request-id" in response


def test_unknown_v1_route_without_a_key_is_still_a_json_404(db):
    response = ApiClient(None).get("/v1/does/not/exist")
    envelope(response, 404)
    assert "x-request-id" in response


def test_get_on_chat_completions_gets_405_in_the_envelope_and_a_log_row(api):
    response = api.get(URL)

    error = envelope(response, 405)
    assert error["code"] == "method_not_allowed"
    row = logged(response)
    assert row.status_code == 405 and row.error_code == "method_not_allowed"


# --- models and routing ----------------------------------------------------------------------------------


@responses.activate
def test_unknown_model_gets_404_model_not_found_with_param_model(api):
    response = api.post(URL, {"model": "gpt-9-does-not-exist", "messages": MESSAGES})

    error = envelope(response, 404)
    assert (error["code"], error["param"], error["type"]) == (
        "model_not_found",
        "model",
        "invalid_request_error",
    )
    assert "gpt-9-does-not-exist" in error["message"]
    assert len(responses.calls) == 0
    row = logged(response)
    assert (row.status_code, row.error_code) == (404, "model_not_found")


@responses.activate
def test_unknown_provider_prefix_gets_404_model_not_found(api):
    response = api.post(URL, {"model": "acme/some-model", "messages": MESSAGES})
    assert envelope(response, 404)["code"] == "model_not_found"
    assert len(responses.calls) == 0


@responses.activate
def test_provider_slash_model_routes_to_that_provider_with_the_upstream_name(api):
    responses.post(UPSTREAM, json=completion(model="gpt-9-unknown"))
    response = api.post(URL, {"model": "openai/gpt-9-unknown", "messages": MESSAGES})

    assert response.status_code == 200, response.content
    assert orjson.loads(responses.calls[0].request.body)["model"] == "gpt-9-unknown"
    assert response["x-neurometric-provider"] == "openai"
    assert response["x-neurometric-model"] == "openai/gpt-9-unknown"
    row = logged(response)
    assert (row.provider, row.requested_model) == ("openai", "openai/gpt-9-unknown")
    assert row.cost_usd is None and row.cost_unknown  # the catalogue has no price for it


@responses.activate
def test_provider_slash_model_known_upstream_is_priced_from_the_catalogue(api):
    responses.post(UPSTREAM, json=completion())
    response = api.post(URL, {"model": "openai/gpt-4o", "messages": MESSAGES})

    assert response.status_code == 200
    assert orjson.loads(responses.calls[0].request.body)["model"] == "gpt-4o"
    row = logged(response)
    assert row.cost_usd is not None and not row.cost_unknown


def _providers_without_mistral_key() -> dict:
    providers = {name: dict(config) for name, config in settings.PROVIDERS.items()}
    providers["mistral"].update(api_key="", configured=False)
    return providers


@responses.activate
def test_unconfigured_provider_gets_400_naming_its_api_key_setting(api, monkeypatch):
    # An adapter is registered (as it will be once mistral is implemented): only the key is missing.
    monkeypatch.setitem(ADAPTERS, "mistral", OpenAIProvider)
    with override_settings(PROVIDERS=_providers_without_mistral_key()):
        response = api.post(URL, {"model": MISTRAL_MODEL, "messages": MESSAGES})

    error = envelope(response, 400)
    assert "MISTRAL_API_KEY" in error["message"]
    assert (error["code"], error["param"]) == ("provider_not_configured", "model")
    assert len(responses.calls) == 0
    assert logged(response).status_code == 400


@responses.activate
def test_provider_without_an_adapter_gets_400_provider_not_configured(api, monkeypatch):
    monkeypatch.delitem(ADAPTERS, "mistral", raising=False)
    with override_settings(PROVIDERS=_providers_without_mistral_key()):
        response = api.post(URL, {"model": MISTRAL_MODEL, "messages": MESSAGES})

    error = envelope(response, 400)
    assert (error["code"], error["param"]) == ("provider_not_configured", "model")
    assert "mistral" in error["message"]
    assert len(responses.calls) == 0
    assert logged(response).error_code == "provider_not_configured"


# --- upstream failures ---------------------------------------------------------------------------------

UPSTREAM_FAILURES = [
    pytest.param(
        {
            "status": 500,
            "json": {"error": {"message": "The server had an error", "type": "server_error", "param": None}},
        },
        500,
        "upstream_error",
        id="upstream-500",
    ),
    pytest.param(
        {"status": 503, "json": {"error": {"message": "overloaded", "code": "server_is_overloaded"}}},
        503,
        "server_is_overloaded",
        id="upstream-503",
    ),
    pytest.param(
        {
            "status": 429,
            "headers": {"retry-after": "7", "x-ratelimit-remaining-requests": "0"},
            "json": {
                "error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
            },
        },
        429,
        "rate_limit_exceeded",
        id="upstream-429-rate-limit",
    ),
    pytest.param(
        {
            "status": 429,
            "json": {
                "error": {"message": "You exceeded your quota", "type": "insufficient_quota", "code": None}
            },
        },
        429,
        "insufficient_quota",
        id="upstream-429-insufficient-quota",
    ),
    pytest.param(
        {
            "status": 401,
            "json": {"error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}.", "type": "x"}},
        },
        401,
        "invalid_api_key",
        id="upstream-401",
    ),
    pytest.param(
        {
            "status": 400,
            "json": {
                "error": {
                    "message": "This model's maximum context length is 128000 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        },
        400,
        "context_length_exceeded",
        id="upstream-400-passes-through",
    ),
    pytest.param(
        {"status": 502, "body": b"<html>Bad gateway</html>"}, 502, "upstream_error", id="upstream-html-502"
    ),
    pytest.param(
        {"body": requests.ConnectionError("refused")}, 502, "upstream_unreachable", id="connection-error"
    ),
    pytest.param({"body": requests.ReadTimeout("slow")}, 504, "upstream_timeout", id="read-timeout"),
    pytest.param({"body": requests.ConnectTimeout("slow")}, 504, "upstream_timeout", id="connect-timeout"),
    pytest.param(
        {"status": 200, "body": b"not json at all", "content_type": "text/plain"},
        502,
        "upstream_malformed",
        id="non-json-200",
    ),
    pytest.param({"status": 200, "json": [1, 2]}, 502, "upstream_malformed", id="json-array-200"),
]


@pytest.mark.parametrize(("mock", "status", "code"), UPSTREAM_FAILURES)
@responses.activate
def test_upstream_failure_maps_to_the_right_status_envelope_and_log_row(api, mock, status, code):
    responses.post(UPSTREAM, **mock)
    response = api.post(URL, CHAT)

    error = envelope(response, status)
    assert error["code"] == code
    assert response["x-request-id"].startswith("req_")
    row = logged(response)
    assert (row.status_code, row.error_code) == (status, code)
    assert row.provider == "openai"


@responses.activate
def test_upstream_500_is_a_server_error_envelope(api):
    responses.post(UPSTREAM, status=500, json={"error": {"message": "boom", "type": "server_error"}})
    error = envelope(api.post(URL, CHAT), 500)
    assert error["type"] == "server_error"


@responses.activate
def test_upstream_429_passes_retry_after_and_rate_limit_headers(api):
    responses.post(
        UPSTREAM,
        status=429,
        headers={"retry-after": "7", "retry-after-ms": "7000", "x-ratelimit-reset-requests": "1s"},
        json={"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
    )
    response = api.post(URL, CHAT)

    envelope(response, 429)
    assert response["retry-after"] == "7"
    assert response["retry-after-ms"] == "7000"
    assert response["x-ratelimit-reset-requests"] == "1s"
    assert "x-should-retry" not in response


@responses.activate
def test_upstream_429_insufficient_quota_tells_the_sdk_not_to_retry(api):
    responses.post(
        UPSTREAM,
        status=429,
        json={"error": {"message": "You exceeded your current quota", "type": "insufficient_quota"}},
    )
    response = api.post(URL, CHAT)

    error = envelope(response, 429)
    assert error["type"] == "insufficient_quota"
    assert response["x-should-retry"] == "false"


@responses.activate
def test_upstream_401_never_reveals_the_provider_key(api):
    responses.post(
        UPSTREAM,
        status=401,
        json={
            "error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}.", "code": "invalid_api_key"}
        },
    )
    response = api.post(URL, CHAT)

    error = envelope(response, 401)
    assert PROVIDER_KEY not in response.content.decode()
    assert "OPENAI_API_KEY" in error["message"]
    assert PROVIDER_KEY not in logged(response).error_message


@responses.activate
def test_upstream_error_message_echoing_the_provider_key_is_scrubbed(api):
    responses.post(
        UPSTREAM,
        status=400,
        json={"error": {"message": f"Bad header Authorization: Bearer {PROVIDER_KEY}", "type": "x"}},
    )
    response = api.post(URL, CHAT)

    envelope(response, 400)
    assert PROVIDER_KEY not in response.content.decode()
    assert PROVIDER_KEY not in logged(response).error_message


@responses.activate
def test_upstream_error_before_the_first_byte_of_a_stream_gets_a_real_status(api):
    responses.post(
        UPSTREAM, status=429, headers={"retry-after": "3"}, json={"error": {"message": "slow down"}}
    )
    response = api.post(URL, {**CHAT, "stream": True})

    envelope(response, 429)
    assert response["retry-after"] == "3"
    row = logged(response)
    assert row.status_code == 429 and row.stream


@responses.activate
def test_mid_stream_upstream_error_ends_the_stream_with_an_error_event_and_no_done(api):
    body = stream_body(["Hel", "lo"])
    body = body[: body.index(b"data: [DONE]")]  # the stream breaks before it ends
    body = body.replace(b'"finish_reason":"stop"', b'"finish_reason":null')
    body += b'data: {"error": {"message": "The server is overloaded", "type": "server_error"}}\n\n'
    responses.post(UPSTREAM, body=body, content_type="text/event-stream")

    response = api.post(URL, {**CHAT, "stream": True})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    events = sse_data(response)

    assert b"[DONE]" not in events
    last = orjson.loads(events[-1])
    assert set(last) == {"error"}
    assert last["error"]["message"] == "The server is overloaded"
    assert set(last["error"]) == {"message", "type", "param", "code"}
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello"

    row = logged(response)
    assert row.status_code >= 500 and row.error_message == "The server is overloaded"
    assert row.stream and row.completion_tokens > 0  # what the client received is counted


# --- GET /v1/models -----------------------------------------------------------------------------------


def test_model_list_has_openai_shape_and_at_least_100_models(api):
    response = api.get("/v1/models")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    body = orjson.loads(response.content)
    assert body["object"] == "list"
    data = body["data"]
    assert len(data) >= 100
    for model in data:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model"
        assert isinstance(model["id"], str) and model["id"]
        assert isinstance(model["created"], int) and not isinstance(model["created"], bool)
        assert isinstance(model["owned_by"], str) and model["owned_by"]
    ids = [m["id"] for m in data]
    assert len(ids) == len(set(ids))
    assert "gpt-4o" in ids and SLASH_MODEL in ids
    assert logged(response).endpoint == "models.list"


def test_model_list_requires_a_key(db):
    assert envelope(ApiClient(None).get("/v1/models"), 401)["code"] == "invalid_api_key"


def test_retrieve_model_by_id(api):
    response = api.get("/v1/models/gpt-4o")

    assert response.status_code == 200
    model = orjson.loads(response.content)
    assert model["id"] == "gpt-4o" and model["object"] == "model" and model["owned_by"] == "openai"
    assert isinstance(model["created"], int)
    assert logged(response).endpoint == "models.retrieve"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(SLASH_MODEL, id="raw-slash"),
        pytest.param(SLASH_MODEL.replace("/", "%2F"), id="encoded-slash"),
        pytest.param(SLASH_MODEL.replace("/", "%2f"), id="encoded-slash-lowercase"),
    ],
)
def test_retrieve_model_whose_id_contains_a_slash(api, path):
    response = api.get(f"/v1/models/{path}")

    assert response.status_code == 200, response.content
    assert orjson.loads(response.content)["id"] == SLASH_MODEL


def test_retrieve_unknown_model_gets_404_model_not_found(api):
    response = api.get("/v1/models/gpt-9-nope")

    error = envelope(response, 404)
    assert error["code"] == "model_not_found"
    row = logged(response)
    assert (row.status_code, row.error_code) == (404, "model_not_found")


def test_authenticated_options_request_leaves_exactly_one_log_row(api):
    response = api.client.options(URL, HTTP_AUTHORIZATION=f"Bearer {api.key}")

    assert "x-request-id" in response
    assert RequestLog.objects.filter(request_id=response["x-request-id"]).count() == 1
