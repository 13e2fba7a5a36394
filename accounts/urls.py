from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("signup/", views.sign_up, name="signup"),
    path("login/", views.LogInView.as_view(), name="login"),
    path("logout/", views.LogOutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/sent/", views.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path("password-reset/done/", views.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
    path("settings/", views.account_settings, name="settings"),
    path("settings/password/", views.password_change, name="password-change"),
    path("keys/", views.key_list, name="keys"),
    path("keys/new/", views.key_create, name="key-create"),
    path("keys/<uuid:key_id>/created/", views.key_created, name="key-created"),
    path("keys/<uuid:key_id>/edit/", views.key_edit, name="key-edit"),
    path("keys/<uuid:key_id>/revoke/", views.key_revoke, name="key-revoke"),
]
