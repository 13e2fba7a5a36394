"""The embedded default's SQLite backend keeps closed connections for the next request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from accounts.models import User

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the embedded default's backend"),
]


def _raw():
    connection.ensure_connection()
    return connection.connection


def test_a_closed_connection_is_taken_again_by_the_next_request():
    first = _raw()
    connection.close()
    assert _raw() is first
    assert User.objects.count() == 0  # and it works: the same file, autocommit restored
    User.objects.create(email="kept@example.com")
    connection.close()
    assert User.objects.filter(email="kept@example.com").exists()


def test_a_connection_closed_inside_a_transaction_is_not_kept():
    inside = _raw()
    if not inside.in_transaction:
        inside.execute("BEGIN")
    inside.execute("CREATE TEMP TABLE scratch (x)")
    assert inside.in_transaction
    connection.close()  # closed for real (rolled back), never handed to the next request
    assert _raw() is not inside


@override_settings(SQLITE_KEEP_CONNECTIONS=0)
def test_keeping_none_closes_every_connection():
    first = _raw()
    connection.close()
    assert _raw() is not first
