"""The filter bars of the dashboard pages (GET forms: they change what is shown, never any data)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django import forms

from accounts.models import ApiKey
from analytics import selectors
from dashboard.reports import Period, period_of
from dashboard.selectors import Filters

RANGE_CHOICES = [
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("custom", "Custom"),
]
STATUS_CHOICES = [
    ("", "Any status"),
    ("2xx", "Succeeded (2xx)"),
    ("4xx", "Client errors (4xx)"),
    ("429", "Rate limited (429)"),
    ("499", "Cancelled (499)"),
    ("5xx", "Server errors (5xx)"),
]
MAX_CUSTOM_DAYS = 400


def _choices(values, everything: str) -> list[tuple[str, str]]:
    return [("", everything), *((value, value) for value in sorted(values))]


class FilterForm(forms.Form):
    range = forms.ChoiceField(label="Time range", choices=RANGE_CHOICES, required=False)
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    api_key_id = forms.ChoiceField(label="API key", required=False)
    model = forms.ChoiceField(label="Model", required=False)
    provider = forms.ChoiceField(label="Provider", required=False)
    task_type = forms.ChoiceField(label="Task type", required=False)

    default_range = "24h"
    show_filters = True

    def __init__(self, data, *, keys: list[ApiKey], options: dict[str, set[str]]):
        super().__init__(data)
        self.fields["api_key_id"].choices = [
            ("", "All keys"),
            *((str(key.id), f"{key.name or 'Unnamed'} · {key.prefix}…") for key in keys),
        ]
        selected = {name: (data.get(name) or "") for name in ("model", "provider", "task_type")}
        for name, everything in (
            ("model", "All models"),
            ("provider", "All providers"),
            ("task_type", "All tasks"),
        ):
            values = set(options.get(name, ())) | ({selected[name]} if selected[name] else set())
            self.fields[name].choices = _choices(values, everything)

    def clean(self):
        data = super().clean()
        if data.get("range") == "custom":
            start, end = data.get("start"), data.get("end")
            if not start or not end:
                raise forms.ValidationError("Choose both days of a custom range.")
            if end < start:
                raise forms.ValidationError("The range ends before it starts.")
            if end - start > timedelta(days=MAX_CUSTOM_DAYS):
                raise forms.ValidationError(f"Choose at most {MAX_CUSTOM_DAYS} days.")
        return data

    def period(self) -> Period:
        data = self.cleaned_data if self.is_valid() else {}
        key = data.get("range") or self.default_range
        return period_of(key, start_day=data.get("start"), end_day=data.get("end"))

    def filters(self) -> Filters:
        data = self.cleaned_data if self.is_valid() else {}
        return Filters(
            **{name: data.get(name) or None for name in ("api_key_id", "model", "provider", "task_type")}
        )

    def querystring(self) -> str:
        """The valid filters, for links that keep them (pagination, other pages)."""
        if not self.is_valid():
            return ""
        return urlencode({name: value for name, value in self.data.items() if name in self.fields and value})


class LogFilterForm(FilterForm):
    status = forms.ChoiceField(label="Status", choices=STATUS_CHOICES, required=False)
    default_range = "7d"

    def request_filters(self) -> selectors.RequestFilters:
        period = self.period()
        data = self.cleaned_data if self.is_valid() else {}
        return selectors.RequestFilters(
            start=period.start, end=period.end, status=data.get("status") or None, **self.filters().as_dict()
        )
