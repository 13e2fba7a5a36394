from __future__ import annotations

from django.contrib import admin

from gateway.models import CatalogModel, RoutingRule


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "provider",
        "upstream",
        "input_per_mtok",
        "output_per_mtok",
        "price_date",
        "is_active",
    ]
    list_filter = ["provider", "is_active"]
    search_fields = ["id", "upstream", "aliases", "family"]


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ["api_key", "from_model", "task_type", "to_model", "is_active", "created_at"]
    list_select_related = ["api_key"]
    list_filter = ["is_active"]
    search_fields = ["from_model", "to_model", "api_key__prefix", "api_key__user__email"]
    raw_id_fields = ["api_key", "recommendation"]
