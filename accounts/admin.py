from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils import timezone

from accounts.models import ApiKey, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "is_active", "is_staff", "created_at"]
    list_filter = ["is_active", "is_staff"]
    search_fields = ["email"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        (
            "Default key policies (a key inherits each one it leaves blank)",
            {"fields": ["rpm", "tpm", "max_parallel", "monthly_budget_usd", "allowed_models"]},
        ),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "created_at"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    readonly_fields = ["created_at", "last_login"]
    actions = ["activate", "deactivate", "make_staff", "remove_staff"]

    @admin.action(description="Activate the selected users")
    def activate(self, request, queryset):
        self.message_user(request, f"Activated {queryset.update(is_active=True)} user(s).")

    @admin.action(description="Deactivate the selected users (their keys stop working)")
    def deactivate(self, request, queryset):
        count = queryset.exclude(pk=request.user.pk).update(is_active=False)
        self.message_user(request, f"Deactivated {count} user(s).")

    @admin.action(description="Give the selected users staff access")
    def make_staff(self, request, queryset):
        self.message_user(request, f"{queryset.update(is_staff=True)} user(s) are now staff.")

    @admin.action(description="Remove staff access from the selected users")
    def remove_staff(self, request, queryset):
        count = queryset.exclude(pk=request.user.pk).update(is_staff=False)
        self.message_user(request, f"{count} user(s) are no longer staff.")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "user",
        "rpm",
        "monthly_budget_usd",
        "created_at",
        "last_used_at",
        "revoked_at",
        "expires_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "name", "user__email"]
    list_select_related = ["user"]
    readonly_fields = ["id", "prefix", "created_at", "last_used_at"]
    fields = [
        "id",
        "user",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
        "expires_at",
        "rpm",
        "tpm",
        "max_parallel",
        "monthly_budget_usd",
        "allowed_models",
        "fallbacks",
        "cache_ttl_seconds",
        "store_bodies",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # keys are created where the secret can be shown once: the command or the dashboard

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).")
