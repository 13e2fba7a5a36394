"""The OpenAPI 3 schema of every /v1 route, served (publicly) at `GET /v1/openapi.json`.

drf-spectacular generates it from the views: the analytics views describe themselves with `extend_schema`
and their serializers. The gateway's routes (chat completions, models) parse and write JSON by hand, so the
`OpenApiViewExtension`s below describe them with schema-only subclasses (the served views are untouched),
and `ApiKeyScheme` tells the generator that /v1 takes `Authorization: Bearer nm-...`.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension
from drf_spectacular.renderers import OpenApiJsonRenderer2
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from analytics.api import ErrorSerializer


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "gateway.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Your Neurometric API key: `Authorization: Bearer nm-...`.",
        }


class OpenApiSchemaView(SpectacularAPIView):
    """The schema as JSON; needs no key."""

    authentication_classes = []
    permission_classes = [AllowAny]
    renderer_classes = [OpenApiJsonRenderer2]  # application/json: what the /v1 edge lets through


_OBJECT = {"type": "object", "additionalProperties": True}

CHAT_COMPLETION_REQUEST = {
    "type": "object",
    "description": "OpenAI's chat completion request; other OpenAI fields are passed on when the provider "
    "takes them.",
    "required": ["model", "messages"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "description": "A catalogue id or alias, or `provider/model`."},
        "messages": {"type": "array", "minItems": 1, "items": _OBJECT},
        "stream": {"type": "boolean", "default": False},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 128},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "tools": {"type": "array", "items": _OBJECT},
        "tool_choice": {"oneOf": [{"type": "string"}, _OBJECT]},
        "response_format": _OBJECT,
        "user": {"type": "string"},
    },
}

CHAT_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": _OBJECT},
        "usage": {
            "type": "object",
            "additionalProperties": True,
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
            },
        },
    },
}

MODEL = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["model"]},
        "created": {"type": "integer"},
        "owned_by": {"type": "string", "description": "The provider."},
    },
}

MODEL_LIST = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": MODEL}},
}


def _errors(*statuses: int) -> dict:
    return {
        status: OpenApiResponse(ErrorSerializer, description="OpenAI's error envelope.")
        for status in statuses
    }


class ChatCompletionsSchema(OpenApiViewExtension):
    target_class = "gateway.views.ChatCompletionsView"

    def view_replacement(self):
        class Described(self.target_class):
            @extend_schema(
                operation_id="createChatCompletion",
                summary="Create a chat completion (OpenAI-compatible), streamed or not",
                tags=["chat"],
                request={"application/json": CHAT_COMPLETION_REQUEST},
                responses={
                    (200, "application/json"): OpenApiResponse(
                        CHAT_COMPLETION, description="The completion."
                    ),
                    (200, "text/event-stream"): OpenApiResponse(
                        OpenApiTypes.STR, description="With `stream: true`: chunks as server-sent events."
                    ),
                    **_errors(400, 401, 403, 404, 413, 429, 500, 502, 503, 504),
                },
            )
            def post(self, request):
                return super().post(request)  # pragma: no cover - described, never served

        return Described


class ModelListSchema(OpenApiViewExtension):
    target_class = "gateway.views.ModelListView"

    def view_replacement(self):
        class Described(self.target_class):
            @extend_schema(
                operation_id="listModels",
                summary="Every model id and alias in the catalogue",
                tags=["models"],
                responses={200: OpenApiResponse(MODEL_LIST, description="The models."), **_errors(401)},
            )
            def get(self, request):
                return super().get(request)  # pragma: no cover - described, never served

        return Described


class ModelDetailSchema(OpenApiViewExtension):
    target_class = "gateway.views.ModelDetailView"

    def view_replacement(self):
        class Described(self.target_class):
            @extend_schema(
                operation_id="retrieveModel",
                summary="One model; ids with `/` work raw and %2F-encoded",
                tags=["models"],
                responses={200: OpenApiResponse(MODEL, description="The model."), **_errors(401, 404)},
            )
            def get(self, request, model_id: str):
                return super().get(request, model_id)  # pragma: no cover - described, never served

        return Described
