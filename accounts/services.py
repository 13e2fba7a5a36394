"""Writes on users and API keys."""

from __future__ import annotations

from django.db import transaction
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


def api_key_create(*, user: User, name: str = "") -> tuple[ApiKey, str]:
    """Create a key and return it with the full secret, which is never retrievable again."""
    raw = keys.generate()
    api_key = ApiKey.objects.create(
        user=user, name=name, prefix=keys.display_prefix(raw), digest=keys.digest(raw)
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
