"""The landing page: public, says what Neurometric is, and gives a quick start with this server's URL."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_landing_is_public_and_uses_this_servers_base_url(client, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        response = client.get("/", HTTP_HOST="localhost:8123")
    body = response.content.decode()
    assert response.status_code == 200
    assert "drop-in replacement for the OpenAI API" in body
    assert "http://localhost:8123/v1" in body
    assert 'href="/signup/"' in body and 'href="/login/"' in body


def test_landing_behind_a_tls_proxy_shows_https(client, settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    body = client.get("/", HTTP_HOST="api.example.com", HTTP_X_FORWARDED_PROTO="https").content.decode()
    assert "https://api.example.com/v1" in body


def test_logged_in_visitors_get_a_link_to_their_dashboard(web):
    body = web.get("/").content.decode()
    assert 'href="/dashboard/"' in body and "Open dashboard" in body
