"""Number formatting for the pages: money, durations, counts and changes, always readable at a glance."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def usd(value) -> str:
    """$1,234 · $12.34 · $0.0123 · $0.000042 — enough digits to tell small amounts apart."""
    if value is None or value == "":
        return "—"
    amount = Decimal(str(value))
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    if amount >= 1000:
        return f"{sign}${amount:,.0f}"
    if amount >= 1:
        return f"{sign}${amount:,.2f}"
    if amount >= Decimal("0.01"):
        return f"{sign}${amount:.4f}"
    return f"{sign}${amount:.6f}"


@register.filter
def ms(value) -> str:
    if value is None or value == "":
        return "—"
    value = float(value)
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    if value >= 100:
        return f"{value:,.0f} ms"
    return f"{value:,.1f} ms"


@register.filter
def compact(value) -> str:
    """1,234 · 12.3k · 4.56M"""
    if value is None or value == "":
        return "—"
    value = float(value)
    for threshold, unit, suffix in ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(value) >= threshold:
            scaled = value / unit
            return f"{scaled:,.{1 if abs(scaled) >= 10 else 2}f}{suffix}"
    return f"{value:,.0f}"


@register.filter
def percent(value, digits: int = 1) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value):.{int(digits)}f}%"


@register.filter
def rate(value) -> str:
    """A fraction (0.0123) as a percentage (1.23%)."""
    if value is None or value == "":
        return "—"
    value = float(value) * 100
    if value == 0:
        return "0%"
    return f"{value:.2f}%" if value < 10 else f"{value:.1f}%"


@register.simple_tag
def delta(change, better: str = "") -> str:
    """A change against the previous period: an arrow, the percentage, and a colour when direction matters.

    `better` is "up", "down" or "" (neither is better: no colour)."""
    if change is None:
        return mark_safe('<span class="delta delta-none">no earlier data</span>')
    if abs(change) < 0.05:
        return mark_safe('<span class="delta delta-flat">±0%</span>')
    direction = "up" if change > 0 else "down"
    tone = "neutral" if not better else ("good" if direction == better else "bad")
    arrow = "▲" if direction == "up" else "▼"
    word = "up" if direction == "up" else "down"
    return format_html(
        '<span class="delta delta-{}"><span aria-hidden="true">{}</span>'
        '<span class="visually-hidden">{} </span>{}%</span>',
        tone,
        arrow,
        word,
        f"{abs(change):,.1f}" if abs(change) < 1000 else f"{abs(change):,.0f}",
    )


@register.filter
def status_class(code) -> str:
    code = int(code or 0)
    if code < 300:
        return "ok"
    if code == 429:
        return "limited"
    if code == 499:
        return "cancelled"
    return "client" if code < 500 else "server"


@register.simple_tag(takes_context=True)
def query(context, **changes) -> str:
    """The current query string with `changes` applied (None or "" removes a parameter)."""
    params = context["request"].GET.copy()
    for name, value in changes.items():
        if value in (None, ""):
            params.pop(name, None)
        else:
            params[name] = value
    encoded = urlencode(sorted(params.lists()), doseq=True)
    return f"?{encoded}" if encoded else "?"


@register.filter
def label(value) -> str:
    """A task type or other identifier for people: "question_answering" → "question answering"."""
    return str(value or "").replace("_", " ")


@register.filter
def get(mapping, key):
    """mapping[key], with keys compared as strings (UUIDs from the database, str keys in the mapping)."""
    mapping = mapping or {}
    return mapping.get(key, mapping.get(str(key)))


@register.filter
def bar_width(value, maximum) -> str:
    """A share of the largest value, as a CSS width in percent."""
    try:
        value, maximum = float(value), float(maximum)
    except (TypeError, ValueError):
        return "0%"
    return f"{max(0.0, min(100.0, value / maximum * 100)) if maximum else 0:.1f}%"


@register.simple_tag
def chart(figure: dict, name: str, label: str, empty: str = "No data for this period.") -> str:
    """A chart's container and its figure as JSON (static/js/charts.js draws it; no inline script)."""
    from django.utils.html import json_script

    element_id = f"fig-{name}"
    return format_html(
        '<div class="chart" id="chart-{}" data-chart="{}" role="img" aria-label="{}" data-empty="{}">'
        "</div>{}",
        name,
        element_id,
        label,
        empty,
        json_script(figure, element_id),
    )
