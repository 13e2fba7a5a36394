"""`manage.py check --deploy` is clean with production settings, which come from the environment."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_production_settings():
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DEBUG", "DJANGO_SETTINGS_MODULE") and not key.startswith("SECURE_")
    }
    env.update(
        SECRET_KEY=secrets.token_urlsafe(64),
        SECURE_SSL_REDIRECT="true",
        ALLOWED_HOSTS="neurometric.example.com",
        DJANGO_SETTINGS_MODULE="neurometric.settings",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING", "--tag", "security"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_server_refuses_to_start_without_a_secret_key_when_debug_is_off():
    env = {key: value for key, value in os.environ.items() if key not in ("SECRET_KEY", "DEBUG")}
    env.update(DJANGO_SETTINGS_MODULE="neurometric.settings", NEUROMETRIC_ENV_FILE="")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr
