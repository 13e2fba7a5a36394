"""docker-compose.yml cannot run here (no Docker engine): a test keeps it honest against the Procfile."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_every_procfile_process_runs_in_compose_with_the_same_command():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, command in _procfile().items():
        assert compose["services"][name]["command"] == command, name


def test_compose_shares_one_postgres_and_one_redis_and_scales_the_web_nodes():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in _procfile():
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:")
    assert services["web"]["deploy"]["replicas"] > 1
    assert "web:8000" in (ROOT / "deploy" / "nginx.conf").read_text()
    assert services["migrate"]["command"] == "python manage.py migrate --noinput"
