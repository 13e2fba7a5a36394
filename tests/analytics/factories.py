"""Test data for the analytics APIs: request-log rows, and rollups built from them the way rollups are.

`rollups_of` builds `Rollup` rows straight from raw rows (sums and sketches), so a test can hold both a
rollup and the raw rows it summarises, consistently, without running the rollup job.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from analytics import selectors, sketch
from analytics.models import LATENCY_GRANULARITIES, RequestLog, Rollup
from analytics.pricing import cost_usd
from analytics.rollups import latency_rollups_rewrite

# A fixed "now" for tests that depend on the raw-window boundary: 12:34:56 UTC, so the boundary is 12:24.
NOW = datetime(2026, 3, 18, 12, 34, 56, tzinfo=UTC)
BOUNDARY = datetime(2026, 3, 18, 12, 24, tzinfo=UTC)

GPT_4O = {
    "input_per_mtok": "2.5",
    "cached_input_per_mtok": "1.25",
    "cache_write_per_mtok": None,
    "output_per_mtok": "10",
    "price_date": "2024-08-06",
}
CLAUDE = {
    "input_per_mtok": "3",
    "cached_input_per_mtok": "0.3",
    "cache_write_per_mtok": "3.75",
    "output_per_mtok": "15",
    "price_date": "2024-10-22",
}


def pin_clock(monkeypatch, moment: datetime = NOW) -> datetime:
    """Make `moment` the analytics' "now"."""
    monkeypatch.setattr(selectors, "now", lambda: moment)
    return moment


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def log_row(
    user,
    api_key=None,
    *,
    at: datetime,
    model: str = "gpt-4o",
    provider: str = "openai",
    status: int = 200,
    prompt: int = 1000,
    cached: int = 0,
    cache_write: int = 0,
    completion: int = 200,
    pricing: dict | None = GPT_4O,
    task_type: str = "chat",
    latency_ms: float = 250.0,
    ttft_ms: float | None = None,
    overhead_ms: float = 4.0,
    endpoint: str = "chat.completions",
    **fields,
) -> RequestLog:
    """One request-log row, priced as the gateway prices it."""
    if not prompt and not completion:
        cost = Decimal(0)
    else:
        cost = cost_usd(
            pricing,
            prompt_tokens=prompt,
            cached_tokens=cached,
            cache_write_tokens=cache_write,
            completion_tokens=completion,
        )
    return RequestLog.objects.create(
        request_id=fields.pop("request_id", None) or f"req_{uuid.uuid4().hex}",
        user=user,
        api_key=api_key,
        created_at=at,
        endpoint=endpoint,
        requested_model=fields.pop("requested_model", model),
        model=model,
        served_model=fields.pop("served_model", f"{model}-2024-08-06"),
        provider=provider,
        status_code=status,
        prompt_tokens=prompt,
        cached_tokens=cached,
        cache_write_tokens=cache_write,
        completion_tokens=completion,
        cost_usd=cost,
        cost_unknown=cost is None,
        pricing=pricing,
        task_type=task_type,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        overhead_ms=overhead_ms,
        **fields,
    )


def stored(rows: Iterable[RequestLog]) -> list[RequestLog]:
    """The rows as the database gives them back (costs with the column's precision)."""
    return list(RequestLog.objects.filter(id__in=[row.id for row in rows]))


def total_cost(rows: Iterable[RequestLog]) -> Decimal:
    return sum((row.cost_usd for row in stored(rows) if row.cost_usd is not None), Decimal(0))


_WIDTH = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def bucket_start(moment: datetime, granularity: str) -> datetime:
    step = int(_WIDTH[granularity].total_seconds())
    return datetime.fromtimestamp(ts(moment) - ts(moment) % step, tz=UTC)


def rollups_of(rows: Iterable[RequestLog], granularity: str) -> list[Rollup]:
    """Rollup rows summarising `rows` at one granularity (what the rollup job would write for them), and
    for hours and days their LatencyRollup rows, as the job writes them in the same transaction."""
    groups: dict[tuple, list[RequestLog]] = {}
    for row in stored(rows):
        key = (
            bucket_start(row.created_at, granularity),
            row.user_id,
            row.api_key_id,
            row.model,
            row.provider,
            row.task_type,
        )
        groups.setdefault(key, []).append(row)
    rollups = []
    for (start, user_id, api_key_id, model, provider, task_type), members in groups.items():
        statuses = [row.status_code for row in members]
        rollups.append(
            Rollup.objects.create(
                granularity=granularity,
                bucket_start=start,
                user_id=user_id,
                api_key_id=api_key_id,
                model=model,
                provider=provider,
                task_type=task_type,
                requests=len(members),
                stream_requests=sum(row.stream for row in members),
                errors_client=sum(400 <= s < 500 and s not in (429, 499) for s in statuses),
                errors_rate_limit=statuses.count(429),
                errors_server=sum(s >= 500 for s in statuses),
                errors_cancelled=statuses.count(499),
                prompt_tokens=sum(row.prompt_tokens for row in members),
                cached_tokens=sum(row.cached_tokens for row in members),
                cache_write_tokens=sum(row.cache_write_tokens for row in members),
                completion_tokens=sum(row.completion_tokens for row in members),
                reasoning_tokens=sum(row.reasoning_tokens for row in members),
                cost_usd=sum((row.cost_usd for row in members if row.cost_usd is not None), Decimal(0)),
                cost_unknown_requests=sum(row.cost_unknown for row in members),
                latency_ms_sum=sum(row.latency_ms for row in members),
                latency_sketch=sketch.build(row.latency_ms for row in members),
                ttft_sketch=sketch.build(row.ttft_ms for row in members),
                overhead_sketch=sketch.build(row.overhead_ms for row in members),
            )
        )
    if granularity in LATENCY_GRANULARITIES and rollups:
        latency_rollups_rewrite(user_ids={rollup.user_id for rollup in rollups})
    return rollups


def rolled_up(rows: list[RequestLog], *granularities: str) -> list[RequestLog]:
    """Write rollups of `rows` at each granularity (minute, hour, day by default) and return the rows."""
    for granularity in granularities or ("minute", "hour", "day"):
        rollups_of(rows, granularity)
    return rows
