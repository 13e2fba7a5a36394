"""A date drill-down for admin change lists of huge tables (the request log).

Django's own `date_hierarchy` tag reads MIN/MAX of the date column and a DISTINCT of its years, months or
days: three scans of a table with millions of rows. This one takes the range from the first and the last
row *by primary key* (two index lookups; rows are written in time order, so that is the time range up to
the odd late row) and offers every year, month or day in it. Filtering by the chosen period is Django's
own (`created_at__year=...` etc., handled by the change list).
"""

from __future__ import annotations

import calendar
import datetime

from django import template
from django.utils import formats, timezone
from django.utils.text import capfirst

register = template.Library()


def _bounds(queryset, field: str) -> tuple[datetime.datetime, datetime.datetime] | None:
    first = queryset.order_by("pk").values_list(field, flat=True).first()
    last = queryset.order_by("-pk").values_list(field, flat=True).first()
    if first is None or last is None:
        return None
    first, last = (timezone.localtime(v) if timezone.is_aware(v) else v for v in (first, last))
    return (first, last) if first <= last else (last, first)


@register.inclusion_tag("admin/date_hierarchy.html")
def fast_date_hierarchy(cl) -> dict:
    field = cl.date_hierarchy
    year_field, month_field, day_field = f"{field}__year", f"{field}__month", f"{field}__day"
    year, month, day = (cl.params.get(name) for name in (year_field, month_field, day_field))
    year, month, day = (int(v[-1] if isinstance(v, list) else v) if v else None for v in (year, month, day))

    def link(filters: dict) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    if year and month and day:
        chosen = datetime.date(year, month, day)
        return {
            "show": True,
            "back": {
                "link": link({year_field: year, month_field: month}),
                "title": str(chosen.strftime("%B %Y")),
            },
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    bounds = _bounds(cl.queryset, field)
    if year and month:
        last_day = calendar.monthrange(year, month)[1]
        days = [datetime.date(year, month, d) for d in range(1, last_day + 1)]
        if bounds:
            days = [d for d in days if bounds[0].date() <= d <= bounds[1].date()]
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: d.day}),
                    "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT")),
                }
                for d in days
            ],
        }
    if year:
        months = [datetime.date(year, m, 1) for m in range(1, 13)]
        if bounds:
            low, high = bounds[0].date().replace(day=1), bounds[1].date().replace(day=1)
            months = [m for m in months if low <= m <= high]
        return {
            "show": True,
            "back": {"link": link({}), "title": "All dates"},
            "choices": [
                {
                    "link": link({year_field: year, month_field: m.month}),
                    "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT")),
                }
                for m in months
            ],
        }
    if bounds is None:
        return {"show": False}
    return {
        "show": True,
        "choices": [
            {"link": link({year_field: y}), "title": str(y)}
            for y in range(bounds[0].year, bounds[1].year + 1)
        ],
    }
