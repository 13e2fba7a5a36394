"""create_api_key's policy flags: --rpm --tpm --parallel --monthly-budget --models --expires."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey

pytestmark = pytest.mark.django_db


def test_every_policy_flag_lands_on_the_key():
    out = StringIO()
    call_command(
        "create_api_key",
        "--email",
        "ops@example.com",
        "--rpm",
        "20",
        "--tpm",
        "40000",
        "--parallel",
        "3",
        "--monthly-budget",
        "12.5",
        "--models",
        "gpt-4o-mini, claude-*",
        "--expires",
        "2027-01-31",
        stdout=out,
    )
    raw = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get(prefix=raw[:11])
    assert (key.rpm, key.tpm, key.max_parallel) == (20, 40000, 3)
    assert key.monthly_budget_usd == Decimal("12.50")
    assert key.allowed_models == ["gpt-4o-mini", "claude-*"]
    assert key.expires_at == datetime(2027, 1, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    "flags",
    [["--rpm", "0"], ["--monthly-budget", "ten"], ["--expires", "31/01/2027"], ["--monthly-budget", "-1"]],
)
def test_bad_policy_values_are_refused(flags):
    with pytest.raises(CommandError):
        call_command("create_api_key", "--email", "ops@example.com", *flags, stdout=StringIO())
