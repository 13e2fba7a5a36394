"""Sign-up: email and password checked by Django's validators; the new user is logged in."""

from __future__ import annotations

import pytest

from accounts.models import User

pytestmark = pytest.mark.django_db

GOOD = "a-long-unusual-passphrase-42"


def test_sign_up_creates_the_user_logs_them_in_and_leads_to_a_first_key(client):
    response = client.post(
        "/signup/", {"email": "New.Person@Example.com", "password1": GOOD, "password2": GOOD}
    )
    assert response.status_code == 302 and response["Location"] == "/keys/new/"
    user = User.objects.get(email="new.person@example.com")
    assert user.check_password(GOOD) and user.is_active and not user.is_staff
    assert client.get("/dashboard/").status_code == 200  # logged in


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "too short"),
        ("password123", "too common"),
        ("83749201384756", "entirely numeric"),
        ("new.person-example", "too similar"),
    ],
)
def test_weak_passwords_are_refused_by_djangos_validators(client, password, message):
    response = client.post(
        "/signup/", {"email": "new.person@example.com", "password1": password, "password2": password}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not User.objects.filter(email="new.person@example.com").exists()


def test_an_email_that_has_an_account_is_refused_whatever_its_case(client, user):
    response = client.post("/signup/", {"email": "ALICE@example.com", "password1": GOOD, "password2": GOOD})
    assert "already exists" in response.content.decode()
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_mismatched_passwords_are_refused(client):
    response = client.post("/signup/", {"email": "x@example.com", "password1": GOOD, "password2": GOOD + "x"})
    assert response.status_code == 200 and not User.objects.filter(email="x@example.com").exists()


def test_the_form_labels_every_input(client):
    body = client.get("/signup/").content.decode()
    for field in ("id_email", "id_password1", "id_password2"):
        assert f'for="{field}"' in body and f'id="{field}"' in body


def test_a_logged_in_user_is_sent_to_the_dashboard(web):
    assert web.get("/signup/")["Location"] == "/dashboard/"
