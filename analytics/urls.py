"""The analytics routes, included under /v1/ (gateway/urls.py)."""

from __future__ import annotations

from django.urls import path

from analytics import api
from analytics.openapi import OpenApiSchemaView

urlpatterns = [
    path("organization/usage/completions", api.UsageCompletionsView.as_view(), name="usage-completions"),
    path("organization/costs", api.CostsView.as_view(), name="costs"),
    path("organization/costs.csv", api.CostsCsvView.as_view(), name="costs-csv"),
    path("requests", api.RequestListView.as_view(), name="requests"),
    path("requests.csv", api.RequestCsvView.as_view(), name="requests-csv"),
    path("requests/<str:request_id>", api.RequestDetailView.as_view(), name="request-detail"),
    path("analytics/performance", api.PerformanceView.as_view(), name="performance"),
    path("openapi.json", OpenApiSchemaView.as_view(), name="openapi-schema"),
]
