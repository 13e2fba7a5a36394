"""API keys: their shape, what is stored, and the create_api_key / revoke_api_key commands."""

from __future__ import annotations

import hashlib
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import keys
from accounts.models import ApiKey, User
from accounts.services import api_key_create, user_get_or_create
from tests.conftest import ApiClient

KEY_SHAPE = re.compile(r"^nm-[A-Za-z0-9_-]+$")


# --- the key itself ---------------------------------------------------------------------------------------


def test_generated_keys_start_with_nm_and_carry_at_least_256_bits():
    key = keys.generate()
    assert key.startswith("nm-")
    assert KEY_SHAPE.match(key)
    secret = key[len("nm-") :]
    # URL-safe base64: 6 bits per character; 43 characters carry 32 bytes.
    assert len(secret) * 6 >= 32 * 8


def test_generated_keys_are_unique():
    generated = {keys.generate() for _ in range(2000)}
    assert len(generated) == 2000
    assert len({keys.display_prefix(k) for k in generated}) > 1990


def test_display_prefix_is_nm_and_eight_characters():
    key = keys.generate()
    assert keys.display_prefix(key) == key[:11]
    assert len(keys.display_prefix(key)) == 11


def test_digest_is_sha256_hex_of_the_full_key():
    key = keys.generate()
    assert keys.digest(key) == hashlib.sha256(key.encode()).hexdigest()


@pytest.mark.django_db
def test_only_the_digest_and_display_prefix_are_stored(owner):
    api_key, raw = api_key_create(user=owner, name="ci")

    stored = ApiKey.objects.filter(pk=api_key.pk).values().get()
    for column, value in stored.items():
        assert raw not in str(value), column
        assert raw[len("nm-") :] not in str(value), column
    assert stored["digest"] == hashlib.sha256(raw.encode()).hexdigest()
    assert stored["prefix"] == raw[:11]
    assert stored["name"] == "ci"


# --- create_api_key --------------------------------------------------------------------------------------


def run(command: str, *args: str) -> list[str]:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.mark.django_db
def test_create_api_key_creates_the_user_and_prints_the_key_alone_on_the_last_line():
    lines = run("create_api_key", "--email", "New.Person@Example.com", "--name", "laptop")

    key = lines[-1]
    assert KEY_SHAPE.match(key) and len(key) == len(keys.generate())
    user = User.objects.get(email="new.person@example.com")
    api_key = ApiKey.objects.get(user=user)
    assert api_key.name == "laptop"
    assert api_key.digest == keys.digest(key)
    assert any("Created user" in line for line in lines[:-1])
    assert not user.has_usable_password()


@pytest.mark.django_db
def test_the_printed_key_authenticates_against_the_api():
    key = run("create_api_key", "--email", "cli@example.com", "--name", "cli")[-1]

    response = ApiClient(key).get("/v1/models")
    assert response.status_code == 200


@pytest.mark.django_db
def test_create_api_key_again_for_the_same_email_reuses_the_user():
    first = run("create_api_key", "--email", "twice@example.com", "--name", "one")[-1]
    second_lines = run("create_api_key", "--email", "TWICE@example.com", "--name", "two")
    second = second_lines[-1]

    assert first != second
    assert User.objects.filter(email="twice@example.com").count() == 1
    assert User.objects.count() == 1
    user = User.objects.get()
    assert sorted(user.api_keys.values_list("name", flat=True)) == ["one", "two"]
    assert not any("Created user" in line for line in second_lines)
    assert ApiClient(first).get("/v1/models").status_code == 200
    assert ApiClient(second).get("/v1/models").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "two@@example.com", ""])
def test_create_api_key_with_an_invalid_email_fails_and_creates_nothing(email):
    with pytest.raises(CommandError):
        run("create_api_key", "--email", email)
    assert User.objects.count() == 0
    assert ApiKey.objects.count() == 0


def test_create_api_key_requires_the_email_option():
    with pytest.raises(CommandError):
        run("create_api_key", "--name", "x")


# --- revoke_api_key --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_revoke_api_key_by_full_key_revokes_it(api, owner_key):
    api_key, raw = owner_key
    assert api.get("/v1/models").status_code == 200

    lines = run("revoke_api_key", raw)

    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and not api_key.is_active
    assert api_key.prefix in lines[-1] and "owner@example.com" in lines[-1]
    assert raw not in "\n".join(lines)
    assert api.get("/v1/models").status_code == 401


@pytest.mark.django_db
def test_revoke_api_key_by_display_prefix_revokes_it(api, owner_key):
    api_key, _ = owner_key

    run("revoke_api_key", api_key.prefix)

    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert api.get("/v1/models").status_code == 401


@pytest.mark.django_db
def test_revoking_one_key_leaves_the_users_other_keys_working(owner):
    _, first = api_key_create(user=owner, name="a")
    _, second = api_key_create(user=owner, name="b")

    run("revoke_api_key", first)

    assert ApiClient(first).get("/v1/models").status_code == 401
    assert ApiClient(second).get("/v1/models").status_code == 200


@pytest.mark.django_db
def test_revoking_twice_keeps_the_first_revocation_time(owner_key):
    api_key, raw = owner_key
    run("revoke_api_key", raw)
    api_key.refresh_from_db()
    first = api_key.revoked_at

    run("revoke_api_key", raw)
    api_key.refresh_from_db()
    assert api_key.revoked_at == first


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["nm-zzzzzzzz", "nm-" + "Z" * 43, "nothing"])
def test_revoke_api_key_with_an_unknown_key_or_prefix_fails(owner_key, value):
    with pytest.raises(CommandError):
        run("revoke_api_key", value)
    owner_key[0].refresh_from_db()
    assert owner_key[0].revoked_at is None


@pytest.mark.django_db
def test_revoke_api_key_with_a_prefix_shared_by_several_keys_fails_and_revokes_none(owner):
    for i in range(2):
        ApiKey.objects.create(user=owner, prefix="nm-samesame", digest=f"{i:064x}")

    with pytest.raises(CommandError, match="several"):
        run("revoke_api_key", "nm-samesame")
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0


# --- admin ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_key_list_does_not_show_the_digest(client, owner_key):
    api_key, raw = owner_key
    admin = User.objects.create_superuser(email="admin@example.com", password="pw-for-tests")
    client.force_login(admin)

    response = client.get("/admin/accounts/apikey/")

    assert response.status_code == 200
    html = response.content.decode()
    assert api_key.prefix in html
    assert api_key.digest not in html
    assert raw not in html


@pytest.mark.django_db
def test_admin_cannot_add_a_key_where_the_secret_could_not_be_shown(client):
    admin = User.objects.create_superuser(email="admin@example.com", password="pw-for-tests")
    client.force_login(admin)
    assert client.get("/admin/accounts/apikey/add/").status_code == 403


@pytest.mark.django_db
def test_user_get_or_create_normalises_the_email():
    user, created = user_get_or_create(email="Mixed@Example.COM")
    again, created_again = user_get_or_create(email="mixed@example.com")
    assert created and not created_again and user == again
    assert user.email == "mixed@example.com"
