"""The analytics API under /v1, read with the caller's own API key and scoped to its owner's data.

One view per operation (HackSoft): a nested `InputSerializer` validates the query string, a selector in
`analytics.selectors` reads, a nested `OutputSerializer` shapes the answer (and the OpenAPI schema). Every
view is a `GatewayView`, so each call leaves its log row like any /v1 request, and errors are OpenAI's
envelope: an invalid parameter is a 400 whose `param` names it; another user's request id is a 404.

- `GET /v1/organization/usage/completions` and `GET /v1/organization/costs` follow OpenAI's Usage and Costs
  APIs: buckets of `bucket_width` aligned to UTC (the range is widened to whole buckets), empty buckets
  included, `limit` buckets per page and an opaque `page` cursor.
- `GET /v1/requests`, `GET /v1/requests/{request_id}`: the request log, newest first, keyset-paginated.
- `GET /v1/analytics/performance`: latency, time to first token, overhead and error rates per model.
- `GET /v1/requests.csv`, `GET /v1/organization/costs.csv`: the same data, streamed as CSV.
"""

from __future__ import annotations

import base64
import binascii
import csv
from collections.abc import Iterable, Iterator
from decimal import Decimal

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers

from analytics import selectors, shadow, sketch
from analytics.models import Recommendation, RequestLog, ShadowEvaluation
from analytics.recommendations import selectors as recommendation_selectors
from analytics.recommendations import services as recommendation_services
from analytics.recommendations.services import RecommendationStateError
from analytics.selectors import DAY, HOUR, MINUTE, Bucket, Performance, RequestFilters, Totals
from gateway.errors import InvalidRequest
from gateway.views import GatewayView, json_response, read_json_body

MAX_TIME = 32_503_680_000  # 3000-01-01: keeps all date arithmetic in range
_WIDTHS = {"1m": MINUTE, "1h": HOUR, "1d": DAY}


def money(amount: Decimal | None) -> str | None:
    """USD as an exact decimal string, with the log's 12 places."""
    return None if amount is None else f"{amount:.12f}"


# --- query strings ---------------------------------------------------------------------------------------


def _query(request) -> dict:
    """The query string as serializer data; `group_by` repeated, as `group_by[]`, or comma-separated."""
    params = request.query_params
    data: dict = {name: params.get(name) for name in params if not name.startswith("group_by")}
    group_by = params.getlist("group_by") + params.getlist("group_by[]")
    data["group_by"] = [item.strip() for value in group_by for item in value.split(",") if item.strip()]
    return data


def validated(serializer_class: type[serializers.Serializer], request) -> dict:
    """The InputSerializer's data, or a 400 in OpenAI's envelope naming the first bad parameter."""
    serializer = serializer_class(data=_query(request))
    if serializer.is_valid():
        return serializer.validated_data
    param, detail = next(iter(serializer.errors.items()))
    while isinstance(detail, dict | list):
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    raise InvalidRequest(f"Invalid value for '{param}': {detail}", param=param)


def _invalid(param: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({param: message})


class BucketedInput(serializers.Serializer):
    """start_time, end_time, bucket_width, group_by, limit and page, as OpenAI's Usage and Costs APIs."""

    WIDTHS: dict[str, tuple[int, int]] = {}  # bucket_width → (default limit, largest limit)
    GROUPS: tuple[str, ...] = ()

    start_time = serializers.IntegerField(
        min_value=0, max_value=MAX_TIME, help_text="Unix seconds, inclusive."
    )
    end_time = serializers.IntegerField(
        min_value=1, max_value=MAX_TIME, required=False, help_text="Unix seconds, exclusive (default: now)."
    )
    bucket_width = serializers.CharField(default="1d", help_text="Bucket width, aligned to UTC.")
    group_by = serializers.ListField(
        child=serializers.CharField(), default=list, help_text="Repeated, or a comma-separated list."
    )
    limit = serializers.IntegerField(min_value=1, required=False, help_text="Buckets per page.")
    page = serializers.CharField(required=False, help_text="The `next_page` of the previous page.")

    def validate_bucket_width(self, value: str) -> str:
        if value not in self.WIDTHS:
            raise serializers.ValidationError(f"must be one of {', '.join(self.WIDTHS)}.")
        return value

    def validate_group_by(self, value: list[str]) -> list[str]:
        for name in value:
            if name not in self.GROUPS:
                raise serializers.ValidationError(f"'{name}' is not one of {', '.join(self.GROUPS)}.")
        return list(dict.fromkeys(value))

    def validate(self, data: dict) -> dict:
        width = _WIDTHS[data["bucket_width"]]
        default_limit, max_limit = self.WIDTHS[data["bucket_width"]]
        limit = data.get("limit", default_limit)
        if limit > max_limit:
            raise _invalid("limit", f"must be at most {max_limit} with bucket_width {data['bucket_width']}.")
        end_time = data.get("end_time", selectors.to_unix(selectors.now()) + 1)
        if end_time <= data["start_time"]:
            raise _invalid("end_time", "must be later than start_time.")
        start, end = selectors.floor_to(data["start_time"], width), selectors.ceil_to(end_time, width)
        page_start = start
        if "page" in data:
            page_start = decode_page(data["page"])
            if page_start is None or not start <= page_start < end or page_start % width:
                raise _invalid("page", "is not a cursor of this query.")
        page_end = min(page_start + limit * width, end)
        return {
            **data,
            "width": width,
            "range": (start, end),
            "page": (page_start, page_end),
            "next_page": encode_page(page_end) if page_end < end else None,
        }


def encode_page(bucket_start: int) -> str:
    return base64.urlsafe_b64encode(f"bucket:{bucket_start}".encode()).decode().rstrip("=")


def decode_page(cursor: str) -> int | None:
    try:
        prefix, _, value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        return int(value) if prefix == "bucket" else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


# --- shared output shapes --------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """OpenAI's error envelope (gateway.errors)."""

    class _Detail(serializers.Serializer):
        message = serializers.CharField()
        type = serializers.CharField()
        param = serializers.CharField(allow_null=True, help_text="The invalid parameter, if one.")
        code = serializers.CharField(allow_null=True)

        class Meta:
            ref_name = "ErrorDetail"

    error = _Detail()

    class Meta:
        ref_name = "Error"


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="An invalid parameter: `param` names it."),
    401: OpenApiResponse(ErrorSerializer, description="A missing, unknown, revoked or expired API key."),
}


class UsageResultSerializer(serializers.Serializer):
    object = serializers.CharField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    input_cached_tokens = serializers.IntegerField()
    input_audio_tokens = serializers.IntegerField()
    output_audio_tokens = serializers.IntegerField()
    num_model_requests = serializers.IntegerField()
    project_id = serializers.CharField(allow_null=True)
    user_id = serializers.CharField(allow_null=True)
    api_key_id = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    batch = serializers.BooleanField(allow_null=True)
    provider = serializers.CharField(allow_null=True)
    task_type = serializers.CharField(allow_null=True)
    errors = serializers.IntegerField(help_text="Requests that ended with an HTTP error.")
    cost_usd = serializers.CharField(help_text="Exact USD, as a decimal string.")

    class Meta:
        ref_name = "UsageCompletionsResult"


class UsageBucketSerializer(serializers.Serializer):
    object = serializers.CharField()
    start_time = serializers.IntegerField()
    end_time = serializers.IntegerField()
    results = UsageResultSerializer(many=True)

    class Meta:
        ref_name = "UsageCompletionsBucket"


class CostResultSerializer(serializers.Serializer):
    class _Amount(serializers.Serializer):
        value = serializers.FloatField()
        currency = serializers.CharField()

        class Meta:
            ref_name = "CostAmount"

    object = serializers.CharField()
    amount = _Amount()
    line_item = serializers.CharField(allow_null=True)
    project_id = serializers.CharField(allow_null=True)
    model = serializers.CharField(required=False, help_text="When grouped by model.")
    task_type = serializers.CharField(required=False, help_text="When grouped by task_type.")
    api_key_id = serializers.CharField(required=False, help_text="When grouped by api_key_id.")
    amount_usd = serializers.CharField(help_text="Exact USD, as a decimal string.")

    class Meta:
        ref_name = "CostsResult"


class CostBucketSerializer(serializers.Serializer):
    object = serializers.CharField()
    start_time = serializers.IntegerField()
    end_time = serializers.IntegerField()
    results = CostResultSerializer(many=True)

    class Meta:
        ref_name = "CostsBucket"


class RequestSerializer(serializers.Serializer):
    """One logged request (no bodies)."""

    class _Error(serializers.Serializer):
        type = serializers.CharField()
        code = serializers.CharField(allow_null=True)
        message = serializers.CharField()

        class Meta:
            ref_name = "RequestError"

    class _Usage(serializers.Serializer):
        prompt_tokens = serializers.IntegerField()
        completion_tokens = serializers.IntegerField()
        total_tokens = serializers.IntegerField()
        cached_tokens = serializers.IntegerField()
        cache_write_tokens = serializers.IntegerField()
        reasoning_tokens = serializers.IntegerField()
        estimated = serializers.BooleanField(help_text="Counted with tiktoken, not reported by the provider.")

        class Meta:
            ref_name = "RequestUsage"

    object = serializers.CharField()
    id = serializers.CharField(help_text="The x-request-id the client got.")
    created = serializers.IntegerField(help_text="Unix seconds.")
    endpoint = serializers.CharField()
    api_key_id = serializers.CharField(allow_null=True)
    model = serializers.CharField()
    requested_model = serializers.CharField()
    served_model = serializers.CharField()
    provider = serializers.CharField()
    status = serializers.IntegerField()
    error = _Error(allow_null=True)
    usage = _Usage()
    cost_usd = serializers.CharField(allow_null=True, help_text="Exact USD; null when the price is unknown.")
    cost_unknown = serializers.BooleanField()
    latency_ms = serializers.FloatField()
    ttft_ms = serializers.FloatField(allow_null=True)
    overhead_ms = serializers.FloatField()
    attempts = serializers.ListField(child=serializers.DictField(), allow_null=True)
    fallback_used = serializers.BooleanField()
    task_type = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField(), allow_null=True)
    end_user = serializers.CharField()
    stream = serializers.BooleanField()
    finish_reason = serializers.CharField()
    cache_hit = serializers.BooleanField(help_text="Answered from the response cache: cost_usd is 0.")
    cost_saved_usd = serializers.CharField(
        allow_null=True, help_text="On a cache hit: what the answer would have cost at the catalogue price."
    )
    routing_rule_id = serializers.IntegerField(
        allow_null=True,
        help_text="The routing rule (an applied recommendation) that sent it to another model; the "
        "response carried it as x-neurometric-rule.",
    )

    class Meta:
        ref_name = "Request"


def request_object(row: RequestLog) -> dict:
    error = None
    if row.status_code >= 400 or row.error_type:
        error = {"type": row.error_type, "code": row.error_code or None, "message": row.error_message}
    return {
        "object": "request",
        "id": row.request_id,
        "created": int(row.created_at.timestamp()),
        "endpoint": row.endpoint,
        "api_key_id": str(row.api_key_id) if row.api_key_id else None,
        "model": row.model,
        "requested_model": row.requested_model,
        "served_model": row.served_model,
        "provider": row.provider,
        "status": row.status_code,
        "error": error,
        "usage": {
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "total_tokens": row.prompt_tokens + row.completion_tokens,
            "cached_tokens": row.cached_tokens,
            "cache_write_tokens": row.cache_write_tokens,
            "reasoning_tokens": row.reasoning_tokens,
            "estimated": row.usage_estimated,
        },
        "cost_usd": money(row.cost_usd),
        "cost_unknown": row.cost_unknown,
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "overhead_ms": row.overhead_ms,
        "attempts": row.attempts,
        "fallback_used": row.fallback_used,
        "task_type": row.task_type,
        "tags": row.tags,
        "end_user": row.end_user,
        "stream": row.stream,
        "finish_reason": row.finish_reason,
        "cache_hit": row.cache_hit,
        "cost_saved_usd": money(row.cost_saved_usd),
        "routing_rule_id": row.routing_rule_id,
    }


def _groups(bucket: Bucket) -> list[tuple[tuple, Totals]]:
    return sorted(bucket.groups.items(), key=lambda item: tuple("" if v is None else v for v in item[0]))


# --- usage -----------------------------------------------------------------------------------------------


class UsageCompletionsView(GatewayView):
    """OpenAI's completions usage: tokens and requests per bucket, optionally grouped."""

    endpoint = "usage.completions"

    class InputSerializer(BucketedInput):
        WIDTHS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
        GROUPS = ("model", "api_key_id", "provider", "task_type")

        class Meta:
            ref_name = "UsageCompletionsQuery"

    class OutputSerializer(serializers.Serializer):
        object = serializers.CharField()
        data = UsageBucketSerializer(many=True)
        has_more = serializers.BooleanField()
        next_page = serializers.CharField(allow_null=True)

        class Meta:
            ref_name = "UsageCompletionsPage"

    @extend_schema(
        operation_id="getCompletionsUsage",
        summary="Completions usage per time bucket (OpenAI's Usage API)",
        parameters=[InputSerializer],
        responses={200: OutputSerializer, **ERRORS},
    )
    def get(self, request):
        data = validated(self.InputSerializer, request)
        page_start, page_end = data["page"]
        group_by = data["group_by"]
        buckets = selectors.usage_buckets(
            user_id=request.user.user_id,
            start=page_start,
            end=page_end,
            width=data["width"],
            group_by=group_by,
        )
        page = {
            "object": "page",
            "data": [
                {
                    "object": "bucket",
                    "start_time": bucket.start,
                    "end_time": bucket.end,
                    "results": [
                        _usage_result(dict(zip(group_by, key, strict=True)), totals)
                        for key, totals in _groups(bucket)
                    ],
                }
                for bucket in buckets
            ],
            "has_more": data["next_page"] is not None,
            "next_page": data["next_page"],
        }
        return json_response(self.OutputSerializer(page).data)


def _usage_result(group: dict, totals: Totals) -> dict:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": totals.prompt_tokens,
        "output_tokens": totals.completion_tokens,
        "input_cached_tokens": totals.cached_tokens,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": totals.requests,
        "project_id": None,
        "user_id": None,
        "api_key_id": group.get("api_key_id"),
        "model": group.get("model"),
        "batch": None,
        "provider": group.get("provider"),
        "task_type": group.get("task_type"),
        "errors": totals.errors,
        "cost_usd": money(totals.cost_usd),
    }


# --- costs -----------------------------------------------------------------------------------------------


class CostsInput(BucketedInput):
    WIDTHS = {"1d": (7, 180), "1h": (24, 168)}
    GROUPS = ("line_item", "model", "task_type", "api_key_id")

    class Meta:
        ref_name = "CostsQuery"


def cost_buckets(*, user_id: int, data: dict) -> list[tuple[Bucket, list[dict]]]:
    """The page's buckets, each with its cost results (one per group), in OpenAI's Costs shape."""
    start, end = data["page"]
    by_line_item = "line_item" in data["group_by"]
    dimensions = [name for name in data["group_by"] if name != "line_item"]
    read = selectors.cost_line_item_buckets if by_line_item else selectors.usage_buckets
    buckets = read(user_id=user_id, start=start, end=end, width=data["width"], group_by=dimensions)
    pages = []
    for bucket in buckets:
        results = []
        for key, totals in _groups(bucket):
            line_item, values = (key[0], key[1:]) if by_line_item else (None, key)
            results.append(
                {
                    "object": "organization.costs.result",
                    "amount": {"value": float(totals.cost_usd), "currency": "usd"},
                    "line_item": line_item,
                    "project_id": None,
                    **dict(zip(dimensions, values, strict=True)),
                    "amount_usd": money(totals.cost_usd),
                }
            )
        pages.append((bucket, results))
    return pages


class CostsView(GatewayView):
    """OpenAI's costs: USD per bucket, optionally per line item (model × price class), model, task, key."""

    endpoint = "costs"
    InputSerializer = CostsInput

    class OutputSerializer(serializers.Serializer):
        object = serializers.CharField()
        data = CostBucketSerializer(many=True)
        has_more = serializers.BooleanField()
        next_page = serializers.CharField(allow_null=True)

        class Meta:
            ref_name = "CostsPage"

    @extend_schema(
        operation_id="getCosts",
        summary="Costs per time bucket (OpenAI's Costs API)",
        parameters=[CostsInput],
        responses={200: OutputSerializer, **ERRORS},
    )
    def get(self, request):
        data = validated(self.InputSerializer, request)
        buckets = cost_buckets(user_id=request.user.user_id, data=data)
        page = {
            "object": "page",
            "data": [
                {"object": "bucket", "start_time": bucket.start, "end_time": bucket.end, "results": results}
                for bucket, results in buckets
            ],
            "has_more": data["next_page"] is not None,
            "next_page": data["next_page"],
        }
        return json_response(self.OutputSerializer(page).data)


# --- the request log -------------------------------------------------------------------------------------


class RequestFilterInput(serializers.Serializer):
    start_time = serializers.IntegerField(
        min_value=0, max_value=MAX_TIME, required=False, help_text="Unix seconds, inclusive."
    )
    end_time = serializers.IntegerField(
        min_value=0, max_value=MAX_TIME, required=False, help_text="Unix seconds, exclusive."
    )
    model = serializers.CharField(required=False, help_text="The public model id that served the request.")
    status = serializers.RegexField(
        r"^[1-5](?:[0-9]{2}|xx)$", required=False, help_text="An HTTP status (429) or a class (5xx)."
    )
    api_key_id = serializers.UUIDField(required=False)
    task_type = serializers.CharField(required=False)
    provider = serializers.CharField(required=False)

    class Meta:
        ref_name = "RequestFilters"


def request_filters(data: dict) -> RequestFilters:
    return RequestFilters(
        start=data.get("start_time"),
        end=data.get("end_time"),
        model=data.get("model"),
        status=data.get("status"),
        api_key_id=str(data["api_key_id"]) if data.get("api_key_id") else None,
        task_type=data.get("task_type"),
        provider=data.get("provider"),
    )


class RequestListView(GatewayView):
    """The caller's model requests, newest first."""

    endpoint = "requests.list"

    class InputSerializer(RequestFilterInput):
        limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
        after = serializers.CharField(required=False, help_text="The `next_cursor` of the previous page.")

        class Meta:
            ref_name = "RequestListQuery"

    class OutputSerializer(serializers.Serializer):
        object = serializers.CharField()
        data = RequestSerializer(many=True)
        has_more = serializers.BooleanField()
        next_cursor = serializers.CharField(allow_null=True)

        class Meta:
            ref_name = "RequestList"

    @extend_schema(
        operation_id="listRequests",
        summary="The request log",
        parameters=[InputSerializer],
        responses={200: OutputSerializer, **ERRORS},
    )
    def get(self, request):
        data = validated(self.InputSerializer, request)
        try:
            rows, cursor = selectors.request_list(
                user_id=request.user.user_id,
                filters=request_filters(data),
                after=data.get("after"),
                limit=data["limit"],
            )
        except selectors.InvalidCursor:
            raise InvalidRequest(
                "Invalid value for 'after': not a cursor of this list.", param="after"
            ) from None
        page = {
            "object": "list",
            "data": [request_object(row) for row in rows],
            "has_more": cursor is not None,
            "next_cursor": cursor,
        }
        return json_response(self.OutputSerializer(page).data)


class RequestDetailView(GatewayView):
    """One of the caller's requests by its x-request-id; another user's id is a 404, like an unknown one."""

    endpoint = "requests.retrieve"
    OutputSerializer = RequestSerializer

    @extend_schema(
        operation_id="retrieveRequest",
        summary="One request by its x-request-id",
        responses={
            200: OutputSerializer,
            401: ERRORS[401],
            404: OpenApiResponse(ErrorSerializer, description="No such request of yours."),
        },
    )
    def get(self, request, request_id: str):
        row = selectors.request_get(user_id=request.user.user_id, request_id=request_id)
        if row is None:
            raise InvalidRequest(
                f"No request found with id '{request_id}'.",
                status=404,
                code="request_not_found",
                param="request_id",
            )
        return json_response(self.OutputSerializer(request_object(row)).data)


# --- performance -----------------------------------------------------------------------------------------


class PerformanceSerializer(serializers.Serializer):
    class _Latency(serializers.Serializer):
        p50 = serializers.FloatField(allow_null=True)
        p95 = serializers.FloatField(allow_null=True)
        p99 = serializers.FloatField(allow_null=True)

        class Meta:
            ref_name = "PerformanceLatency"

    class _Ttft(serializers.Serializer):
        p50 = serializers.FloatField(allow_null=True)
        p95 = serializers.FloatField(allow_null=True)

        class Meta:
            ref_name = "PerformanceTtft"

    class _Overhead(serializers.Serializer):
        p50 = serializers.FloatField(allow_null=True)

        class Meta:
            ref_name = "PerformanceOverhead"

    class _ErrorCounts(serializers.Serializer):
        client = serializers.IntegerField(help_text="4xx other than 429 and 499.")
        rate_limit = serializers.IntegerField(help_text="429.")
        server = serializers.IntegerField(help_text="5xx.")
        cancelled = serializers.IntegerField(help_text="499: the client went away.")

        class Meta:
            ref_name = "PerformanceErrorCounts"

    class _ErrorRates(serializers.Serializer):
        client = serializers.FloatField()
        rate_limit = serializers.FloatField()
        server = serializers.FloatField()
        cancelled = serializers.FloatField()

        class Meta:
            ref_name = "PerformanceErrorRates"

    object = serializers.CharField()
    model = serializers.CharField(allow_null=True, help_text="Null in the overall figures.")
    provider = serializers.CharField(allow_null=True, help_text="Null in the overall figures.")
    requests = serializers.IntegerField()
    requests_per_minute = serializers.FloatField()
    latency_ms = _Latency(help_text="Total latency percentiles (within 1 %).")
    ttft_ms = _Ttft(help_text="Time to first token of streamed requests.")
    overhead_ms = _Overhead(help_text="The gateway's own share of the latency.")
    errors = serializers.IntegerField()
    error_rate = serializers.FloatField(help_text="errors / requests.")
    errors_by_class = _ErrorCounts()
    error_rate_by_class = _ErrorRates()

    class Meta:
        ref_name = "PerformanceResult"


def _quantile(values: dict[str, int], q: float) -> float | None:
    value = sketch.quantile(values, q)
    return None if value is None else round(value, 3)


def performance_object(perf: Performance, minutes: float) -> dict:
    totals = perf.totals
    counts = {
        "client": totals.errors_client,
        "rate_limit": totals.errors_rate_limit,
        "server": totals.errors_server,
        "cancelled": totals.errors_cancelled,
    }

    def rate(count: int) -> float:
        return round(count / totals.requests, 6) if totals.requests else 0.0

    return {
        "object": "analytics.performance.result",
        "model": perf.model,
        "provider": perf.provider,
        "requests": totals.requests,
        "requests_per_minute": round(totals.requests / minutes, 4) if minutes > 0 else 0.0,
        "latency_ms": {
            q: _quantile(perf.latency, v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        "ttft_ms": {q: _quantile(perf.ttft, v) for q, v in (("p50", 0.5), ("p95", 0.95))},
        "overhead_ms": {"p50": _quantile(perf.overhead, 0.5)},
        "errors": totals.errors,
        "error_rate": rate(totals.errors),
        "errors_by_class": counts,
        "error_rate_by_class": {name: rate(count) for name, count in counts.items()},
    }


class PerformanceView(GatewayView):
    """Latency, time to first token, gateway overhead and error rates per model and provider."""

    endpoint = "analytics.performance"

    class InputSerializer(serializers.Serializer):
        start_time = serializers.IntegerField(
            min_value=0, max_value=MAX_TIME, help_text="Unix seconds (floored to the minute)."
        )
        end_time = serializers.IntegerField(
            min_value=1, max_value=MAX_TIME, required=False, help_text="Unix seconds (default: now)."
        )

        class Meta:
            ref_name = "PerformanceQuery"

        def validate(self, data: dict) -> dict:
            if "end_time" in data and data["end_time"] <= data["start_time"]:
                raise _invalid("end_time", "must be later than start_time.")
            return data

    class OutputSerializer(serializers.Serializer):
        object = serializers.CharField()
        start_time = serializers.IntegerField(help_text="The range read, aligned to whole minutes.")
        end_time = serializers.IntegerField()
        data = PerformanceSerializer(many=True)
        total = PerformanceSerializer()

        class Meta:
            ref_name = "Performance"

    @extend_schema(
        operation_id="getPerformance",
        summary="Latency and error rates per model and provider",
        parameters=[InputSerializer],
        responses={200: OutputSerializer, **ERRORS},
    )
    def get(self, request):
        data = validated(self.InputSerializer, request)
        at = selectors.now()
        now_ts = selectors.to_unix(at)
        start = selectors.floor_to(data["start_time"], MINUTE)
        end = selectors.ceil_to(data.get("end_time", now_ts + 1), MINUTE)
        groups, overall = selectors.performance_by_model(
            user_id=request.user.user_id, start=start, end=end, at=at
        )
        minutes = (min(end, now_ts) - start) / 60
        body = {
            "object": "analytics.performance",
            "start_time": start,
            "end_time": end,
            "data": [performance_object(perf, minutes) for perf in groups],
            "total": performance_object(overall, minutes),
        }
        return json_response(self.OutputSerializer(body).data)


# --- CSV -------------------------------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    """CSV text line by line; text cells a spreadsheet would run as a formula are quoted with a '."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([_cell(value) for value in row])


def _cell(value) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_response(lines: Iterator[str], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


REQUEST_CSV_COLUMNS = [
    "id",
    "created_at",
    "endpoint",
    "api_key_id",
    "model",
    "requested_model",
    "served_model",
    "provider",
    "status",
    "error_type",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "cost_usd",
    "cost_unknown",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "fallback_used",
    "task_type",
    "tags",
    "end_user",
    "stream",
    "finish_reason",
]


def _request_csv_row(row: RequestLog) -> list:
    return [
        row.request_id,
        row.created_at.isoformat(),
        row.endpoint,
        str(row.api_key_id) if row.api_key_id else None,
        row.model,
        row.requested_model,
        row.served_model,
        row.provider,
        row.status_code,
        row.error_type,
        row.error_code,
        row.prompt_tokens,
        row.completion_tokens,
        row.prompt_tokens + row.completion_tokens,
        row.cached_tokens,
        row.cache_write_tokens,
        row.reasoning_tokens,
        row.usage_estimated,
        money(row.cost_usd),
        row.cost_unknown,
        row.latency_ms,
        row.ttft_ms,
        row.overhead_ms,
        row.fallback_used,
        row.task_type,
        ",".join(row.tags or ()),
        row.end_user,
        row.stream,
        row.finish_reason,
    ]


CSV_RESPONSE = {(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV with a header row.")}


class RequestCsvView(GatewayView):
    """The request log as CSV: every request matching the filters, newest first, streamed."""

    endpoint = "requests.export"
    InputSerializer = RequestFilterInput

    @extend_schema(
        operation_id="exportRequestsCsv",
        summary="The request log as CSV",
        parameters=[RequestFilterInput],
        responses={**CSV_RESPONSE, **ERRORS},
    )
    def get(self, request):
        data = validated(self.InputSerializer, request)
        rows = selectors.request_iter(user_id=request.user.user_id, filters=request_filters(data))
        response = csv_response(csv_lines(REQUEST_CSV_COLUMNS, map(_request_csv_row, rows)), "requests.csv")
        self.call.finish(200)  # a streamed response is not finished by finalize_response
        return response


class CostsCsvView(GatewayView):
    """Costs as CSV, one row per bucket × group (an empty bucket: one row of 0).

    The same parameters as the costs API; a page holds up to a year of hours or ten years of days, and
    `x-next-page` carries the cursor of the rest, if any.
    """

    endpoint = "costs.export"

    class InputSerializer(CostsInput):
        WIDTHS = {"1d": (3660, 3660), "1h": (8784, 8784)}

        class Meta:
            ref_name = "CostsCsvQuery"

    COLUMNS = [
        "start_time",
        "end_time",
        "line_item",
        "model",
        "task_type",
        "api_key_id",
        "amount_usd",
        "currency",
    ]

    @extend_schema(
        operation_id="exportCostsCsv",
        summary="Costs as CSV",
        parameters=[InputSerializer],
        responses={**CSV_RESPONSE, **ERRORS},
    )
    def get(self, request):
        data = validated(self.InputSerializer, request)
        buckets = cost_buckets(user_id=request.user.user_id, data=data)
        response = csv_response(csv_lines(self.COLUMNS, self._rows(buckets)), "costs.csv")
        if data["next_page"]:
            response["x-next-page"] = data["next_page"]
        self.call.finish(200)  # a streamed response is not finished by finalize_response
        return response

    @staticmethod
    def _rows(buckets: list[tuple[Bucket, list[dict]]]) -> Iterator[list]:
        for bucket, results in buckets:
            start, end = (
                selectors.to_datetime(bucket.start).isoformat(),
                selectors.to_datetime(bucket.end).isoformat(),
            )
            for result in results or [{"amount_usd": money(Decimal(0))}]:
                yield [
                    start,
                    end,
                    result.get("line_item"),
                    result.get("model"),
                    result.get("task_type"),
                    result.get("api_key_id"),
                    result["amount_usd"],
                    "usd",
                ]


# --- recommendations -------------------------------------------------------------------------------------


def _unix(moment) -> int | None:
    return None if moment is None else int(moment.timestamp())


class RoutingRuleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    api_key_id = serializers.CharField()
    from_model = serializers.CharField()
    task_type = serializers.CharField(help_text="Blank: every task type.")
    to_model = serializers.CharField()
    is_active = serializers.BooleanField()
    created_at = serializers.IntegerField(help_text="Unix seconds.")
    disabled_at = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "RoutingRule"


class ShadowEvaluationSerializer(serializers.Serializer):
    object = serializers.CharField()
    id = serializers.CharField()
    recommendation_id = serializers.CharField()
    status = serializers.ChoiceField(choices=ShadowEvaluation.Status.choices)
    sample_size = serializers.IntegerField()
    budget_usd = serializers.CharField()
    spent_usd = serializers.CharField()
    stopped_by_budget = serializers.BooleanField(help_text="The budget ran out before the sample did.")
    method = serializers.CharField(help_text="exact, fieldwise or judge.")
    judge_model = serializers.CharField(allow_null=True)
    compared = serializers.IntegerField()
    agreed = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval of the agreement.")
    ci_high = serializers.FloatField(allow_null=True)
    field_agreement = serializers.DictField(child=serializers.FloatField())
    examples = serializers.ListField(child=serializers.DictField(), help_text="Side-by-side answers.")
    error = serializers.CharField(allow_null=True)
    created_at = serializers.IntegerField()
    finished_at = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "ShadowEvaluation"


class RecommendationSerializer(serializers.Serializer):
    object = serializers.CharField()
    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=Recommendation.Kind.choices)
    title = serializers.CharField()
    detail = serializers.CharField()
    estimated_monthly_savings_usd = serializers.CharField(help_text="USD per 30 days, a decimal string.")
    savings_arithmetic = serializers.CharField()
    confidence = serializers.FloatField(help_text="0 to 1, from the sample size and its stability.")
    evidence = serializers.DictField()
    scope = serializers.DictField()
    suggested_model = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=Recommendation.Status.choices)
    created_at = serializers.IntegerField()
    updated_at = serializers.IntegerField()
    applied_at = serializers.IntegerField(allow_null=True)
    evaluation = ShadowEvaluationSerializer(allow_null=True, help_text="The latest shadow evaluation.")
    realised_savings_usd = serializers.CharField(
        allow_null=True, help_text="Since applying: cost at the original model − what was paid."
    )
    routing_rules = RoutingRuleSerializer(many=True)

    class Meta:
        ref_name = "Recommendation"


def evaluation_object(evaluation: ShadowEvaluation | None) -> dict | None:
    if evaluation is None:
        return None
    return {
        "object": "recommendation.evaluation",
        "id": str(evaluation.id),
        "recommendation_id": str(evaluation.recommendation_id),
        "status": evaluation.status,
        "sample_size": evaluation.sample_size,
        "budget_usd": f"{Decimal(evaluation.budget_usd):.4f}",
        "spent_usd": f"{Decimal(evaluation.spent_usd):.6f}",
        "stopped_by_budget": evaluation.compared < evaluation.sample_size
        and evaluation.spent_usd >= evaluation.budget_usd,
        "method": evaluation.method,
        "judge_model": evaluation.judge_model or None,
        "compared": evaluation.compared,
        "agreed": evaluation.agreed,
        "agreement": evaluation.agreement,
        "ci_low": evaluation.ci_low,
        "ci_high": evaluation.ci_high,
        "field_agreement": evaluation.field_agreement,
        "examples": evaluation.examples,
        "error": evaluation.error or None,
        "created_at": _unix(evaluation.created_at),
        "finished_at": _unix(evaluation.finished_at),
    }


def recommendation_object(rec: Recommendation) -> dict:
    return {
        "object": "recommendation",
        "id": str(rec.id),
        "kind": rec.kind,
        "title": rec.title,
        "detail": rec.detail,
        "estimated_monthly_savings_usd": str(rec.estimated_monthly_savings_usd),
        "savings_arithmetic": rec.savings_arithmetic,
        "confidence": rec.confidence,
        "evidence": rec.evidence,
        "scope": rec.scope,
        "suggested_model": rec.suggested_model or None,
        "status": rec.status,
        "created_at": _unix(rec.created_at),
        "updated_at": _unix(rec.updated_at),
        "applied_at": _unix(rec.applied_at),
        "evaluation": evaluation_object(recommendation_selectors.latest_evaluation(rec)),
        "realised_savings_usd": None if rec.realised_savings_usd is None else str(rec.realised_savings_usd),
        "routing_rules": [
            {
                "id": rule.id,
                "api_key_id": str(rule.api_key_id),
                "from_model": rule.from_model,
                "task_type": rule.task_type,
                "to_model": rule.to_model,
                "is_active": rule.is_active,
                "created_at": _unix(rule.created_at),
                "disabled_at": _unix(rule.disabled_at),
            }
            for rule in rec.routing_rules.all()
        ],
    }


NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such recommendation of yours.")}


def _recommendation(request, recommendation_id: str) -> Recommendation:
    rec = recommendation_selectors.recommendation_get(
        user_id=request.user.user_id, recommendation_id=recommendation_id
    )
    if rec is None:
        raise InvalidRequest(
            f"No recommendation found with id '{recommendation_id}'.",
            status=404,
            code="recommendation_not_found",
            param="recommendation_id",
        )
    return rec


def _state_error(exc: RecommendationStateError) -> InvalidRequest:
    status = 409 if exc.code == "recommendation_not_applied" else 400
    return InvalidRequest(str(exc), status=status, code=exc.code)


class RecommendationListView(GatewayView):
    """The caller's recommendations, largest estimated monthly savings first."""

    endpoint = "recommendations.list"

    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Recommendation.Status.choices, required=False)

        class Meta:
            ref_name = "RecommendationListQuery"

    class OutputSerializer(serializers.Serializer):
        object = serializers.CharField()
        data = RecommendationSerializer(many=True)

        class Meta:
            ref_name = "RecommendationList"

    @extend_schema(
        operation_id="listRecommendations",
        summary="Ways to spend less, with their savings and evidence",
        parameters=[InputSerializer],
        responses={200: OutputSerializer, **ERRORS},
    )
    def get(self, request):
        data = validated(self.InputSerializer, request)
        rows = recommendation_selectors.recommendation_list(
            user_id=request.user.user_id, status=data.get("status")
        )
        body = {"object": "list", "data": [recommendation_object(rec) for rec in rows]}
        return json_response(self.OutputSerializer(body).data)


class _RecommendationAction(GatewayView):
    """POST /v1/recommendations/{id}/<action>: the recommendation after the action."""

    OutputSerializer = RecommendationSerializer

    def act(self, rec: Recommendation) -> Recommendation:
        raise NotImplementedError

    def post(self, request, recommendation_id: str):
        rec = _recommendation(request, recommendation_id)
        try:
            self.act(rec)
        except RecommendationStateError as exc:
            raise _state_error(exc) from None
        rec = _recommendation(request, recommendation_id)
        return json_response(self.OutputSerializer(recommendation_object(rec)).data)


_ACTION_ERRORS = {401: ERRORS[401], **NOT_FOUND}


class RecommendationDismissView(_RecommendationAction):
    """Dismiss a recommendation (an applied one is undone first). It stays dismissed until its savings
    grow by more than half."""

    endpoint = "recommendations.dismiss"

    def act(self, rec: Recommendation) -> Recommendation:
        return recommendation_services.recommendation_dismiss(recommendation=rec)

    @extend_schema(
        operation_id="dismissRecommendation",
        summary="Dismiss a recommendation",
        request=None,
        responses={200: RecommendationSerializer, **_ACTION_ERRORS},
    )
    def post(self, request, recommendation_id: str):
        return super().post(request, recommendation_id)


class RecommendationApplyView(_RecommendationAction):
    """Apply a cheaper_model or newer_snapshot recommendation: a routing rule on each key of its scope
    sends the model's requests (of its task type) to the suggested model."""

    endpoint = "recommendations.apply"

    def act(self, rec: Recommendation) -> Recommendation:
        return recommendation_services.recommendation_apply(recommendation=rec)

    @extend_schema(
        operation_id="applyRecommendation",
        summary="Apply a model recommendation in one step (routing rules)",
        request=None,
        responses={
            200: RecommendationSerializer,
            400: OpenApiResponse(ErrorSerializer, description="This kind cannot be applied by the gateway."),
            **_ACTION_ERRORS,
        },
    )
    def post(self, request, recommendation_id: str):
        return super().post(request, recommendation_id)


class RecommendationUndoView(_RecommendationAction):
    """Undo an applied recommendation: its routing rules are deactivated and it is new again."""

    endpoint = "recommendations.undo"

    def act(self, rec: Recommendation) -> Recommendation:
        return recommendation_services.recommendation_undo(recommendation=rec)

    @extend_schema(
        operation_id="undoRecommendation",
        summary="Undo an applied recommendation",
        request=None,
        responses={
            200: RecommendationSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The recommendation is not applied."),
            **_ACTION_ERRORS,
        },
    )
    def post(self, request, recommendation_id: str):
        return super().post(request, recommendation_id)


def _json_body(request) -> dict:
    raw = request._request.body
    data = read_json_body(request._request) if raw.strip() else {}
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return data


class RecommendationEvaluateView(GatewayView):
    """Start a shadow evaluation: a sample of the recommendation's stored requests replayed on the suggested
    model and compared with the original answers. Answers 202 with the queued evaluation."""

    endpoint = "recommendations.evaluate"

    class InputSerializer(serializers.Serializer):
        sample_size = serializers.IntegerField(
            min_value=1,
            max_value=shadow.MAX_SAMPLE_SIZE,
            required=False,
            help_text="Requests to replay (50).",
        )
        budget_usd = serializers.DecimalField(
            max_digits=10,
            decimal_places=4,
            min_value=Decimal("0.0001"),
            max_value=shadow.MAX_BUDGET_USD,
            required=False,
            help_text="Spend at most this much on the replays and the judge (default 1.00).",
        )

        class Meta:
            ref_name = "EvaluateRecommendationRequest"

    OutputSerializer = ShadowEvaluationSerializer

    @extend_schema(
        operation_id="evaluateRecommendation",
        summary="Shadow-evaluate a model recommendation on your own traffic",
        request={"application/json": InputSerializer},
        responses={
            202: OutputSerializer,
            400: OpenApiResponse(ErrorSerializer, description="An invalid parameter, or not a model advice."),
            **_ACTION_ERRORS,
        },
    )
    def post(self, request, recommendation_id: str):
        rec = _recommendation(request, recommendation_id)
        serializer = self.InputSerializer(data=_json_body(request))
        if not serializer.is_valid():
            param, detail = next(iter(serializer.errors.items()))
            raise InvalidRequest(f"Invalid value for '{param}': {detail[0]}", param=param)
        try:
            evaluation = shadow.shadow_evaluation_create(
                recommendation=rec,
                sample_size=serializer.validated_data.get("sample_size"),
                budget_usd=serializer.validated_data.get("budget_usd"),
            )
        except RecommendationStateError as exc:
            raise _state_error(exc) from None
        return json_response(self.OutputSerializer(evaluation_object(evaluation)).data, status=202)
