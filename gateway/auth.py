"""Bearer-key authentication for /v1, with a short in-process cache so a warm key costs no query.

A process trusts what it learnt about a key for API_KEY_CACHE_SECONDS (default 1 s): a revoked key stops
working on every process within that time, and a busy key costs one indexed query per process per second.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from accounts import keys
from accounts.models import ApiKey
from gateway.db import released
from gateway.errors import InvalidApiKey
from gateway.models import RoutingRule
from gateway.policies import POLICY_FIELDS, Policy, merge

_MAX_ENTRIES = 50_000
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """Who is calling: what the gateway needs of the key and its owner, without ORM objects."""

    key_id: uuid.UUID
    user_id: int
    prefix: str
    fallbacks: tuple[str, ...] = ()
    policy: Policy = field(default_factory=Policy)
    expires_at: datetime | None = None
    cache_ttl_seconds: int | None = None  # the response cache's TTL for this key; None: off
    store_bodies: bool = False  # keep this key's bodies on the log (metering), for shadow evaluations
    # The key's active RoutingRules as (from_model, task_type, to_model, rule_id) (gateway.rules).
    routing_rules: tuple[tuple[str, str, str, int], ...] = ()

    @property
    def is_authenticated(self) -> bool:
        return True


class KeyCache:
    """digest → what the key is, for `ttl` seconds. One request refreshes an expired entry; the requests
    that arrive meanwhile keep using the entry they had (for the one query's time), instead of all asking the
    database at once."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[str, tuple[float, KeyPrincipal | None]] = {}
        self._refreshing: set[str] = set()

    def lookup(self, raw_key: str) -> KeyPrincipal | None:
        digest = keys.digest(raw_key)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and (hit[0] > now or digest in self._refreshing):
            return hit[1]
        self._refreshing.add(digest)
        try:
            with released():
                principal = _load(digest)
        except DatabaseError:
            # The database is unreachable (a restart, a failover): a key seen lately keeps working for up
            # to API_KEY_STALE_SECONDS — revocation cannot be checked now anyway; an unknown key cannot.
            if hit is not None and now - hit[0] < settings.API_KEY_STALE_SECONDS:
                log.warning("Database unreachable: serving key %s… from the cache", hit[1] and hit[1].prefix)
                return hit[1]
            raise
        finally:
            self._refreshing.discard(digest)
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + self.ttl, principal)
        return principal

    def clear(self) -> None:
        self._entries.clear()


_USER_POLICY = tuple(f"user__{name}" for name in POLICY_FIELDS)


def _load(digest: str) -> KeyPrincipal | None:
    row = (
        ApiKey.objects.filter(digest=digest, revoked_at__isnull=True, user__is_active=True)
        .values(
            "id",
            "user_id",
            "prefix",
            "digest",
            "fallbacks",
            "expires_at",
            "cache_ttl_seconds",
            "store_bodies",
            *POLICY_FIELDS,
            *_USER_POLICY,
        )
        .first()
    )
    if row is None or not hmac.compare_digest(row["digest"], digest):
        return None
    return KeyPrincipal(
        key_id=row["id"],
        user_id=row["user_id"],
        prefix=row["prefix"],
        fallbacks=tuple(str(m) for m in row["fallbacks"] or () if m),
        policy=merge(row, {name: row[f"user__{name}"] for name in POLICY_FIELDS}),
        expires_at=row["expires_at"],
        cache_ttl_seconds=row["cache_ttl_seconds"],
        store_bodies=row["store_bodies"],
        routing_rules=tuple(
            RoutingRule.objects.filter(api_key_id=row["id"], is_active=True)
            .order_by("-created_at", "-id")
            .values_list("from_model", "task_type", "to_model", "id")
        ),
    )


key_cache = KeyCache(ttl=settings.API_KEY_CACHE_SECONDS)


def bearer_key(authorization: str | None) -> str:
    if not authorization:
        raise InvalidApiKey(
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    scheme, _, raw = authorization.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise InvalidApiKey("The Authorization header must be 'Bearer YOUR_KEY'.")
    return raw


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request) -> tuple[KeyPrincipal, KeyPrincipal]:
        raw = bearer_key(request.META.get("HTTP_AUTHORIZATION"))
        principal = key_cache.lookup(raw) if keys.looks_like_key(raw) else None
        if principal is None:
            raise InvalidApiKey(f"Incorrect API key provided: {_masked(raw)}.")
        if principal.expires_at is not None and principal.expires_at <= timezone.now():
            raise InvalidApiKey("This API key has expired.", code="api_key_expired")
        return principal, principal

    def authenticate_header(self, request) -> str:
        return "Bearer"


def _masked(raw: str) -> str:
    return raw[:6] + "*" * 4 if len(raw) > 10 else "*" * 4
