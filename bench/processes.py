"""The processes under test: fake providers, the gateway (gunicorn as in the Procfile) and LiteLLM's proxy
(from its own venv, bench/.venvs/litellm), on 127.0.0.1; and what is measured on them besides wrk's numbers:
the memory of a server's processes and the request-log rows the gateway writes.

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
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Each run drops and recreates its database and flushes its Redis db: two runs at once need their own.
DB_NAME = os.environ.get("BENCH_DB_NAME", "neurometric_bench")
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"  # the same, for psycopg
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PG_ENV = {"PGHOST": "127.0.0.1", "PGUSER": "postgres"}
_INHERITED = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")  # the gateway gets nothing else from our environment
LITELLM_VENV = ROOT / "bench" / ".venvs" / "litellm"
LITELLM_INSTALL = (
    "python3 -m venv bench/.venvs/litellm && bench/.venvs/litellm/bin/pip install 'litellm[proxy]'"
)
LITELLM_KEY = "sk-litellm-bench"  # its master key: LiteLLM authenticates every request, as the gateway does
LITELLM_WORKERS = 2  # as the gateway's default WEB_CONCURRENCY (= CPU count) on the 2-core bench machine

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

    @property
    def pid(self) -> int:
        """The leader's pid, which is also its session id: every process it starts shares that session."""
        return self.popen.pid

    def wait_log(self, needle: str, count: int, timeout: float) -> None:
        """Until `needle` appears on `count` lines of the log (e.g. once per worker that started)."""
        deadline = time.monotonic() + timeout
        while self.log_count(needle) < count:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                message = f"{self.name}: {needle!r} not logged {count}x in {timeout:.0f}s"
                raise RuntimeError(f"{message}:\n{self.tail()}")
            time.sleep(0.2)

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
        ANTHROPIC_API_KEY="sk-ant-bench",  # the fake speaks Anthropic's and Gemini's APIs too
        ANTHROPIC_BASE_URL=provider_url,
        GEMINI_API_KEY="bench",
        GEMINI_BASE_URL=provider_url,
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
    return create_api_key(env)


def create_api_key(env: dict, *flags: str) -> str:
    """`manage.py create_api_key --email bench@example.com [flags]` (e.g. limits); returns the key."""
    out = _check([sys.executable, "manage.py", "create_api_key", "--email", "bench@example.com", *flags], env)
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


def log_catch_up(
    before: dict | None, completed: int, poll: float = 0.1, stable: float = 2.0, max_wait: float = 30.0
) -> tuple[dict | None, dict]:
    """Right after a measurement: poll the request log's row count every `poll` s until it has not changed
    for `stable` s (or `max_wait` s passed). Returns the last count and when, counted from the call, the
    rows first covered the `completed` requests wrk counted (`reached_s`, None if never: rows missing) and
    when the count last changed (`settled_s`: requests still in flight when wrk stopped finish later)."""
    import psycopg

    started = time.monotonic()
    target = before["rows"] + completed if before is not None else None
    info: dict = {"expected_rows": target, "reached_s": None, "settled_s": 0.0, "poll_s": poll}
    query = "SELECT count(*), count(*) FILTER (WHERE status_code <> 200) FROM analytics_requestlog"
    rows = None
    try:
        with psycopg.connect(DSN, connect_timeout=5, autocommit=True) as conn:
            while True:
                total, not_ok = conn.execute(query).fetchone()
                now = time.monotonic() - started
                again = {"rows": total, "non_200": not_ok}
                if again != rows:
                    rows, info["settled_s"] = again, round(now, 2)
                if info["reached_s"] is None and target is not None and total >= target:
                    info["reached_s"] = round(now, 2)
                if now - info["settled_s"] >= stable or now >= max_wait:
                    break
                time.sleep(poll)
    except psycopg.OperationalError as exc:
        print(f"[bench] could not follow the request log: {exc}", file=sys.stderr)
        return count_log_rows(), info
    info["waited_s"] = round(time.monotonic() - started, 2)
    return rows, info


def spooled_rows(spool_dir: Path) -> int:
    """Rows the gateway had to spool to disk because the database refused them (should be 0)."""
    files = spool_dir.glob("request-log-*") if spool_dir.is_dir() else ()
    return sum(len(path.read_bytes().splitlines()) for path in files)


def session_memory(sid: int) -> dict:
    """Memory of every live process in session `sid` (a server's leader and all it started: gunicorn's
    master and workers; LiteLLM's parent, uvicorn workers and multiprocessing helper), from /proc:
    RSS summed (shared pages counted once per process) and PSS summed (shared pages split), in MB."""

    def field(text: str, name: str) -> int:  # "VmRSS:   1234 kB" -> 1234
        return next((int(line.split()[1]) for line in text.splitlines() if line.startswith(name)), 0)

    rss = pss = count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[3]) != sid:  # state ppid pgrp session ...
                continue
            status = Path(entry.path, "status").read_text()
            rss += field(status, "VmRSS:")
            with contextlib.suppress(OSError):
                rollup = Path(entry.path, "smaps_rollup").read_text()
                pss += field(rollup, "Pss:")
            count += 1
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to read
            continue
    return {"rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1), "processes": count}


def session_cpu_seconds(sid: int) -> float:
    """CPU time (user + system) used so far by the live processes of session `sid`."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ... utime stime
            if int(fields[3]) == sid:
                ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


IDLE_CORES = 0.1  # a server using less CPU than this (in cores) is idle


def wait_idle(
    sid: int, max_wait: float, below: float = IDLE_CORES, window: float = 1.0
) -> tuple[float, float]:
    """Until session `sid` uses less than `below` of a core over `window` s (the requests a warm-up cut
    have ended), or `max_wait` s; returns (seconds waited, the last window's CPU use in cores)."""
    started = time.monotonic()
    before = session_cpu_seconds(sid)
    while True:
        time.sleep(window)
        now = session_cpu_seconds(sid)
        used = (now - before) / window
        waited = time.monotonic() - started
        if used < below or waited >= max_wait:
            return round(waited, 1), round(used, 2)
        before = now


class MemorySampler:
    """`session_memory(sid)` at once and then every `interval` s, in a thread, while the `with` lasts."""

    def __init__(self, sid: int, interval: float):
        self.sid, self.interval = sid, interval
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._started = 0.0

    def sample(self) -> dict:
        sample = {"t_s": round(time.monotonic() - self._started, 1), **session_memory(self.sid)}
        self.samples.append(sample)
        return sample

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> MemorySampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


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


def litellm_config(provider_url: str) -> str:
    """LiteLLM's proxy config: `gpt-4o` -> the fake provider, with a master key and no database."""
    return (
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o\n"
        f"      api_base: {provider_url}/v1\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
    )


def litellm_version() -> str | None:
    """The installed LiteLLM's version, read from its venv's package metadata; None if not installed."""
    found = sorted(LITELLM_VENV.glob("lib/python*/site-packages/litellm-*.dist-info"))
    return found[-1].name.removeprefix("litellm-").removesuffix(".dist-info") if found else None


@contextlib.contextmanager
def litellm(provider_url: str, log_path: Path) -> Iterator[tuple[str, Process]]:
    """`litellm --config <yaml> --host 127.0.0.1 --port <free> --num_workers 2` from bench/.venvs/litellm,
    in front of the fake provider, WITHOUT a database (no DATABASE_URL: no spend logging); yields its URL.
    Ready when /health/liveliness answers and every worker has logged its startup."""
    config = log_path.with_suffix(".yaml")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(litellm_config(provider_url))
    port = free_port()
    env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    env.update(
        PATH=f"{LITELLM_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        PYTHONUNBUFFERED="1",
        # The packaged model price map, instead of fetching it from GitHub at every start (no internet here).
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--num_workers", str(LITELLM_WORKERS)]
    proc = Process(f"LiteLLM on {provider_url}", argv, env, log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        proc.start().wait_http(f"{url}/health/liveliness", {}, timeout=180)
        proc.wait_log("Application startup complete.", LITELLM_WORKERS, timeout=180)
        yield url, proc
    finally:
        proc.stop()
