"""Account settings: default key policies (inherited by keys that leave a policy blank) and the password."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.services import api_key_create
from gateway.auth import _load
from tests.dashboard.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_the_page_shows_both_forms(web, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        response = web.get("/settings/")
    body = response.content.decode()
    assert response.status_code == 200
    for field in ("id_rpm", "id_tpm", "id_max_parallel", "id_monthly_budget_usd", "id_allowed_models"):
        assert f'for="{field}"' in body
    assert 'for="id_old_password"' in body


def test_saving_default_policies_sets_them_on_the_user(web, user):
    response = web.post(
        "/settings/",
        {
            "rpm": "120",
            "tpm": "",
            "max_parallel": "4",
            "monthly_budget_usd": "50.00",
            "allowed_models": "gpt-4o*, claude-*",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.rpm, user.tpm, user.max_parallel) == (120, None, 4)
    assert user.monthly_budget_usd == Decimal("50.00")
    assert user.allowed_models == ["gpt-4o*", "claude-*"]


def test_a_key_inherits_the_defaults_it_leaves_blank(web, user):
    api_key, raw = api_key_create(user=user, name="k", rpm=10)
    web.post("/settings/", {"rpm": "99", "max_parallel": "3", "allowed_models": "gpt-4o"})
    principal = _load(api_key.digest)
    assert principal.policy.rpm == 10  # the key's own
    assert principal.policy.max_parallel == 3  # inherited
    assert principal.policy.allowed_models == ("gpt-4o",)


def test_invalid_policies_are_refused_with_the_reason(web, user):
    response = web.post("/settings/", {"rpm": "0", "monthly_budget_usd": "-1", "allowed_models": "gpt 4o"})
    assert response.status_code == 400
    form = response.context["policies_form"]
    assert set(form.errors) == {"rpm", "monthly_budget_usd", "allowed_models"}
    user.refresh_from_db()
    assert user.rpm is None


def test_clearing_a_policy_removes_it(web, user):
    user.rpm = 30
    user.save()
    web.post("/settings/", {"rpm": ""})
    user.refresh_from_db()
    assert user.rpm is None


def test_changing_the_password_keeps_this_session(web, user):
    new = "a-brand-new-passphrase-9"
    response = web.post(
        "/settings/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)
    assert web.get("/settings/").status_code == 200


def test_a_wrong_old_password_is_refused(web, user):
    new = "a-brand-new-passphrase-9"
    response = web.post(
        "/settings/password/", {"old_password": "nope", "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 400
    assert "old password was entered incorrectly" in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
