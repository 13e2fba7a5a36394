"""GET /v1/openapi.json: a valid OpenAPI 3 schema, public, describing every /v1 route."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


def v1_routes() -> dict[str, set[str]]:
    """Every /v1 route Django serves, as OpenAPI paths, with the HTTP methods its view implements."""
    routes: dict[str, set[str]] = {}

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("v1/"):
                view = pattern.callback.cls
                methods = {m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)}
                routes["/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)] = methods

    walk(get_resolver().url_patterns, "")
    return routes


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/v1/openapi.json")  # no key
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    return response.json()


def test_the_schema_is_public_and_valid_openapi_3(schema):
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Neurometric API"


def test_every_v1_route_and_method_is_in_the_schema(schema):
    routes = v1_routes()

    assert "/v1/chat/completions" in routes and "/v1/organization/usage/completions" in routes
    for path, methods in routes.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), path


def test_the_gateway_routes_are_described(schema):
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    request = chat["requestBody"]["content"]["application/json"]["schema"]
    assert request["required"] == ["model", "messages"]
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    model_list = schema["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]
    assert model_list["schema"]["properties"]["data"]["items"]["properties"]["owned_by"]
    assert "404" in schema["paths"]["/v1/models/{model_id}"]["get"]["responses"]


def test_the_analytics_routes_document_their_parameters_and_answers(schema):
    usage = schema["paths"]["/v1/organization/usage/completions"]["get"]
    parameters = {parameter["name"]: parameter for parameter in usage["parameters"]}
    assert {"start_time", "end_time", "bucket_width", "group_by", "limit", "page"} <= set(parameters)
    assert parameters["start_time"]["required"] is True
    assert {"200", "400", "401"} <= set(usage["responses"])
    detail = schema["paths"]["/v1/requests/{request_id}"]["get"]
    assert "404" in detail["responses"]
    csv_export = schema["paths"]["/v1/requests.csv"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in csv_export


def test_authenticated_routes_declare_the_bearer_key(schema):
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert schema["paths"]["/v1/requests"]["get"]["security"] == [{"ApiKey": []}]


def test_operation_ids_are_unique(schema):
    ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
