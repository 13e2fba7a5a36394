"""Log-in and log-out, and the throttle: 5 failures in 15 minutes, per address or per email, block more."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts import throttle
from tests.dashboard.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def log_in(client: Client, email: str, password: str, ip: str = "10.0.0.1"):
    return client.post("/login/", {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_log_in_with_email_and_password_goes_to_the_overview(client, user):
    response = log_in(client, "alice@example.com", PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/dashboard/"


def test_log_in_follows_next_but_only_on_this_site(client, user):
    response = client.post(
        "/login/?next=/keys/", {"username": user.email, "password": PASSWORD, "next": "/keys/"}
    )
    assert response["Location"] == "/keys/"
    client.post("/logout/")
    evil = client.post(
        "/login/", {"username": user.email, "password": PASSWORD, "next": "https://evil.test/"}
    )
    assert evil["Location"] == "/dashboard/"


def test_a_wrong_password_says_so_without_telling_which_part_was_wrong(client, user):
    response = log_in(client, "alice@example.com", "nope")
    assert response.status_code == 200
    assert "That email and password do not match an account." in response.content.decode()


def test_five_failures_for_one_email_block_it_even_with_the_right_password(client, user):
    for attempt in range(throttle.MAX_FAILURES):
        assert log_in(client, user.email, f"wrong-{attempt}", ip=f"10.0.0.{attempt}").status_code == 200
    response = log_in(client, user.email, PASSWORD, ip="10.9.9.9")  # a new address does not help
    assert response.status_code == 429
    assert "Too many failed log-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_five_failures_from_one_address_block_it_for_every_email(client, user, other):
    for attempt in range(throttle.MAX_FAILURES):
        log_in(client, f"someone{attempt}@example.com", "guess", ip="192.0.2.7")
    assert log_in(client, other.email, PASSWORD, ip="192.0.2.7").status_code == 429
    assert log_in(client, other.email, PASSWORD, ip="192.0.2.8").status_code == 302


def test_the_block_lifts_when_the_window_ends(client, user, monkeypatch):
    for _ in range(throttle.MAX_FAILURES):
        log_in(client, user.email, "wrong")
    assert log_in(client, user.email, PASSWORD).status_code == 429
    from django.core.cache import cache

    for key in throttle._keys(ip="10.0.0.1", email=user.email):  # what expiry does after 15 minutes
        cache.delete(key)
    assert log_in(client, user.email, PASSWORD).status_code == 302


def test_a_success_clears_the_emails_count(client, user):
    for _ in range(throttle.MAX_FAILURES - 1):
        log_in(client, user.email, "wrong", ip="10.1.1.1")
    assert log_in(client, user.email, PASSWORD, ip="10.2.2.2").status_code == 302
    client.post("/logout/")
    log_in(client, user.email, "wrong", ip="10.3.3.3")
    assert log_in(client, user.email, PASSWORD, ip="10.4.4.4").status_code == 302


def test_an_inactive_user_cannot_log_in(client, user):
    user.is_active = False
    user.save()
    assert log_in(client, user.email, PASSWORD).status_code == 200


def test_log_out_is_a_post_and_ends_the_session(web):
    assert web.get("/logout/").status_code == 405
    response = web.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert web.get("/dashboard/").status_code == 302
