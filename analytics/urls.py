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
    path("recommendations", api.RecommendationListView.as_view(), name="recommendations"),
    path(
        "recommendations/<str:recommendation_id>/dismiss",
        api.RecommendationDismissView.as_view(),
        name="recommendation-dismiss",
    ),
    path(
        "recommendations/<str:recommendation_id>/apply",
        api.RecommendationApplyView.as_view(),
        name="recommendation-apply",
    ),
    path(
        "recommendations/<str:recommendation_id>/undo",
        api.RecommendationUndoView.as_view(),
        name="recommendation-undo",
    ),
    path(
        "recommendations/<str:recommendation_id>/evaluate",
        api.RecommendationEvaluateView.as_view(),
        name="recommendation-evaluate",
    ),
    path("openapi.json", OpenApiSchemaView.as_view(), name="openapi-schema"),
]
