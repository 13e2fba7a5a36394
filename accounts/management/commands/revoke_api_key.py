from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.services import ApiKeyNotFound, api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key, given the full key or its display prefix (nm-xxxxxxxx)."

    def add_arguments(self, parser):
        parser.add_argument("key_or_prefix")

    def handle(self, *args, key_or_prefix: str, **options):
        try:
            api_key = api_key_revoke(key_or_prefix=key_or_prefix)
        except ApiKeyNotFound as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Revoked {api_key.prefix}… of {api_key.user.email}")
