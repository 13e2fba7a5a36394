"""The processes under test: fake providers and the gateway (gunicorn as in the Procfile), on 127.0.0.1.

Each runs in its own session (process group) and is stopped on exit, Ctrl-C or failure; on Linux it also
gets SIGTERM if the benchmark itself dies, so nothing outlives a run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DB_NAME = "neurometric_bench"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"  # the same, for psycopg
REDIS_URL = "redis://127.0.0.1:6379/14"
PG_ENV = {"PGHOST": "127.0.0.1", "PGUSER": "postgres"}
_INHERITED = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")  # the gateway gets nothing else from our environment

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.popen: subprocess.Popen | None = None

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def wait_http(self, url: str, headers: dict, timeout: float = 60.0) -> None:
        """Until `url` answers anything over HTTP."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            try:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5).close()
                return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:.0f}s:\n{self.tail()}")

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM to the leader (gunicorn stops its workers gracefully), then SIGKILL to the whole group."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"[bench] {self.name} did not stop within {timeout:.0f}s: killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # stragglers; the group id is the leader's pid
        self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_count(self, *needles: str) -> int:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if any(n in line for n in needles))


@contextlib.contextmanager
def fake_provider(delay_ms: int, log_path: Path) -> Iterator[str]:
    """The project's fake provider (`--no-record`) on a free port; yields its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.fakes.server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--delay-ms", str(delay_ms), "--no-record"]
    proc = Process(f"fake provider ({delay_ms} ms)", argv, {**os.environ, "PYTHONUNBUFFERED": "1"}, log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        proc.start().wait_http(f"{url}/v1/models", {"Authorization": "Bearer bench"}, timeout=30)
        yield url
    finally:
        proc.stop(timeout=10)


def gateway_env(port: int, provider_url: str, spool_dir: Path, overrides: dict) -> dict:
    env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        HOST="127.0.0.1",
        PORT=str(port),
        SECRET_KEY="bench",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=f"{provider_url}/v1",
        REQUEST_LOG_MODE="background",
        REQUEST_LOG_SPOOL_DIR=str(spool_dir),  # ours alone: never replay another run's rows into this db
    )
    env.update(overrides)
    return env


def _check(argv: list[str], env: dict) -> str:
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def prepare_database(env: dict) -> str:
    """Fresh `neurometric_bench` database and Redis db, migrated; returns a new API key."""
    pg_env = {**os.environ, **PG_ENV}
    _check(["dropdb", "--if-exists", "--force", DB_NAME], pg_env)
    _check(["createdb", DB_NAME], pg_env)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    migrate(env)
    out = _check([sys.executable, "manage.py", "create_api_key", "--email", "bench@example.com"], env)
    return out.strip().splitlines()[-1].strip()


def migrate(env: dict) -> None:
    """`manage.py migrate`: also before each later gateway start, so its schema matches the code it loads."""
    _check([sys.executable, "manage.py", "migrate", "--noinput"], env)


def source_stamp() -> float:
    """Latest modification time of the code the gateway loads: a change during a run makes it suspect."""
    paths = [ROOT / "gunicorn.conf.py"]
    for package in ("neurometric", "gateway", "accounts", "analytics"):
        paths += [*(ROOT / package).rglob("*.py"), *(ROOT / package).rglob("*.json")]
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def count_log_rows(attempts: int = 10) -> dict | None:
    """Rows in the request log: all of them and those that are not HTTP 200; None if PostgreSQL refuses
    (e.g. "too many clients" while the gateway's pools hold every connection)."""
    import psycopg

    for attempt in range(attempts):
        try:
            with psycopg.connect(DSN, connect_timeout=5) as conn:
                total, not_ok = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE status_code <> 200) FROM analytics_requestlog"
                ).fetchone()
            return {"rows": total, "non_200": not_ok}
        except psycopg.OperationalError as exc:
            if attempt == attempts - 1:
                print(f"[bench] could not count request-log rows: {exc}", file=sys.stderr)
            time.sleep(0.5)
    return None


def settled_log_rows(wait: float, max_wait: float = 20.0) -> dict | None:
    """`count_log_rows()` after `wait` seconds, once it stops changing (requests a run left in flight
    finish late when the gateway is saturated) or after `max_wait` seconds."""
    time.sleep(wait)
    deadline = time.monotonic() + max_wait - wait
    rows = count_log_rows()
    while rows is not None and time.monotonic() < deadline:
        time.sleep(0.5)
        again = count_log_rows()
        if again == rows:
            break
        rows = again
    return rows


def spooled_rows(spool_dir: Path) -> int:
    """Rows the gateway had to spool to disk because the database refused them (should be 0)."""
    files = spool_dir.glob("request-log-*") if spool_dir.is_dir() else ()
    return sum(len(path.read_bytes().splitlines()) for path in files)


@contextlib.contextmanager
def gateway(env: dict, key: str, log_path: Path) -> Iterator[tuple[str, Process]]:
    """`gunicorn neurometric.wsgi:application --config gunicorn.conf.py` (the Procfile's web process)."""
    argv = [str(BIN / "gunicorn"), "neurometric.wsgi:application", "--config", "gunicorn.conf.py"]
    proc = Process(f"gateway on {env['OPENAI_BASE_URL']}", argv, env, log_path)
    try:
        url = f"http://127.0.0.1:{env['PORT']}"
        proc.start().wait_http(f"{url}/v1/models", {"Authorization": f"Bearer {key}"})
        yield url, proc
    finally:
        proc.stop()
