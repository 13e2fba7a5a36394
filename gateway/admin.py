from __future__ import annotations

from django.contrib import admin

from gateway.models import CatalogModel


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
