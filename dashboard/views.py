"""The dashboard pages. Each view reads through dashboard.reports (the analytics selectors underneath) and
renders; the few writes (recommendations) call services. Every page but the landing page needs a log-in,
and every read is scoped to the logged-in user: another user's ids are a 404, like unknown ones."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.formats import date_format
from django.views.decorators.http import require_POST

from accounts.models import ApiKey
from analytics import selectors, sketch
from analytics.api import performance_object
from analytics.models import Recommendation
from analytics.recommendations import selectors as recommendation_selectors
from analytics.selectors import Performance, Totals
from dashboard import charts, recommendations, reports
from dashboard.forms import FilterForm, LogFilterForm
from dashboard.reports import change, error_rate, ranked, tokens
from dashboard.templatetags.dashboard import compact, label, rate, usd
from dashboard.templatetags.dashboard import ms as milliseconds
from gateway.models import RoutingRule


def api_base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/v1")


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/landing.html", {"base_url": api_base_url(request)})


def _keys(request) -> list[ApiKey]:
    return list(ApiKey.objects.filter(user=request.user).order_by("-created_at"))


def _key_labels(keys: list[ApiKey]) -> dict[str, str]:
    return {str(key.id): f"{key.name or 'Unnamed'} · {key.prefix}…" for key in keys}


# --- overview ------------------------------------------------------------------------------------------


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    user_id = request.user.id
    keys = _keys(request)
    options = reports.filter_options(user_id=user_id)
    form = FilterForm(request.GET, keys=keys, options=options)
    period, filters = form.period(), form.filters()
    usage = reports.usage(user_id=user_id, period=period, filters=filters)
    for name, values in usage.options.items():
        if name in options:
            options[name] |= values
    form = FilterForm(request.GET, keys=keys, options=options)
    latency = reports.latency(user_id=user_id, period=period, filters=filters)
    savings = reports.cache_savings(usage)
    current, previous = usage.current, usage.previous
    now_lat, then_lat = latency.current, latency.previous

    cards = [
        _card("Requests", f"{current.requests:,}", change(current.requests, previous.requests)),
        _card("Tokens", compact(tokens(current)), change(tokens(current), tokens(previous))),
        _card("Cost", current.cost_usd, change(current.cost_usd, previous.cost_usd), "down", money=True),
        _card(
            "Avg latency",
            now_lat.average_ms,
            change(now_lat.average_ms, then_lat.average_ms),
            "down",
            ms=True,
        ),
        _card(
            "p95 latency",
            now_lat.latency_q(0.95),
            change(now_lat.latency_q(0.95), then_lat.latency_q(0.95)),
            "down",
            ms=True,
        ),
        _card(
            "Error rate",
            f"{error_rate(current):.1f}%" if current.requests else "—",
            change(error_rate(current), error_rate(previous)),
            "down",
        ),
        _card("Cache savings", savings[0], change(*savings), "up", money=True),
    ]
    labels = _key_labels(keys)
    by_key = [
        (labels.get(key_id, "Deleted key" if key_id != "(none)" else "No key"), t)
        for key_id, t in ranked(usage.by["api_key_id"])
    ]
    starts = list(period.bucket_starts)

    def series(q: float, attr: str) -> list[float | None]:
        values = []
        for ts in starts:
            figures = latency.by_bucket.get(ts)
            values.append(None if figures is None else getattr(figures, attr)(q))
        return values

    error_items = [
        ("Client errors (4xx)", current.errors_client),
        ("Rate limited (429)", current.errors_rate_limit),
        ("Server errors (5xx)", current.errors_server),
        ("Cancelled (499)", current.errors_cancelled),
    ]
    figures = {
        "requests": charts.requests_by_status(usage.by_bucket, period.width),
        "cost_over_time": charts.stacked_cost(usage.by_bucket_model, usage.by["model"], period.width),
        "cost_by_model": charts.horizontal_bars([(m, t.cost_usd) for m, t in ranked(usage.by["model"])]),
        "cost_by_task": charts.horizontal_bars(
            [(label(m), t.cost_usd) for m, t in ranked(usage.by["task_type"])], color=charts.PALETTE[2]
        ),
        "latency": charts.lines(
            starts,
            [
                ("p50", series(0.5, "latency_q"), charts.PALETTE[1]),
                ("p95", series(0.95, "latency_q"), charts.PALETTE[0]),
                ("p99", series(0.99, "latency_q"), charts.PALETTE[4]),
            ],
            period.width,
        ),
        "ttft": charts.lines(
            starts,
            [
                ("p50", series(0.5, "ttft_q"), charts.PALETTE[2]),
                ("p95", series(0.95, "ttft_q"), charts.PALETTE[5]),
            ],
            period.width,
        ),
        "errors": charts.donut(error_items, colors=["#f59e0b", "#8b5cf6", "#ef4444", "#94a3b8"]),
    }
    top_models = ranked(usage.by["model"], by="requests", limit=8)
    context = {
        "form": form,
        "period": period,
        "filters": filters,
        "cards": cards,
        "figures": figures,
        "has_errors": current.errors > 0,
        "has_ttft": bool(now_lat.ttft),
        "top_models": top_models,
        "top_models_max": top_models[0][1].requests if top_models else 0,
        "top_keys": by_key[:8],
        "top_keys_max": by_key[0][1].cost_usd if by_key else 0,
        "total_cost": current.cost_usd,
        "has_keys": bool(keys),
        "has_traffic": current.requests > 0,
        "base_url": api_base_url(request),
    }
    return render(request, "dashboard/overview.html", context)


def _kpi(label: str, display: str, foot: str) -> dict:
    """A key figure with a line under it (dashboard/kpi.html)."""
    return {"label": label, "display": display, "foot": foot}


def _card(label, value, delta, better: str = "", *, money: bool = False, ms: bool = False) -> dict:
    display = usd(value) if money else milliseconds(value) if ms else value
    return {"label": label, "value": value, "display": display, "change": delta, "better": better}


# --- costs ---------------------------------------------------------------------------------------------


@login_required
def costs(request: HttpRequest) -> HttpResponse:
    user = request.user
    keys = _keys(request)
    options = reports.filter_options(user_id=user.id)
    form = FilterForm(request.GET, keys=keys, options=options)
    period, filters = form.period(), form.filters()
    usage = reports.usage(
        user_id=user.id, period=period, filters=filters, series=("model", "task_type"), compare=False
    )
    month = reports.month_to_date(user_id=user.id)
    budgets = reports.key_budgets(user=user, keys=[k for k in keys if k.is_active], spent=month.by_key)

    models = [label for label, _ in ranked(usage.by["model"])]
    tasks = [label for label, _ in ranked(usage.by["task_type"])]
    matrix = [
        [float(usage.by_model_task[(m, t)].cost_usd) if (m, t) in usage.by_model_task else 0.0 for t in tasks]
        for m in models
    ]
    pivot = [
        {
            "model": m,
            "cells": [usage.by_model_task.get((m, t)) for t in tasks],
            "total": usage.by["model"][m],
        }
        for m in models
    ]
    periods = [
        {
            "start": selectors.to_datetime(ts),
            "totals": totals,
            "tokens": tokens(totals),
            "top": _top(usage.by_bucket_model[ts]),
        }
        for ts, totals in reversed(usage.by_bucket.items())
    ]
    figures = {
        "cost_by_task_over_time": charts.stacked_cost(
            usage.by_bucket_task, usage.by["task_type"], period.width, display=label
        ),
        "heatmap": charts.heatmap(
            list(reversed(models[:12])),
            [label(task) for task in tasks[:10]],
            list(reversed([row[:10] for row in matrix[:12]])),
        ),
    }
    current = usage.current
    kpis = [
        _kpi("Spend in period", usd(current.cost_usd), f"{compact(current.requests)} requests"),
        _kpi("Month to date", usd(month.spent), f"{date_format(month.month_start, 'F Y')}, all keys"),
        _kpi(
            "Projected month end",
            usd(month.projected),
            f"at this month's pace · day {month.day} of {month.days}",
        ),
        _kpi(
            "Avg cost / request",
            usd(current.cost_usd / current.requests) if current.requests else "—",
            "in the period",
        ),
    ]
    context = {
        "form": form,
        "period": period,
        "kpis": kpis,
        "usage": usage,
        "tasks": tasks,
        "pivot": pivot,
        "task_totals": [usage.by["task_type"][t] for t in tasks],
        "periods": periods,
        "month": month,
        "budgets": budgets,
        "figures": figures,
        "has_traffic": usage.current.requests > 0,
    }
    return render(request, "dashboard/costs.html", context)


def _top(groups: dict[str, Totals]) -> str:
    if not groups:
        return ""
    return max(groups.items(), key=lambda item: (item[1].cost_usd, item[0]))[0]


# --- performance ---------------------------------------------------------------------------------------


@login_required
def performance(request: HttpRequest) -> HttpResponse:
    user_id = request.user.id
    form = FilterForm(request.GET, keys=[], options={})
    form.show_filters = False
    period = form.period()
    report = reports.performance(user_id=user_id, period=period)
    groups = report.groups
    now = selectors.to_unix(selectors.now())
    minutes = max((min(period.end, now) - period.start) / 60, 1)
    rows = [performance_object(perf, minutes) | {"totals": perf.totals} for perf in groups]
    providers = reports.performance_merged(groups, key=lambda perf: perf.provider)
    provider_rows = [performance_object(perf, minutes) | {"totals": perf.totals} for perf in providers]
    overall = (reports.performance_merged(groups, key=lambda perf: None) or [Performance(None, None)])[0]
    total = performance_object(overall, minutes)
    overhead = {
        q: sketch.quantile(overall.overhead, v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }

    top = rows[:8]
    streamed = [row for row in rows if row["ttft_ms"]["p50"] is not None][:8]
    labels = [row["model"] for row in top]
    top_models = report.top_models
    per_model: dict[str, dict[int, float | None]] = defaultdict(dict)
    for (ts, model), figures in report.over_time.items():
        per_model[model][ts] = figures.latency_q(0.95)
    starts = list(period.bucket_starts)
    figures = {
        "latency_by_model": charts.grouped_bars(
            labels,
            [
                ("p50", [row["latency_ms"]["p50"] for row in top], charts.PALETTE[1]),
                ("p95", [row["latency_ms"]["p95"] for row in top], charts.PALETTE[0]),
                ("p99", [row["latency_ms"]["p99"] for row in top], charts.PALETTE[4]),
            ],
        ),
        "ttft_by_model": charts.grouped_bars(
            [row["model"] for row in streamed],
            [
                ("p50", [row["ttft_ms"]["p50"] for row in streamed], charts.PALETTE[2]),
                ("p95", [row["ttft_ms"]["p95"] for row in streamed], charts.PALETTE[5]),
            ],
        ),
        "p95_over_time": charts.lines(
            starts,
            [
                (model, [per_model[model].get(ts) for ts in starts], charts.PALETTE[i])
                for i, model in enumerate(top_models)
            ],
            period.width,
        ),
        "errors_by_provider": charts.stacked_category_bars(
            [row["provider"] for row in provider_rows],
            [
                (
                    "Client errors (4xx)",
                    [row["error_rate_by_class"]["client"] * 100 for row in provider_rows],
                    "#f59e0b",
                ),
                (
                    "Rate limited (429)",
                    [row["error_rate_by_class"]["rate_limit"] * 100 for row in provider_rows],
                    "#8b5cf6",
                ),
                (
                    "Server errors (5xx)",
                    [row["error_rate_by_class"]["server"] * 100 for row in provider_rows],
                    "#ef4444",
                ),
                (
                    "Cancelled (499)",
                    [row["error_rate_by_class"]["cancelled"] * 100 for row in provider_rows],
                    "#94a3b8",
                ),
            ],
            percent=True,
        ),
    }
    kpis = [
        _kpi(
            "Requests / minute",
            f"{total['requests_per_minute']:.2f}",
            f"{compact(total['requests'])} requests",
        ),
        _kpi(
            "p50 latency",
            milliseconds(total["latency_ms"]["p50"]),
            f"p99 {milliseconds(total['latency_ms']['p99'])}",
        ),
        _kpi("p95 latency", milliseconds(total["latency_ms"]["p95"]), "total request time"),
        _kpi(
            "p50 time to first token",
            milliseconds(total["ttft_ms"]["p50"]),
            f"p95 {milliseconds(total['ttft_ms']['p95'])}",
        ),
        _kpi("Error rate", rate(total["error_rate"]), f"{compact(total['errors'])} errors"),
        _kpi(
            "Gateway overhead",
            milliseconds(overhead["p50"]),
            f"p50 · p95 {milliseconds(overhead['p95'])} · p99 {milliseconds(overhead['p99'])}",
        ),
    ]
    context = {
        "form": form,
        "period": period,
        "kpis": kpis,
        "rows": rows,
        "provider_rows": provider_rows,
        "total": total,
        "overall": overall,
        "overhead": overhead,
        "figures": figures,
        "has_traffic": overall.totals.requests > 0,
    }
    return render(request, "dashboard/performance.html", context)


# --- logs ----------------------------------------------------------------------------------------------

PAGE_SIZE = 50


@login_required
def logs(request: HttpRequest) -> HttpResponse:
    keys = _keys(request)
    form = LogFilterForm(request.GET, keys=keys, options=reports.filter_options(user_id=request.user.id))
    after = request.GET.get("after") or None
    try:
        rows, cursor = selectors.request_list(
            user_id=request.user.id, filters=form.request_filters(), after=after, limit=PAGE_SIZE
        )
    except selectors.InvalidCursor:
        messages.warning(request, "That page link is no longer valid; showing the newest requests.")
        rows, cursor = selectors.request_list(
            user_id=request.user.id, filters=form.request_filters(), limit=PAGE_SIZE
        )
        after = None
    context = {
        "form": form,
        "period": form.period(),
        "rows": rows,
        "next_cursor": cursor,
        "is_first_page": after is None,
        "key_labels": {str(key.id): key.prefix for key in keys},
        "page_size": PAGE_SIZE,
    }
    return render(request, "dashboard/logs.html", context)


@login_required
def log_detail(request: HttpRequest, request_id: str) -> HttpResponse:
    row = selectors.request_get(user_id=request.user.id, request_id=request_id)
    if row is None:
        raise Http404("No such request of yours.")
    api_key = ApiKey.objects.filter(id=row.api_key_id, user=request.user).first() if row.api_key_id else None
    # The routing rule (an applied recommendation) that picked the model: the log shows why it changed.
    routing_rule = (
        RoutingRule.objects.filter(pk=row.routing_rule_id, api_key__user=request.user)
        .select_related("recommendation")
        .first()
        if row.routing_rule_id
        else None
    )

    def pretty(value) -> str | None:
        return None if value is None else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)

    context = {
        "row": row,
        "api_key": api_key,
        "total_tokens": row.prompt_tokens + row.completion_tokens,
        "request_body": pretty(row.request_body),
        "response_body": pretty(row.response_body),
        "attempts": row.attempts or [],
        "tags": row.tags,
        "pricing": row.pricing or {},
        "cache_hit": getattr(row, "cache_hit", False),
        "cost_saved_usd": getattr(row, "cost_saved_usd", None),
        "routing_rule": routing_rule,
    }
    return render(request, "dashboard/log_detail.html", context)


# --- recommendations -----------------------------------------------------------------------------------


@login_required
def recommendation_list(request: HttpRequest) -> HttpResponse:
    items = recommendation_selectors.recommendation_list(user_id=request.user.id)
    open_items = [item for item in items if item.status == Recommendation.Status.NEW]
    closed_items = [item for item in items if item.status != Recommendation.Status.NEW]
    context = {
        "open_items": [recommendations.card(item) for item in open_items],
        "closed_items": [recommendations.card(item) for item in closed_items],
        "total_savings": sum((item.estimated_monthly_savings_usd for item in open_items), start=Decimal(0)),
    }
    return render(request, "dashboard/recommendations.html", context)


@login_required
@require_POST
def recommendation_action(request: HttpRequest, recommendation_id, action: str) -> HttpResponse:
    item = recommendation_selectors.recommendation_get(
        user_id=request.user.id, recommendation_id=str(recommendation_id)
    )
    if item is None or action not in recommendations.ACTIONS:
        raise Http404("No such recommendation of yours.")
    try:
        outcome = recommendations.perform(action, recommendation=item)
    except recommendations.ActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, outcome)
    return redirect("dashboard:recommendations")
