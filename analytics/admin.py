"""Django admin for staff: the request log (read-only, fast at millions of rows), rollups (read-only),
recommendations and their shadow evaluations.

The request log's change list never counts the whole table: `show_full_result_count = False` drops the
"N total" query, and `CappedCountPaginator` counts at most CAP_COUNT matching rows (PostgreSQL's planner
estimate for the unfiltered table). Rows are ordered by id, which the primary key index serves, and
filters offer fixed choices instead of a DISTINCT over the table.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

from analytics.classify import TASK_TYPES
from analytics.models import Recommendation, RequestLog, Rollup, ShadowEvaluation

CAP_COUNT = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most CAP_COUNT + 1 rows (one bounded subquery), or PostgreSQL's estimate for the whole
    table, so a page of a table with millions of rows costs two short queries."""

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [self.object_list.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > CAP_COUNT:
                return int(row[0])
        return self.object_list.order_by()[: CAP_COUNT + 1].count()


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class StatusClassFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status_class"

    def lookups(self, request, model_admin):
        return [
            ("2xx", "Succeeded (2xx)"),
            ("4xx", "Client errors (4xx)"),
            ("429", "Rate limited (429)"),
            ("499", "Cancelled (499)"),
            ("5xx", "Server errors (5xx)"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value.endswith("xx"):
            low = int(value[0]) * 100
            return queryset.filter(status_code__gte=low, status_code__lt=low + 100)
        return queryset.filter(status_code=int(value))


class ProviderFilter(admin.SimpleListFilter):
    """The configured providers (settings), not a DISTINCT over millions of rows."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        from django.conf import settings

        return [(name, name) for name in sorted(settings.PROVIDERS)] + [("cache", "cache")]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class TaskTypeFilter(admin.SimpleListFilter):
    title = "task type"
    parameter_name = "task_type"

    def lookups(self, request, model_admin):
        return [(task, task.replace("_", " ")) for task in TASK_TYPES]

    def queryset(self, request, queryset):
        return queryset.filter(task_type=self.value()) if self.value() else queryset


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "request_id",
        "user",
        "api_key",
        "model",
        "provider",
        "status_code",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
    ]
    list_select_related = ["user", "api_key"]
    list_filter = [StatusClassFilter, ProviderFilter, TaskTypeFilter, "stream", "fallback_used"]
    date_hierarchy = "created_at"
    search_fields = ["=request_id"]  # the unique index: exact matches only
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would COUNT every filter choice over the table
    paginator = CappedCountPaginator
    list_per_page = 50
    ordering = ["-id"]  # the primary key's order: no sort over the table
    # The date drill-down is templates/admin/analytics/requestlog/change_list.html's fast one
    # (dashboard/templatetags/admin_dates.py): Django's reads MIN, MAX and DISTINCT over the whole table.


@admin.register(Rollup)
class RollupAdmin(ReadOnlyAdmin):
    list_display = [
        "granularity",
        "bucket_start",
        "user",
        "model",
        "provider",
        "task_type",
        "requests",
        "cost_usd",
    ]
    list_select_related = ["user"]
    list_filter = ["granularity"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    ordering = ["-id"]
    exclude = ["latency_sketch", "ttft_sketch", "overhead_sketch"]


class ShadowEvaluationInline(admin.TabularInline):
    model = ShadowEvaluation
    extra = 0
    can_delete = False
    fields = ["status", "method", "compared", "agreed", "agreement", "spent_usd", "budget_usd", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Recommendation)
class RecommendationAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "user",
        "kind",
        "status",
        "estimated_monthly_savings_usd",
        "confidence",
        "updated_at",
    ]
    list_select_related = ["user"]
    list_filter = ["kind", "status"]
    search_fields = ["title", "user__email"]
    readonly_fields = [
        "id",
        "user",
        "kind",
        "fingerprint",
        "scope",
        "evidence",
        "savings_arithmetic",
        "created_at",
        "updated_at",
        "applied_at",
        "dismissed_at",
        "realised_savings_usd",
    ]
    inlines = [ShadowEvaluationInline]

    def has_add_permission(self, request) -> bool:
        return False  # recommendations come from the rules (analytics.recommendations)
