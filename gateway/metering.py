"""What one request did, measured as it happens, and the log row it leaves behind.

The view opens a `Call` when an authenticated request arrives and finishes it exactly once, however the
request ends; finishing hands the row to `analytics.services.request_log_record`, which writes it off the
response path.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

from analytics.classify import normalise_task
from analytics.pricing import prices_of
from analytics.services import request_log_record
from gateway.errors import GatewayError
from gateway.limits import Admission, Settlement, settle_begin
from gateway.usage import Usage

if TYPE_CHECKING:
    from gateway.response_cache import CacheSlot
    from gateway.routing import Route
    from gateway.validation import ChatRequest

_UNSET = object()
CLIENT_CLOSED = 499  # nginx's status for a client that went away before the answer ended
_MAX_ERROR_MESSAGE = 2000


class Call:
    def __init__(self, request, endpoint: str = "chat.completions"):
        self.request_id: str = request.request_id
        self.principal = request.user
        self.endpoint = endpoint
        self.started: float = getattr(request, "started_at", None) or time.perf_counter()
        self.created_ts: float = time.time() - (time.perf_counter() - self.started)
        self.upstream_s = 0.0
        self.ttft_s: float | None = None
        self.chat: ChatRequest | None = None
        self.requested_model = ""
        self.route: Route | None = None
        self.served_model = ""
        self.finish_reason = ""
        self.usage: Usage | None = None
        self.response_body: Any = None
        self.attempts: list[dict[str, Any]] = []
        self.fallback_used = False
        self.routing_rule_id: int | None = None  # the key's RoutingRule that picked the model (gateway.rules)
        self.admission: Admission | None = None  # what the request took from its key's limits
        self.settlement: Settlement | None = None  # its settlement, once sent (`settle_early`)
        self.cache: CacheSlot | None = None  # where its answer is cached, when the response cache is on
        self.cache_hit = False  # answered from the response cache
        self.tags: list[str] | None = _tags(request.META.get("HTTP_X_NEUROMETRIC_TAGS"))
        self.task_hint: str | None = request.META.get("HTTP_X_NEUROMETRIC_TASK")
        self.finished = False
        self._priced: Any = _UNSET  # the route `_prices` belong to
        self._prices: dict | None = None

    def add_upstream_time(self, seconds: float) -> None:
        self.upstream_s += seconds

    def record_attempt(
        self, model_id: str, route: Route | None, error: GatewayError | None, seconds: float
    ) -> None:
        self.attempts.append(
            {
                "model": model_id,
                "provider": route.provider.name if route else None,
                "status": error.status if error else 200,
                "error_code": error.code if error else None,
                "ms": round(seconds * 1000, 3),
            }
        )

    def first_token(self) -> None:
        if self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.started

    def prices(self) -> dict | None:
        """The catalogue prices of the model that served the request (what its row records)."""
        route = self.route
        if self._priced is not route:  # once per route (a fallback changes it)
            self._priced, self._prices = route, prices_of(route.model) if route else None
        return self._prices

    def settle_early(self) -> None:
        """Send the key's settlement now that the usage is known, before the client has the whole answer:
        it reaches the limiter before the client's next request, and its reply is read by `finish`."""
        if self.admission is not None and self.settlement is None and self.usage is not None:
            self.settlement = settle_begin(self.admission, self.usage, self.prices())

    def finish(self, status: int, error: GatewayError | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        latency_s = time.perf_counter() - self.started
        usage = self.usage or Usage()
        body = self.chat.body if self.chat is not None else {}
        route = self.route
        row = {
            "request_id": self.request_id,
            "user_id": self.principal.user_id,
            "api_key_id": str(self.principal.key_id),
            "created_ts": self.created_ts,
            "endpoint": self.endpoint,
            "requested_model": self.requested_model[:200],
            "model": (route.requested_model if route else self.requested_model)[:200],
            "tags": self.tags,
            "task_type": normalise_task(self.task_hint) if self.task_hint else "",
            "served_model": (self.served_model or (route.upstream_model if route else ""))[:200],
            "provider": route.provider.name if route else "",
            "stream": bool(self.chat and self.chat.stream),
            "status_code": status,
            "error_type": (error.type if error else "")[:64],
            "error_code": ((error.code or "") if error else "")[:64],
            "error_message": (error.message if error else "")[:_MAX_ERROR_MESSAGE],
            "finish_reason": (self.finish_reason or "")[:32],
            "prompt_tokens": usage.prompt_tokens,
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "usage_estimated": usage.estimated,
            "pricing": self.prices(),
            "latency_ms": latency_s * 1000,
            "ttft_ms": self.ttft_s * 1000 if self.ttft_s is not None else None,
            "upstream_ms": self.upstream_s * 1000,
            "overhead_ms": max(latency_s - self.upstream_s, 0.0) * 1000,
            "max_tokens": _positive_int(body.get("max_completion_tokens") or body.get("max_tokens")),
            "end_user": body.get("user", "")[:256] if isinstance(body.get("user"), str) else "",
            # every attempt, when there was more than one (retries, fallbacks)
            "attempts": self.attempts if len(self.attempts) > 1 else None,
            "fallback_used": self.fallback_used,
        }
        if self.cache_hit:  # free; the log writer prices what it saved (analytics/services.py)
            row.update(provider="cache", cache_hit=True)
        if self.routing_rule_id is not None:
            row["routing_rule_id"] = self.routing_rule_id
        if self.chat is not None:
            # classified (unless the client named the task) and fingerprinted by the log writer, off the
            # response path
            row["_classify"] = self.chat.body
        if settings.STORE_REQUEST_BODIES or self.principal.store_bodies:
            row["request_body"] = body or None
            row["response_body"] = self.response_body
        request_log_record(row)
        if self.admission is not None:
            (self.settlement or settle_begin(self.admission, usage, row["pricing"])).end()


def _tags(header: str | None) -> list[str] | None:
    if not header:
        return None
    tags = [tag.strip()[:64] for tag in header.split(",") if tag.strip()]
    return tags[:20] or None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
