from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.services import api_key_create, user_get_or_create


def _budget(value: str) -> Decimal:
    try:
        budget = Decimal(value)
    except InvalidOperation as exc:
        raise CommandError(f"--monthly-budget must be an amount in USD, not {value!r}") from exc
    if budget < 0:
        raise CommandError("--monthly-budget must not be negative")
    return budget.quantize(Decimal("0.01"))


def _expiry(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise CommandError(f"--expires must be a date YYYY-MM-DD, not {value!r}") from exc


class Command(BaseCommand):
    help = "Create an API key for EMAIL (creating the user if missing); the key is the last line of stdout."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="")
        parser.add_argument("--rpm", type=int, help="requests per minute")
        parser.add_argument("--tpm", type=int, help="tokens per minute (prompt + completion)")
        parser.add_argument("--parallel", type=int, help="requests at the same time")
        parser.add_argument("--monthly-budget", help="USD per calendar month (UTC)")
        parser.add_argument("--models", help="allowed model ids or patterns, comma-separated")
        parser.add_argument(
            "--expires", help="the key stops working at the start of this day (UTC), YYYY-MM-DD"
        )

    def handle(self, *args, email: str, name: str, **options):
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"Not an email address: {email!r}") from exc
        for flag in ("rpm", "tpm", "parallel"):
            if options[flag] is not None and options[flag] < 1:
                raise CommandError(f"--{flag} must be a positive whole number")
        policy = {
            "rpm": options["rpm"],
            "tpm": options["tpm"],
            "max_parallel": options["parallel"],
            "monthly_budget_usd": _budget(options["monthly_budget"]) if options["monthly_budget"] else None,
            "allowed_models": [m.strip() for m in options["models"].split(",") if m.strip()]
            if options["models"]
            else None,
            "expires_at": _expiry(options["expires"]) if options["expires"] else None,
        }
        user, created = user_get_or_create(email=email)
        api_key, raw = api_key_create(user=user, name=name, **policy)
        if created:
            self.stdout.write(f"Created user {user.email}")
        limits = ", ".join(f"{k}={v}" for k, v in policy.items() if v not in (None, []))
        self.stdout.write(
            f"Created API key {api_key.prefix}… ({api_key.id}){'; ' + limits if limits else ''}"
        )
        self.stdout.write("It is shown only once:")
        self.stdout.write(raw)
