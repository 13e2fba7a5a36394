from __future__ import annotations

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("dashboard/", views.overview, name="overview"),
    path("dashboard/costs/", views.costs, name="costs"),
    path("dashboard/performance/", views.performance, name="performance"),
    path("dashboard/logs/", views.logs, name="logs"),
    path("dashboard/logs/<str:request_id>/", views.log_detail, name="log-detail"),
    path("dashboard/recommendations/", views.recommendation_list, name="recommendations"),
    path(
        "dashboard/recommendations/<uuid:recommendation_id>/<str:action>/",
        views.recommendation_action,
        name="recommendation-action",
    ),
]
