from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.services import api_key_create, user_get_or_create


class Command(BaseCommand):
    help = "Create an API key for EMAIL (creating the user if missing); the key is the last line of stdout."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="")

    def handle(self, *args, email: str, name: str, **options):
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"Not an email address: {email!r}") from exc
        user, created = user_get_or_create(email=email)
        api_key, raw = api_key_create(user=user, name=name)
        if created:
            self.stdout.write(f"Created user {user.email}")
        self.stdout.write(f"Created API key {api_key.prefix}… ({api_key.id}); it is shown only once:")
        self.stdout.write(raw)
