"""The one place that shapes every /v1 error as OpenAI's envelope.

`{"error": {"message", "type", "param", "code"}}` with the HTTP status the official SDKs map to the right
exception (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429 RateLimitError, ...).
"""

from __future__ import annotations

import logging

import orjson
from django.db import DatabaseError
from django.http import HttpResponse
from rest_framework import exceptions as drf

log = logging.getLogger(__name__)


_UNSET = object()


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = _UNSET,  # None: no code (OpenAI sends null for most 400s); unset: the class's
        status: int | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not _UNSET:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class InvalidApiKey(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str):
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param="model"
        )


class ModelNotAllowed(GatewayError):
    """403 (the SDK's PermissionDeniedError): the model exists, but this key may not use it."""

    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"

    def __init__(self, model: str):
        super().__init__(f"This API key is not allowed to use the model `{model}`.", param="model")


class BodyTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UpstreamError(GatewayError):
    """The provider failed or could not be reached; `status` is what the client gets."""

    status = 502
    type = "server_error"
    code = "upstream_error"


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: GatewayError) -> HttpResponse:
    response = HttpResponse(orjson.dumps(exc.body()), status=exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    return response


def as_gateway_error(exc: BaseException) -> GatewayError:
    """Any exception raised while serving /v1, as the envelope error the client should see."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return InvalidApiKey(str(exc.detail))
    if isinstance(exc, drf.MethodNotAllowed):
        return InvalidRequest(str(exc.detail), status=405, code="method_not_allowed")
    if isinstance(exc, drf.NotFound):
        return InvalidRequest(str(exc.detail), status=404, code="not_found")
    if isinstance(exc, drf.APIException):
        return InvalidRequest(str(exc.detail), status=exc.status_code, code=exc.default_code)
    if isinstance(exc, DatabaseError):
        log.error("Database unavailable while serving an API request: %s", exc)
        return GatewayError(
            "The service is briefly unavailable; please retry.",
            status=503,
            code="service_unavailable",
            headers={"retry-after": "1"},
        )
    log.exception("Unhandled error while serving an API request", exc_info=exc)
    return GatewayError("The server had an error while processing your request.", type="server_error")


def exception_handler(exc: BaseException, context: dict) -> HttpResponse:
    """DRF's EXCEPTION_HANDLER: every exception a /v1 view raises becomes the envelope."""
    return error_response(as_gateway_error(exc))
