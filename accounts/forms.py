"""Forms of the web pages: sign-up, log-in, default key policies and API keys."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.utils import timezone

from accounts.models import ApiKey, User
from gateway.catalog import get_catalog


class SignUpForm(UserCreationForm):
    """Email and password (twice), checked by Django's password validators."""

    class Meta:
        model = User
        fields = ("email",)
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})}

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this email already exists. Log in instead.")
        return email


class LogInForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account.",
    }


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]


class ModelListField(forms.CharField):
    """Model ids (or patterns) as comma- or line-separated text; a list, or None when empty."""

    def __init__(self, *, known_only: bool = False, **kwargs):
        self.known_only = known_only
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(value)
        return value

    def to_python(self, value):
        items = _split_list(super().to_python(value) or "")
        for item in items:
            if " " in item or len(item) > 200:
                raise forms.ValidationError(f"“{item}” is not a model id.")
            if self.known_only and "/" not in item and get_catalog().get(item) is None:
                raise forms.ValidationError(f"“{item}” is not a model in the catalogue.")
        return items or None


class PolicyFields(forms.Form):
    """The key policies: on a user the defaults, on a key its own values (blank: inherit)."""

    rpm = forms.IntegerField(label="Requests per minute", min_value=1, required=False)
    tpm = forms.IntegerField(label="Tokens per minute", min_value=1, required=False)
    max_parallel = forms.IntegerField(label="Parallel requests", min_value=1, required=False)
    monthly_budget_usd = forms.DecimalField(
        label="Monthly budget (USD)", min_value=0, max_digits=12, decimal_places=2, required=False
    )
    allowed_models = ModelListField(
        label="Allowed models",
        help_text="Model ids or patterns such as gpt-4o* or claude-*, comma-separated. Empty: every model.",
    )

    POLICY_FIELDS = ("rpm", "tpm", "max_parallel", "monthly_budget_usd", "allowed_models")

    def policy(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.POLICY_FIELDS}


class DefaultPoliciesForm(PolicyFields):
    @classmethod
    def for_user(cls, user: User, data=None) -> DefaultPoliciesForm:
        initial = {name: getattr(user, name) for name in cls.POLICY_FIELDS}
        return cls(data=data, initial=initial)


class ApiKeyForm(PolicyFields):
    name = forms.CharField(
        label="Name",
        max_length=100,
        required=False,
        help_text="What uses this key, e.g. “support bot (production)”.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    fallbacks = ModelListField(
        known_only=True,
        label="Fallback models",
        help_text="Tried in order when the requested model fails, comma-separated.",
    )
    cache_ttl_seconds = forms.IntegerField(
        label="Response cache (seconds)",
        min_value=1,
        max_value=30 * 86400,
        required=False,
        help_text="Answer identical requests from the cache for this long, at no cost. Empty: off.",
    )
    store_bodies = forms.BooleanField(
        label="Keep request and response bodies",
        required=False,
        help_text="Stored redacted on each log row; shadow evaluations replay them.",
    )
    expires_on = forms.DateField(
        label="Expires on",
        required=False,
        help_text="The key stops working at the start of this day (UTC). Empty: never.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    field_order = ["name", "rpm", "tpm", "max_parallel", "monthly_budget_usd", "allowed_models", "fallbacks"]

    @classmethod
    def for_key(cls, api_key: ApiKey, data=None) -> ApiKeyForm:
        names = ("name", "fallbacks", "cache_ttl_seconds", "store_bodies", *cls.POLICY_FIELDS)
        initial = {name: getattr(api_key, name) for name in names}
        if api_key.expires_at is not None:
            initial["expires_on"] = api_key.expires_at.astimezone(UTC).date()
        form = cls(data=data, initial=initial)
        form.existing_expiry = api_key.expires_at
        return form

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        if day is None:
            return None
        unchanged = getattr(self, "existing_expiry", None)
        if unchanged is not None and unchanged.astimezone(UTC).date() == day:
            return day
        if day <= timezone.now().astimezone(UTC).date():
            raise forms.ValidationError("Choose a day after today (UTC).")
        return day

    def key_fields(self) -> dict:
        """The values for api_key_create / api_key_update."""
        day = self.cleaned_data["expires_on"]
        return {
            "name": self.cleaned_data["name"],
            **self.policy(),
            "fallbacks": self.cleaned_data["fallbacks"] or [],
            "cache_ttl_seconds": self.cleaned_data["cache_ttl_seconds"],
            "store_bodies": self.cleaned_data["store_bodies"],
            "expires_at": datetime.combine(day, time.min, tzinfo=UTC) if day else None,
        }
