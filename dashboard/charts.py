"""Plotly figures as plain dicts ({"data": [...], "layout": {...}}), drawn in the browser by plotly.js.

The pages embed them with `json_script` and static/js/charts.js draws every `[data-chart]` element, so
no inline script runs. One look for every chart: the system font, the app's palette, no toolbar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from analytics.selectors import Totals

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif'
TEXT, MUTED, GRID = "#1e293b", "#64748b", "#e9eef5"
PALETTE = [
    "#4f46e5",  # indigo
    "#0ea5e9",  # sky
    "#14b8a6",  # teal
    "#f59e0b",  # amber
    "#ec4899",  # pink
    "#8b5cf6",  # violet
    "#84cc16",  # lime
    "#f97316",  # orange
    "#06b6d4",  # cyan
    "#94a3b8",  # slate: "other"
]
STATUS_SERIES = (
    ("OK", "ok", "#10b981"),
    ("Client errors (4xx)", "errors_client", "#f59e0b"),
    ("Rate limited (429)", "errors_rate_limit", "#8b5cf6"),
    ("Server errors (5xx)", "errors_server", "#ef4444"),
    ("Cancelled (499)", "errors_cancelled", "#94a3b8"),
)
OTHER = "Other"


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def layout(**overrides) -> dict:
    base = {
        "font": {"family": FONT, "size": 12, "color": TEXT},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "margin": {"l": 56, "r": 16, "t": 8, "b": 40},
        "height": 280,
        "hovermode": "x unified",
        "hoverlabel": {"font": {"family": FONT}},
        "showlegend": True,
        "legend": {
            "orientation": "h",
            "y": -0.22,
            "x": 0,
            "font": {"color": MUTED, "size": 11},
            "traceorder": "normal",
        },
        "xaxis": {"gridcolor": GRID, "linecolor": GRID, "tickfont": {"color": MUTED}, "zeroline": False},
        "yaxis": {
            "gridcolor": GRID,
            "linecolor": GRID,
            "tickfont": {"color": MUTED},
            "zeroline": False,
            "rangemode": "tozero",
            "automargin": True,  # long tick labels ($0.000050) widen the margin instead of being cut
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def money_axis(values) -> dict:
    """Enough decimals for the largest amount shown: $1,234.00, $0.0123, $0.000045."""
    largest = max((abs(float(v)) for v in values if v), default=0)
    digits = ",.2f" if largest >= 1 else ".4~f" if largest >= 0.01 else ".6~f"
    return {"tickprefix": "$", "tickformat": digits}


def _time_axis(width: int) -> dict:
    return {"type": "date", "hoverformat": "%b %-d, %H:%M UTC" if width < 86400 else "%b %-d, %Y"}


def top_labels(totals: dict[str, Totals], *, by: str = "cost_usd", limit: int = 6) -> list[str]:
    ranked = sorted(totals.items(), key=lambda item: (-getattr(item[1], by), item[0]))
    return [label for label, _ in ranked[:limit]]


def requests_by_status(buckets: dict[int, Totals], width: int) -> dict:
    xs = [iso(ts) for ts in buckets]
    data = []
    for name, attr, color in STATUS_SERIES:
        if attr == "ok":
            ys = [t.requests - t.errors for t in buckets.values()]
        else:
            ys = [getattr(t, attr) for t in buckets.values()]
        if attr != "ok" and not any(ys):
            continue
        data.append(
            {
                "type": "bar",
                "name": name,
                "x": xs,
                "y": ys,
                "marker": {"color": color},
                "hovertemplate": "%{y:,}",
            }
        )
    return {"data": data, "layout": layout(barmode="stack", bargap=0.25, xaxis=_time_axis(width))}


def stacked_cost(
    buckets: dict[int, dict[str, Totals]],
    totals: dict[str, Totals],
    width: int,
    *,
    limit: int = 6,
    display: Callable[[str], str] = str,
) -> dict:
    """Cost per bucket, stacked by label (the top `limit` by cost, the rest as "Other")."""
    labels = top_labels(totals, limit=limit)
    xs = [iso(ts) for ts in buckets]
    series: dict[str, list[float]] = {label: [] for label in labels}
    other: list[float] = []
    for groups in buckets.values():
        for label in labels:
            series[label].append(float(groups[label].cost_usd) if label in groups else 0.0)
        other.append(float(sum((t.cost_usd for k, t in groups.items() if k not in labels), start=0)))
    data = [
        {
            "type": "bar",
            "name": display(label),
            "x": xs,
            "y": ys,
            "marker": {"color": PALETTE[i % (len(PALETTE) - 1)]},
            "hovertemplate": "$%{y:,.6~f}",
        }
        for i, (label, ys) in enumerate(series.items())
    ]
    if any(other):
        data.append(
            {
                "type": "bar",
                "name": OTHER,
                "x": xs,
                "y": other,
                "marker": {"color": PALETTE[-1]},
                "hovertemplate": "$%{y:,.6~f}",
            }
        )
    totals = [sum(values) for values in zip(*(trace["y"] for trace in data), strict=True)] if data else []
    return {
        "data": data,
        "layout": layout(barmode="stack", bargap=0.25, xaxis=_time_axis(width), yaxis=money_axis(totals)),
    }


def horizontal_bars(
    items: Sequence[tuple[str, float]], *, money: bool = True, color: str = PALETTE[0], limit: int = 8
) -> dict:
    """Largest first, top to bottom."""
    items = list(items)[:limit]
    labels = [label for label, _ in reversed(items)]
    values = [float(value) for _, value in reversed(items)]
    template = "$%{x:,.6~f}<extra></extra>" if money else "%{x:,}<extra></extra>"
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": values,
                "y": labels,
                "marker": {"color": color},
                "hovertemplate": template,
            }
        ],
        "layout": layout(
            height=max(160, 36 * len(items) + 48),
            showlegend=False,
            hovermode="closest",
            margin={"l": 8, "r": 16, "t": 4, "b": 32},
            yaxis={"automargin": True, "gridcolor": "rgba(0,0,0,0)", "rangemode": "normal"},
            xaxis=money_axis(values) if money else {"tickformat": ",d"},
        ),
    }


def donut(items: Sequence[tuple[str, float]], colors: Sequence[str] | None = None) -> dict:
    items = [(label, float(value)) for label, value in items if value]
    return {
        "data": [
            {
                "type": "pie",
                "hole": 0.62,
                "labels": [label for label, _ in items],
                "values": [value for _, value in items],
                "marker": {"colors": list(colors or PALETTE)},
                "textinfo": "none",
                "hovertemplate": "%{label}: %{value:,} (%{percent})<extra></extra>",
                "sort": False,
            }
        ],
        "layout": layout(
            height=240,
            hovermode="closest",
            margin={"l": 8, "r": 8, "t": 8, "b": 8},
            legend={"orientation": "v", "y": 0.5, "x": 1.02, "yanchor": "middle"},
        ),
    }


def lines(
    xs: Iterable[int],
    series: Sequence[tuple[str, list[float | None], str]],
    width: int,
    *,
    unit: str = " ms",
) -> dict:
    stamps = [iso(ts) for ts in xs]
    points = max((sum(v is not None for v in ys) for _, ys, _ in series), default=0)
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers" if points < 30 else "lines",  # a lone point needs its marker
            "marker": {"size": 6, "color": color},
            "name": name,
            "x": stamps,
            "y": ys,
            "connectgaps": False,
            "line": {"color": color, "width": 2, "shape": "spline", "smoothing": 0.4},
            "hovertemplate": "%{y:,.0f}" + unit,
        }
        for name, ys, color in series
    ]
    return {"data": data, "layout": layout(xaxis=_time_axis(width), yaxis={"ticksuffix": unit})}


def grouped_bars(
    labels: Sequence[str], series: Sequence[tuple[str, list[float | None], str]], *, unit: str = " ms"
) -> dict:
    """Horizontal grouped bars, one group per label (top to bottom in the given order)."""
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": name,
            "y": list(reversed(labels)),
            "x": list(reversed(values)),
            "marker": {"color": color},
            "hovertemplate": "%{x:,.0f}" + unit,
        }
        for name, values, color in reversed(series)  # a horizontal group draws its first trace lowest
    ]
    return {
        "data": data,
        "layout": layout(
            barmode="group",
            bargap=0.25,
            bargroupgap=0.05,
            height=max(220, 13 * len(labels) * max(len(series), 1) + 24 * len(labels) + 70),
            hovermode="y unified",
            margin={"l": 8, "r": 16, "t": 4, "b": 56},
            legend={"traceorder": "reversed", "y": -0.12},
            xaxis={"ticksuffix": unit},
            yaxis={
                "automargin": True,
                "type": "category",
                "gridcolor": "rgba(0,0,0,0)",
                "rangemode": "normal",
            },
        ),
    }


def stacked_category_bars(
    labels: Sequence[str], series: Sequence[tuple[str, list[float], str]], *, percent: bool = False
) -> dict:
    suffix = "%" if percent else ""
    data = [
        {
            "type": "bar",
            "name": name,
            "x": list(labels),
            "y": ys,
            "marker": {"color": color},
            "hovertemplate": "%{y:,.2f}" + suffix if percent else "%{y:,}",
        }
        for name, ys, color in series
        if any(ys)
    ]
    return {
        "data": data,
        "layout": layout(
            barmode="stack", bargap=0.35, yaxis={"ticksuffix": suffix}, xaxis={"type": "category"}
        ),
    }


def heatmap(rows: Sequence[str], columns: Sequence[str], values: list[list[float]]) -> dict:
    return {
        "data": [
            {
                "type": "heatmap",
                "x": list(columns),
                "y": list(rows),
                "z": [[value or None for value in row] for row in values],  # no colour for "none at all"
                "colorscale": [[0, "#f1f5ff"], [0.5, "#818cf8"], [1, "#3730a3"]],
                "hovertemplate": "%{y} · %{x}: $%{z:,.6~f}<extra></extra>",
                "xgap": 2,
                "ygap": 2,
                "colorbar": {"tickprefix": "$", "thickness": 10, "outlinewidth": 0},
            }
        ],
        "layout": layout(
            height=max(220, 34 * len(rows) + 90),
            showlegend=False,
            hovermode="closest",
            margin={"l": 8, "r": 8, "t": 8, "b": 80},
            xaxis={"automargin": True, "tickangle": -30, "gridcolor": "rgba(0,0,0,0)"},
            yaxis={"automargin": True, "gridcolor": "rgba(0,0,0,0)", "rangemode": "normal"},
        ),
    }
