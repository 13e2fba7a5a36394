"""The OpenAI-compatible routes. One view per operation: validate, route, call the provider, answer.

A chat request goes: `ChatCompletionsView.post` → `routing.complete` picks the provider →
`providers/<name>.py` translates → the answer (or `streaming.relay` for streams) → `Call.finish`, which
leaves the log row through `analytics.services.request_log_record`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, StreamingHttpResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from gateway.catalog import get_catalog
from gateway.errors import (
    BodyTooLarge,
    GatewayError,
    InvalidRequest,
    ModelNotAllowed,
    ModelNotFound,
    as_gateway_error,
    error_response,
)
from gateway.limits import get_limiter
from gateway.metering import Call
from gateway.response_cache import ReplayStream, cache_slot, replay_chunks
from gateway.routing import Route, complete, model_chain, open_stream, resolve
from gateway.rules import apply_routing_rules
from gateway.streaming import RelayStream
from gateway.tokens import count_prompt, estimate_usage
from gateway.usage import Usage
from gateway.validation import ChatRequest, validate_chat_request


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


class AnswerAsIs(BaseContentNegotiation):
    """Every /v1 operation answers in its one format (JSON, an event stream, CSV) whatever the Accept header
    says, as OpenAI's API does. DRF's negotiation refused `Accept: text/html` with 406, and parsed the
    header on every call."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class GatewayView(APIView):
    """An authenticated /v1 operation that leaves exactly one log row, however it ends."""

    endpoint = ""
    content_negotiation_class = AnswerAsIs

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        # DRF's Request and its view refer to each other (request.parser_context["view"], view.request), so
        # every finished request — its WSGI request, body, Call, response — was left to Python's cyclic
        # collector instead of being freed when it ended: ~770 of them, 60 MB, in a worker that had held
        # 500 streams. Without that link, reference counting frees a request as soon as it is done.
        self.request.parser_context = None  # DRF's Request: set by dispatch before anything can fail
        self.__dict__.pop("head", None)  # Django's View.setup stores `self.head = self.get`: a cycle too
        return response

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
        call.cache = cache_slot(request.META, principal, chat)  # None: the response cache is off for it
        if call.cache is not None and (cached := call.cache.get()) is not None:
            return _cached_answer(call, chat, principal, cached)
        rule = apply_routing_rules(principal, chat, task_hint=call.task_hint)
        chain = model_chain(chat, request.META.get("HTTP_X_NEUROMETRIC_FALLBACKS"), principal.fallbacks)
        if rule is not None:  # an applied recommendation: the rule's model first, the requested one next
            chain = [rule.to_model, *(model_id for model_id in chain if model_id != rule.to_model)]
            call.routing_rule_id = rule.rule_id
            call.task_hint = call.task_hint or rule.task_type or None  # the row shows the task it routed
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
            call.settle_early()
            data = orjson.dumps(body)
            response = AfterResponse(
                data, content_type="application/json", then=lambda: _answered(call, data)
            )
        response["x-neurometric-model"] = route.requested_model
        response["x-neurometric-provider"] = route.provider.name
        if rule is not None:
            response["x-neurometric-rule"] = str(rule.rule_id)
        if call.cache is not None:
            response["x-neurometric-cache"] = "miss"  # stored once sent (a stream: once it ends whole)
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


def _answered(call: Call, data: bytes) -> None:
    """After a 200 answer was sent: cache it when the response cache is on for the request, then log it."""
    try:
        if call.cache is not None:
            call.cache.put(data)
    finally:
        call.finish(200)


def _cached_answer(call: Call, chat: ChatRequest, principal, data: bytes) -> HttpResponse:
    """A response-cache hit: no provider call, cost 0, the cached body as it was (or replayed as a stream).
    It counts towards the key's requests per minute and parallel requests, not its tokens per minute or
    monthly budget, since it costs nothing."""
    hit_policy = replace(principal.policy, tpm=None, monthly_budget_usd=None)
    if hit_policy.limits_traffic:
        call.admission = get_limiter().admit(
            key_id=str(principal.key_id), policy=hit_policy, request_id=call.request_id, tokens=0
        )
    body = orjson.loads(data)
    call.cache_hit = True
    call.route = _route_or_none(chat.model)  # for the catalogue price: what the hit saved
    call.usage = Usage.from_openai(body.get("usage")) or estimate_usage(
        chat.body["messages"], _answer_text(body), chat.model
    )
    call.served_model = str(body.get("model") or "")
    call.finish_reason = _first_finish_reason(body)
    call.response_body = body
    if chat.stream:
        usage = body.get("usage") or call.usage.to_openai()
        chunks = replay_chunks(body, include_usage=chat.include_usage, usage=usage)
        response = StreamingHttpResponse(ReplayStream(call, chunks), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
    else:
        response = AfterResponse(data, content_type="application/json", then=lambda: call.finish(200))
    response["x-neurometric-cache"] = "hit"
    response["x-neurometric-model"] = chat.model
    response["x-neurometric-provider"] = "cache"
    return response


def _route_or_none(model_id: str) -> Route | None:
    try:
        return resolve(model_id)
    except GatewayError:
        return None
