"""The edge of the API: a request id on every response, and never an HTML page under /v1/."""

from __future__ import annotations

import time
import uuid

from django.contrib.messages.middleware import MessageMiddleware
from django.http import HttpRequest, HttpResponse

from gateway.errors import GatewayError, InvalidRequest, as_gateway_error, error_response

API_PREFIX = "/v1/"
_JSON_TYPES = ("application/json", "text/event-stream", "text/csv")


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


class ApiEdgeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.started_at = time.perf_counter()
        request.request_id = new_request_id()
        response = self.get_response(request)
        if is_api(request):
            if not _speaks_api(response):
                # Django's own pages (404 from the resolver, 400 for a bad Host, 500 ...) become the envelope.
                response = error_response(_error_for_status(response.status_code))
            if not response.streaming and not response.has_header("Content-Length"):
                # (CommonMiddleware's job for pages.) Without it the server would send the body chunked.
                response["Content-Length"] = str(len(response.content))
        response["x-request-id"] = request.request_id
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if is_api(request):
            return error_response(as_gateway_error(exc))
        return None


def _speaks_api(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith(_JSON_TYPES)


def _error_for_status(status: int) -> GatewayError:
    if status == 404:
        return InvalidRequest("Unknown API route.", status=404, code="not_found")
    if status < 500:
        return InvalidRequest("The request could not be understood.", status=status)
    return GatewayError("The server had an error while processing your request.", status=status)


class PageMessageMiddleware(MessageMiddleware):
    """Django's flash messages, for the web pages only: API calls have no one to show them to, and
    building the message storage (a signed-cookie reader) on every /v1 request costs the hot path."""

    def process_request(self, request: HttpRequest) -> None:
        if not is_api(request):
            super().process_request(request)
