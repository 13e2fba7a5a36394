"""Staff catalogue rows in the database win over gateway/catalog.json."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import orjson
import pytest
import responses

from analytics.models import RequestLog
from gateway.catalog import get_catalog, invalidate_catalog
from gateway.models import CatalogModel
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "hi"}]


@responses.activate
def test_a_price_override_row_wins_and_keeps_the_files_other_fields(api):
    CatalogModel.objects.create(
        id="gpt-4o", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"), price_date=date(2026, 12, 1)
    )
    invalidate_catalog()
    info = get_catalog().get("gpt-4o")
    assert (info.provider, info.upstream, info.input_per_mtok) == ("openai", "gpt-4o", Decimal("1"))
    assert info.cached_input_per_mtok == Decimal("1.25")  # untouched by the row

    responses.post(UPSTREAM, json=completion(prompt=1000, completion_tokens=1000))
    response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})
    row = RequestLog.objects.get(request_id=response["x-request-id"])
    assert row.cost_usd == Decimal("0.003")
    assert row.pricing["price_date"] == "2026-12-01"


@responses.activate
def test_staff_can_add_a_model_the_file_does_not_know(api):
    CatalogModel.objects.create(
        id="acme-1",
        provider="openai",
        upstream="gpt-4o-acme",
        aliases="acme",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("1"),
    )
    invalidate_catalog()
    responses.post(UPSTREAM, json=completion())
    response = api.post("/v1/chat/completions", {"model": "acme", "messages": MESSAGES})
    assert response.status_code == 200
    assert orjson.loads(responses.calls[0].request.body)["model"] == "gpt-4o-acme"
    ids = {m["id"] for m in orjson.loads(api.get("/v1/models").content)["data"]}
    assert {"acme-1", "acme"} <= ids


def test_an_inactive_row_withdraws_a_model(api):
    CatalogModel.objects.create(id="gpt-4o", is_active=False)
    invalidate_catalog()
    response = api.post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES})
    assert response.status_code == 404
    assert orjson.loads(response.content)["error"]["code"] == "model_not_found"
