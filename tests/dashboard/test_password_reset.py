"""Password reset by email, with Django's views and tokens and our templates."""

from __future__ import annotations

import re

import pytest
from django.core import mail

pytestmark = pytest.mark.django_db


def test_reset_sends_a_one_time_link_that_sets_a_new_password(client, user):
    response = client.post("/password-reset/", {"email": "alice@example.com"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"] and "Reset your Neurometric password" in message.subject
    link = re.search(r"http://testserver(/password-reset/\S+/)", message.body).group(1)

    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200 and "Choose a new password" in form_page.content.decode()
    new = "an-even-better-passphrase-7"
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    user.refresh_from_db()
    assert user.check_password(new)

    again = client.get(link, follow=True)
    assert "This link has expired" in again.content.decode()


def test_an_unknown_email_looks_the_same_and_sends_nothing(client):
    response = client.post("/password-reset/", {"email": "nobody@example.com"})
    assert response["Location"] == "/password-reset/sent/"
    assert mail.outbox == []


def test_the_pages_render(client):
    for url in ("/password-reset/", "/password-reset/sent/", "/password-reset/done/"):
        assert client.get(url).status_code == 200
