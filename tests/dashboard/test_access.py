"""Who may see what: every page but the landing page, sign-up, log-in and password reset needs a log-in;
a user reaches only their own keys, requests and recommendations (another user's ids are a 404, exactly
like unknown ones); every form needs its CSRF token."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.dashboard.conftest import recommendation_for

pytestmark = pytest.mark.django_db

PUBLIC = {
    "dashboard:landing",
    "accounts:signup",
    "accounts:login",
    "accounts:password-reset",
    "accounts:password-reset-done",
    "accounts:password-reset-confirm",
    "accounts:password-reset-complete",
}
SAMPLE_ARGS = {
    "key_id": uuid.uuid4(),
    "request_id": "req_unknown",
    "recommendation_id": uuid.uuid4(),
    "action": "dismiss",
    "uidb64": "MQ",
    "token": "set-password",
}


def _web_routes() -> list[tuple[str, URLPattern]]:
    """Every named route of the accounts and dashboard apps, as "namespace:name"."""
    found = []
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace in ("accounts", "dashboard"):
            found += [(f"{entry.namespace}:{p.name}", p) for p in entry.url_patterns if p.name]
    return found


def _url(name: str, pattern: URLPattern) -> str:
    kwargs = {arg: SAMPLE_ARGS[arg] for arg in pattern.pattern.converters}
    return reverse(name, kwargs=kwargs)


ROUTES = _web_routes()


def test_the_route_list_covers_both_apps():
    names = {name for name, _ in ROUTES}
    assert {"dashboard:overview", "dashboard:logs", "accounts:keys", "accounts:settings"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize(("name", "pattern"), ROUTES, ids=[name for name, _ in ROUTES])
def test_every_page_but_the_public_ones_needs_a_log_in(client, name, pattern):
    url = _url(name, pattern)
    response = client.get(url)
    if name in PUBLIC:
        assert response.status_code in (200, 302), url
        if response.status_code == 302:
            assert "/login/" not in response["Location"]
    else:
        # a GET-only page redirects to the log-in; a POST-only one refuses GET before that (405) or after
        assert response.status_code in (302, 405), url
        if response.status_code == 302:
            assert response["Location"].startswith(reverse("accounts:login")), url
        post = client.post(url)
        assert post.status_code in (302, 405), url
        if post.status_code == 302 and name != "accounts:logout":
            assert post["Location"].startswith(reverse("accounts:login")), url


def test_the_admin_is_for_staff_only(web, client_for, user):
    assert web.get("/admin/").status_code == 302  # to the admin's own log-in
    assert web.get("/admin/analytics/requestlog/").status_code == 302
    user.is_staff = user.is_superuser = True
    user.save()
    assert client_for(user).get("/admin/analytics/requestlog/").status_code == 200


def test_another_users_key_is_a_404_on_every_key_page(web, other_traffic):
    key_id = other_traffic.key.id
    for name in ("accounts:key-edit", "accounts:key-revoke", "accounts:key-created"):
        url = reverse(name, kwargs={"key_id": key_id})
        assert web.get(url).status_code == 404, name
        assert web.post(url, {"name": "stolen"}).status_code in (404, 405), name
    other_traffic.key.refresh_from_db()
    assert other_traffic.key.revoked_at is None and other_traffic.key.name == "mallory-secret-key"


def test_another_users_request_is_a_404(web, other_traffic):
    request_id = other_traffic.rows[0].request_id
    assert web.get(reverse("dashboard:log-detail", args=[request_id])).status_code == 404


def test_another_users_recommendation_is_a_404_for_every_action(web, other):
    theirs = recommendation_for(other)
    for action in ("apply", "dismiss", "evaluate", "undo"):
        url = reverse("dashboard:recommendation-action", args=[theirs.id, action])
        assert web.post(url).status_code == 404, action
    theirs.refresh_from_db()
    assert theirs.status == "new"


def test_no_page_shows_another_users_data(web, traffic, other_traffic):
    """Every data page, as the owner: the outsider's key name, prefix and request ids never appear."""
    secrets = [
        other_traffic.key.name,
        other_traffic.key.prefix,
        *(row.request_id for row in other_traffic.rows),
    ]
    pages = [
        reverse("dashboard:overview"),
        reverse("dashboard:overview") + "?range=30d",
        reverse("dashboard:costs") + "?range=30d",
        reverse("dashboard:performance") + "?range=30d",
        reverse("dashboard:logs") + "?range=30d",
        reverse("dashboard:recommendations"),
        reverse("accounts:keys"),
        reverse("accounts:settings"),
    ]
    for page in pages:
        body = web.get(page).content.decode()
        for secret in secrets:
            assert secret not in body, (page, secret)


def test_filtering_by_another_users_key_shows_nothing_of_theirs(web, traffic, other_traffic):
    response = web.get(reverse("dashboard:logs"), {"api_key_id": str(other_traffic.key.id), "range": "30d"})
    assert response.status_code == 200
    assert "api_key_id" in response.context["form"].errors  # not one of the owner's keys
    body = response.content.decode()
    assert not any(row.request_id in body for row in other_traffic.rows)


def test_forms_need_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    for url, data in [
        (reverse("accounts:key-create"), {"name": "x"}),
        (reverse("accounts:settings"), {"rpm": "10"}),
        (reverse("accounts:password-change"), {}),
        (reverse("accounts:logout"), {}),
    ]:
        assert client.post(url, data).status_code == 403, url
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post(reverse("accounts:signup"), {"email": "a@b.c"}).status_code == 403
    assert anonymous.post(reverse("accounts:login"), {"username": "a@b.c"}).status_code == 403


def test_every_form_on_the_pages_carries_a_csrf_token(web, traffic, user):
    recommendation_for(user)
    for url in [
        reverse("accounts:key-create"),
        reverse("accounts:settings"),
        reverse("accounts:key-revoke", args=[traffic.key.id]),
        reverse("accounts:key-edit", args=[traffic.key.id]),
        reverse("dashboard:recommendations"),
        reverse("dashboard:overview"),
    ]:
        body = web.get(url).content.decode()
        posts = body.count('method="post"')
        assert body.count('name="csrfmiddlewaretoken"') == posts, url
