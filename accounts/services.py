"""Writes on users and API keys."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, User


class ApiKeyNotFound(Exception):
    pass


def user_get_or_create(*, email: str) -> tuple[User, bool]:
    email = User.objects.normalize_email(email).lower()
    user = User.objects.filter(email=email).first()
    if user is not None:
        return user, False
    return User.objects.create_user(email=email), True


def api_key_create(*, user: User, name: str = "", **policy) -> tuple[ApiKey, str]:
    """Create a key and return it with the full secret, which is never retrievable again.

    `policy`: rpm, tpm, max_parallel, monthly_budget_usd, allowed_models, expires_at, fallbacks."""
    raw = keys.generate()
    api_key = ApiKey.objects.create(
        user=user, name=name, prefix=keys.display_prefix(raw), digest=keys.digest(raw), **policy
    )
    return api_key, raw


@transaction.atomic
def api_key_revoke(*, key_or_prefix: str) -> ApiKey:
    """Revoke by the full key or by its display prefix (which must name exactly one key)."""
    candidates = ApiKey.objects.select_for_update().filter(digest=keys.digest(key_or_prefix))
    if not candidates:
        candidates = ApiKey.objects.select_for_update().filter(prefix=key_or_prefix)
    found = list(candidates[:2])
    if len(found) != 1:
        raise ApiKeyNotFound(
            "No API key matches that value." if not found else "That prefix matches several keys."
        )
    api_key = found[0]
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def budget_alert_send(*, key_id: str, period: str, threshold: int) -> bool:
    """Email the key's owner that it reached `threshold` % of its monthly budget, once per period."""
    from django.conf import settings
    from django.core.mail import send_mail

    from accounts.models import BudgetAlert

    api_key = ApiKey.objects.select_related("user").filter(id=key_id).first()
    if api_key is None:
        return False
    try:
        with transaction.atomic():
            BudgetAlert.objects.create(api_key=api_key, period=period, threshold=threshold)
    except IntegrityError:
        return False  # already sent for this period
    budget = api_key.monthly_budget_usd or api_key.user.monthly_budget_usd
    reached = "has used its whole" if threshold >= 100 else f"has used {threshold} % of its"
    send_mail(
        subject=f"Neurometric: key {api_key.prefix}… {reached} monthly budget",
        message=(
            f"Your API key {api_key.prefix}… ({api_key.name or 'unnamed'}) {reached} monthly budget of "
            f"${budget} for {period} (UTC).\n"
            + (
                "Requests with this key are refused until the month ends or the budget is raised.\n"
                if threshold >= 100
                else ""
            )
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[api_key.user.email],
    )
    return True


# --- The web dashboard ------------------------------------------------------------------------------------

KEY_EDITABLE_FIELDS = (
    "name",
    "rpm",
    "tpm",
    "max_parallel",
    "monthly_budget_usd",
    "allowed_models",
    "fallbacks",
    "expires_at",
    "cache_ttl_seconds",
    "store_bodies",
)
USER_POLICY_FIELDS = ("rpm", "tpm", "max_parallel", "monthly_budget_usd", "allowed_models")


def user_sign_up(*, email: str, password: str) -> User:
    """A new dashboard user (the form has validated the email and the password)."""
    return User.objects.create_user(email=email, password=password)


def user_policies_update(*, user: User, **policy) -> User:
    """Set the user's default key policies (a key inherits each one it leaves blank)."""
    unknown = set(policy) - set(USER_POLICY_FIELDS)
    if unknown:
        raise TypeError(f"Not a user policy: {', '.join(sorted(unknown))}")
    for name, value in policy.items():
        setattr(user, name, value)
    user.save(update_fields=list(policy))
    return user


def api_key_update(*, api_key: ApiKey, **fields) -> ApiKey:
    """Change a key's name, limits, budget, allowed models, fallbacks or expiry.

    The gateway sees the change within API_KEY_CACHE_SECONDS."""
    unknown = set(fields) - set(KEY_EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Not an editable key field: {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        setattr(api_key, name, value)
    api_key.save(update_fields=list(fields))
    return api_key


@transaction.atomic
def api_key_revoke_owned(*, user: User, key_id) -> ApiKey:
    """Revoke one of `user`'s keys by id; another user's key is ApiKeyNotFound, like an unknown one."""
    api_key = ApiKey.objects.select_for_update().filter(id=key_id, user=user).first()
    if api_key is None:
        raise ApiKeyNotFound("No API key of yours has that id.")
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key
