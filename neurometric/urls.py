from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

from analytics.metrics import metrics_view


def healthz(request):
    """For load balancers: the process answers (no database or provider call)."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("v1/", include("gateway.urls")),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("dashboard.urls")),
]
