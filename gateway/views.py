"""The OpenAI-compatible routes. One view per operation: validate, route, call the provider, answer.

A chat request goes: `ChatCompletionsView.post` → `routing.complete` picks the provider →
`providers/<name>.py` translates → the answer (or `streaming.relay` for streams) → `Call.finish`, which
leaves the log row through `analytics.services.request_log_record`.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, StreamingHttpResponse
from rest_framework.views import APIView

from gateway.catalog import get_catalog
from gateway.errors import (
    BodyTooLarge,
    InvalidRequest,
    ModelNotAllowed,
    ModelNotFound,
    as_gateway_error,
    error_response,
)
from gateway.limits import get_limiter
from gateway.metering import Call
from gateway.routing import complete, model_chain, open_stream
from gateway.streaming import RelayStream
from gateway.tokens import count_prompt, estimate_usage
from gateway.validation import validate_chat_request


def json_response(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


class AfterResponse(HttpResponse):
    """A response that runs `then` once the server has sent it (and closes it)."""

    def __init__(self, *args, then, **kwargs):
        super().__init__(*args, **kwargs)
        self._then = then

    def close(self):
        super().close()
        then, self._then = self._then, None
        if then is not None:
            then()


class GatewayView(APIView):
    """An authenticated /v1 operation that leaves exactly one log row, however it ends."""

    endpoint = ""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication: failures raise before a Call exists
        self.call = Call(request, self.endpoint)

    def finalize_response(self, request, response, *args, **kwargs):
        call = getattr(self, "call", None)
        if call is not None:
            if not call.finished and not response.streaming and not isinstance(response, AfterResponse):
                call.finish(response.status_code)  # e.g. OPTIONS, answered by DRF itself
            if call.admission is not None:
                for name, value in call.admission.headers.items():
                    response[name] = value
        return super().finalize_response(request, response, *args, **kwargs)

    def handle_exception(self, exc):
        error = as_gateway_error(exc)
        call = getattr(self, "call", None)
        if call is not None:
            call.finish(error.status, error)
        return error_response(error)


def read_json_body(request) -> Any:
    limit = settings.MAX_REQUEST_BODY_BYTES
    too_large = BodyTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            raise too_large
        raw = request.body
    except RequestDataTooBig:
        raise too_large from None
    except ValueError:
        raise InvalidRequest("Invalid Content-Length header.") from None
    if len(raw) > limit:
        raise too_large
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request: the API expects a JSON object "
            "encoded as UTF-8.",
            code="invalid_json",
        ) from None


class ChatCompletionsView(GatewayView):
    endpoint = "chat.completions"

    def post(self, request):
        call = self.call
        chat = validate_chat_request(read_json_body(request._request))
        call.chat, call.requested_model = chat, chat.model
        principal = request.user
        policy = principal.policy
        if not policy.allows_model(chat.model):
            raise ModelNotAllowed(chat.model)
        chain = model_chain(chat, request.META.get("HTTP_X_NEUROMETRIC_FALLBACKS"), principal.fallbacks)
        chain = [model_id for model_id in chain if policy.allows_model(model_id)]
        if policy.limits_traffic:
            tokens = count_prompt(chat.body["messages"], chat.model) if policy.tpm else 0
            call.admission = get_limiter().admit(
                key_id=str(principal.key_id), policy=policy, request_id=call.request_id, tokens=tokens
            )
        if chat.stream:
            route, upstream = open_stream(call, chat, chain)
            response = StreamingHttpResponse(
                RelayStream(call, route, chat, upstream), content_type="text/event-stream"
            )
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
        else:
            route, completion = complete(call, chat, chain)
            body = completion.body
            call.usage = completion.usage or estimate_usage(
                chat.body["messages"], _answer_text(body), route.upstream_model
            )
            call.served_model = str(body.get("model") or route.upstream_model)
            call.finish_reason = _first_finish_reason(body)
            call.response_body = body
            response = AfterResponse(
                orjson.dumps(body), content_type="application/json", then=lambda: call.finish(200)
            )
        response["x-neurometric-model"] = route.requested_model
        response["x-neurometric-provider"] = route.provider.name
        return response


class ModelListView(GatewayView):
    endpoint = "models.list"

    def get(self, request):
        data = [_model_object(public_id, info) for public_id, info in get_catalog().public_ids()]
        self.call.finish(200)
        return json_response({"object": "list", "data": data})


class ModelDetailView(GatewayView):
    endpoint = "models.retrieve"

    def get(self, request, model_id: str):
        info = get_catalog().get(model_id)
        if info is None:
            raise ModelNotFound(model_id)
        self.call.finish(200)
        return json_response(_model_object(model_id, info))


def _model_object(public_id: str, info) -> dict:
    return {"id": public_id, "object": "model", "created": info.created, "owned_by": info.provider}


def _first_finish_reason(body: dict) -> str:
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return str(choices[0].get("finish_reason") or "")
    return ""


def _answer_text(body: dict) -> str:
    pieces = []
    for choice in body.get("choices") or ():
        message = choice.get("message") or {} if isinstance(choice, dict) else {}
        if isinstance(message.get("content"), str):
            pieces.append(message["content"])
        for tool_call in message.get("tool_calls") or ():
            function = tool_call.get("function") or {}
            pieces.append(f"{function.get('name', '')}{function.get('arguments', '')}")
    return "".join(pieces)
