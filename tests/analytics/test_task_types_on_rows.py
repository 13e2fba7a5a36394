"""Each logged chat request gets a task type: from x-neurometric-task, or classified by the log writer."""

from __future__ import annotations

import pytest
import responses

from analytics.models import RequestLog
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db


def _row(api, body, **headers) -> RequestLog:
    return RequestLog.objects.get(
        request_id=api.post("/v1/chat/completions", body, **headers)["x-request-id"]
    )


@responses.activate
def test_the_request_is_classified_when_the_client_names_no_task(api):
    responses.post(UPSTREAM, json=completion())
    row = _row(
        api,
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "Translate into French: the weather is lovely today."}],
        },
    )
    assert row.task_type == "translation"


@responses.activate
def test_the_clients_task_header_wins_and_tags_are_kept(api):
    responses.post(UPSTREAM, json=completion())
    row = _row(
        api,
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Translate: hola"}]},
        HTTP_X_NEUROMETRIC_TASK="Code-Generation",
        HTTP_X_NEUROMETRIC_TAGS="checkout, beta ,",
    )
    assert row.task_type == "code_generation"
    assert row.tags == ["checkout", "beta"]


@responses.activate
def test_an_unknown_task_header_falls_back_to_the_classifier(api):
    responses.post(UPSTREAM, json=completion())
    row = _row(
        api,
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Write a haiku about rain"}]},
        HTTP_X_NEUROMETRIC_TASK="poetry-please",
    )
    assert row.task_type == "creative_writing"


@responses.activate
def test_the_user_field_is_recorded(api):
    responses.post(UPSTREAM, json=completion())
    row = _row(
        api, {"model": "gpt-4o", "user": "customer-42", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert row.end_user == "customer-42"
