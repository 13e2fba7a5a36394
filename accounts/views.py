"""Web pages of accounts: sign-up, log-in (throttled), password reset, settings, and API keys.

Views validate with a form and call a service (accounts.services); a user only ever reaches their own keys:
another user's key id is a 404, like an unknown one.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services, throttle
from accounts.forms import ApiKeyForm, DefaultPoliciesForm, LogInForm, SignUpForm
from accounts.models import ApiKey

NEW_KEY_SESSION = "new_api_key"  # {key id: full key}, shown once and dropped


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


# --- sign-up, log-in, password reset -------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def sign_up(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard:overview")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.user_sign_up(
            email=form.cleaned_data["email"], password=form.cleaned_data["password1"]
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to Neurometric. Create an API key to send your first request.")
        return redirect("accounts:key-create")
    return render(request, "accounts/sign_up.html", {"form": form})


class LogInView(auth_views.LoginView):
    """Django's log-in, refused for a while after too many failures from one address or for one email."""

    template_name = "accounts/log_in.html"
    form_class = LogInForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        email = request.POST.get("username", "")
        if throttle.login_blocked(ip=client_ip(request), email=email):
            form = self.form_class(
                request=request, initial={"username": email}
            )  # the password is not checked
            minutes = throttle.WINDOW_SECONDS // 60
            context = self.get_context_data(
                form=form,
                throttled=f"Too many failed log-in attempts. Wait {minutes} minutes and try again, "
                "or reset your password.",
            )
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        throttle.login_succeeded(ip=client_ip(self.request), email=form.cleaned_data.get("username", ""))
        return super().form_valid(form)

    def form_invalid(self, form):
        throttle.login_failed(ip=client_ip(self.request), email=self.request.POST.get("username", ""))
        return super().form_invalid(form)


class LogOutView(auth_views.LogoutView):
    pass


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/email/password_reset.txt"
    subject_template_name = "accounts/email/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password-reset-done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password-reset-complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


# --- settings ------------------------------------------------------------------------------------------


def _settings_page(request, *, policies=None, password=None, status: int = 200) -> HttpResponse:
    context = {
        "policies_form": policies or DefaultPoliciesForm.for_user(request.user),
        "password_form": password or PasswordChangeForm(request.user),
    }
    return render(request, "accounts/settings.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def account_settings(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _settings_page(request)
    form = DefaultPoliciesForm.for_user(request.user, data=request.POST)
    if not form.is_valid():
        return _settings_page(request, policies=form, status=400)
    services.user_policies_update(user=request.user, **form.policy())
    messages.success(request, "Default key policies saved. Keys that leave a policy blank use these.")
    return redirect("accounts:settings")


@login_required
@require_POST
def password_change(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, data=request.POST)
    if not form.is_valid():
        return _settings_page(request, password=form, status=400)
    user = form.save()
    update_session_auth_hash(request, user)  # stay logged in here; other sessions end
    messages.success(request, "Password changed.")
    return redirect("accounts:settings")


# --- API keys ------------------------------------------------------------------------------------------


def _own_key(request, key_id) -> ApiKey:
    return get_object_or_404(ApiKey, id=key_id, user=request.user)


@login_required
def key_list(request: HttpRequest) -> HttpResponse:
    from dashboard.reports import month_to_date

    keys = list(ApiKey.objects.filter(user=request.user).order_by("-created_at"))
    month = month_to_date(user_id=request.user.id)
    user = request.user
    rows = []
    for key in keys:
        budget = key.monthly_budget_usd if key.monthly_budget_usd is not None else user.monthly_budget_usd
        spent = month.by_key.get(str(key.id), 0)
        rows.append(
            {
                "key": key,
                "spent": spent,
                "budget": budget,
                "budget_percent": float(spent / budget * 100) if budget else None,
                "rpm": key.rpm or user.rpm,
                "tpm": key.tpm or user.tpm,
                "max_parallel": key.max_parallel or user.max_parallel,
                "allowed_models": key.allowed_models or user.allowed_models,
                "inherits": {
                    name: getattr(key, name) in (None, []) and getattr(user, name) not in (None, [])
                    for name in ("rpm", "tpm", "max_parallel", "allowed_models", "monthly_budget_usd")
                },
            }
        )
    active = [row for row in rows if row["key"].is_active]
    revoked = [row for row in rows if not row["key"].is_active]
    return render(request, "accounts/key_list.html", {"active": active, "revoked": revoked, "month": month})


@login_required
@require_http_methods(["GET", "POST"])
def key_create(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        api_key, raw = services.api_key_create(user=request.user, **form.key_fields())
        request.session[NEW_KEY_SESSION] = {str(api_key.id): raw}
        return redirect("accounts:key-created", key_id=api_key.id)
    return render(request, "accounts/key_form.html", {"form": form, "creating": True})


@never_cache
@login_required
def key_created(request: HttpRequest, key_id) -> HttpResponse:
    """The full key, once: it is dropped from the session as it is shown."""
    api_key = _own_key(request, key_id)
    raw = (request.session.pop(NEW_KEY_SESSION, None) or {}).get(str(api_key.id))
    if raw is None:
        messages.info(
            request, "A key is shown only once, when it is created. Create a new one if it was lost."
        )
        return redirect("accounts:keys")
    context = {"api_key": api_key, "raw_key": raw, "base_url": request.build_absolute_uri("/v1")}
    response = render(request, "accounts/key_created.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def key_edit(request: HttpRequest, key_id) -> HttpResponse:
    api_key = _own_key(request, key_id)
    form = ApiKeyForm.for_key(api_key, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.api_key_update(api_key=api_key, **form.key_fields())
        messages.success(
            request, f"Saved {api_key.name or api_key.prefix}. The gateway uses it within a second."
        )
        return redirect("accounts:keys")
    return render(request, "accounts/key_form.html", {"form": form, "api_key": api_key, "creating": False})


@login_required
@require_http_methods(["GET", "POST"])
def key_revoke(request: HttpRequest, key_id) -> HttpResponse:
    api_key = _own_key(request, key_id)
    if request.method == "POST":
        services.api_key_revoke_owned(user=request.user, key_id=api_key.id)
        messages.success(request, f"Revoked {api_key.prefix}…. Requests with it now get 401.")
        return redirect("accounts:keys")
    return render(request, "accounts/key_revoke.html", {"api_key": api_key})
