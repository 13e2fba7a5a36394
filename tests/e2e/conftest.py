"""End-to-end harness: the real server (gunicorn + gevent, as in the Procfile) on the test database, in
front of the project's fake providers over real HTTP.

Tests here use `transactional_db`, so what they create is committed and the server process sees it. The
server writes its log rows in the background, as in production; `wait_for_log` polls for them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from accounts.services import api_key_create, user_get_or_create
from tests.fakes import FakeProvider

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "sk-fake-provider-key-e2e-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if "sqlite" in db["ENGINE"]:
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class LoggedProcess:
    """A child process of the tests (the server, a Celery worker) with its output in a log file."""

    def __init__(self, log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def spawn(self, argv: list[str]) -> None:
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class LiveServer(LoggedProcess):
    def __init__(self, fake: FakeProvider, log_path: Path, **overrides: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.endswith(("_API_KEY", "_BASE_URL")) and key not in ("REQUEST_LOG_MODE",)
        }
        env.update(
            DATABASE_URL=_database_url(),
            SECRET_KEY="e2e-secret-key",
            DJANGO_SETTINGS_MODULE="neurometric.settings",
            PORT=str(self.port),
            HOST="127.0.0.1",
            WEB_CONCURRENCY="2",
            WEB_GRACEFUL_TIMEOUT="5",
            OPENAI_API_KEY=PROVIDER_KEY,
            OPENAI_BASE_URL=f"{fake.url}/v1",
            ANTHROPIC_API_KEY=PROVIDER_KEY,
            ANTHROPIC_BASE_URL=fake.url,
            GEMINI_API_KEY=PROVIDER_KEY,
            GEMINI_BASE_URL=fake.url,
            MISTRAL_API_KEY=PROVIDER_KEY,
            MISTRAL_BASE_URL=f"{fake.url}/v1",
            GROQ_API_KEY=PROVIDER_KEY,
            GROQ_BASE_URL=f"{fake.url}/v1",
            TOGETHER_API_KEY=PROVIDER_KEY,
            TOGETHER_BASE_URL=f"http://127.0.0.1:{_free_port()}/v1",  # a provider that is down
            OLLAMA_BASE_URL=f"{fake.url}/v1",
            UPSTREAM_READ_TIMEOUT="5",
            REQUEST_LOG_SPOOL_DIR=str(log_path.parent / "spool"),
        )
        if settings.REDIS_URL:
            env["REDIS_URL"] = settings.REDIS_URL
        env.update(overrides)
        super().__init__(log_path, {k: v for k, v in env.items() if v is not None})

    def start(self) -> LiveServer:
        self.spawn(
            [sys.executable, "-m", "gunicorn", "neurometric.wsgi:application", "--config", "gunicorn.conf.py"]
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()}")
            try:
                requests.get(f"{self.url}/v1/models", timeout=5)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")


@pytest.fixture
def transactional_db(transactional_db):
    """pytest-django's, plus: before the database is emptied at the end of a test, let the servers' log
    writers finish what the test's last requests queued. On PostgreSQL the TRUNCATE of the teardown would
    otherwise deadlock with a COPY of log rows (each waits for a table the other holds)."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    time.sleep(0.1)  # a queued row reaches its writer within REQUEST_LOG_FLUSH_SECONDS (0.05 s)
    deadline, quiet = time.monotonic() + 5, 0
    while quiet < 2 and time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
            )
            busy = cursor.fetchone()[0]
        quiet = 0 if busy else quiet + 1
        time.sleep(0.02)


@pytest.fixture(scope="session")
def fake_provider():
    fake = FakeProvider(port=0)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def live_server_proc(django_db_setup, django_db_blocker, fake_provider, tmp_path_factory):
    server = LiveServer(fake_provider, tmp_path_factory.mktemp("server") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def server(live_server_proc, transactional_db, fake_provider):
    fake_provider.clear()
    return live_server_proc


@pytest.fixture
def e2e_key(server) -> str:
    user, _ = user_get_or_create(email="e2e@example.com")
    return api_key_create(user=user, name="e2e")[1]


@pytest.fixture
def sdk(server, e2e_key):
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=e2e_key, max_retries=0)


def wait_for_log(request_id: str, timeout: float = 10.0):
    from analytics.models import RequestLog

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = RequestLog.objects.filter(request_id=request_id).first()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no log row for {request_id} within {timeout}s")
