"""Latency of a response-cache hit: the gateway alone, answering from its cache.

    .venv/bin/python -m bench.cache_bench [--duration 10] [--warmup 2] [--backend redis|database]
                                          [--gateway-env KEY=VALUE ...] [--json bench/results/cache.json]

Starts the fake provider (0 ms) and the gateway as `bench.run` does, but on a database and Redis db of
its own, so it never disturbs a `bench.run` in progress: **the database `neurometric_cache_bench` is
dropped and recreated, and Redis db 15 flushed, on every run**. Then it stores one answer with
`x-neurometric-cache: true`, checks that the next identical request is a hit, then measures that request
with wrk (1 connection, 1 thread): every request is a hit, the provider is never called. For comparison,
the same body without the header (through to the fake provider) is measured right after, on the same
gateway. `--backend database` unsets REDIS_URL: the cache (and the limits) live in PostgreSQL.
`--backend sqlite` is the embedded default: no REDIS_URL, and a fresh SQLite file (bench/results/) as the
database, so the cache lives in SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bench import processes, report, wrk
from bench.scenarios import BODY

RESULTS = Path(__file__).resolve().parent / "results"
CACHE_HEADERS = {"x-neurometric-cache": "true"}
DB_NAME = "neurometric_cache_bench"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
SQLITE_PATH = RESULTS / "cache_bench.sqlite3"
REDIS_URL = "redis://127.0.0.1:6379/15"


def log(message: str) -> None:
    print(f"[cache-bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded warm-up (default 2)")
    parser.add_argument("--backend", choices=["redis", "database", "sqlite"], default="redis")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=RESULTS / "cache.json", help="where to write results")
    args = parser.parse_args(argv)
    args.overrides = {
        "DATABASE_URL": (
            f"sqlite:///{SQLITE_PATH}"
            if args.backend == "sqlite"
            else f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
        ),
        "REDIS_URL": REDIS_URL if args.backend == "redis" else "",
        **dict(item.split("=", 1) for item in args.gateway_env),
    }
    return args


def prepare_database(env: dict) -> str:
    """Fresh database and Redis db, migrated; returns a new API key."""
    import redis

    if env["DATABASE_URL"].startswith("sqlite"):
        SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
        SQLITE_PATH.unlink(missing_ok=True)
    else:
        pg_env = {**os.environ, **processes.PG_ENV}
        subprocess.run(["dropdb", "--if-exists", "--force", DB_NAME], env=pg_env, check=True)
        subprocess.run(["createdb", DB_NAME], env=pg_env, check=True)
    redis.Redis.from_url(REDIS_URL).flushdb()
    processes.migrate(env)
    out = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "--email", "bench@example.com"],
        cwd=processes.ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1].strip()


def post(url: str, key: str, headers: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(BODY).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return dict(response.headers)


def prime(url: str, key: str) -> None:
    """Store the answer, then wait until it is served from the cache (it is stored after being sent)."""
    first = post(url, key, CACHE_HEADERS)
    if first.get("x-neurometric-cache") not in ("miss", "hit"):
        raise RuntimeError(f"the gateway did not look the request up in its cache: {first}")
    deadline = time.monotonic() + 10
    while post(url, key, CACHE_HEADERS).get("x-neurometric-cache") != "hit":
        if time.monotonic() > deadline:
            raise RuntimeError("the answer never came back from the cache")
        time.sleep(0.05)


def measure(url: str, key: str, args, *, headers: dict | None, label: str) -> dict:
    settings = dict(auth=key, body=BODY, connections=1, threads=1, headers=headers)
    log(f"{label}: warm-up {args.warmup}s, then {args.duration}s")
    target = f"{url}/v1/chat/completions"
    wrk.run(target, duration=args.warmup, **settings)
    result = wrk.run(target, duration=args.duration, **settings)
    log(f"{label}: {report.describe(result, ('p50', 'p90', 'p99'))}")
    return result


def count_rows(backend: str) -> dict | None:
    """Request-log rows: all of them, and those answered from the cache (at cost 0)."""
    import sqlite3

    import psycopg

    time.sleep(2.0)  # the background log writer flushes every 50 ms
    query = (
        "SELECT count(*), sum(CASE WHEN cache_hit THEN 1 ELSE 0 END),"
        " sum(CASE WHEN cache_hit AND cost_usd = 0 THEN 1 ELSE 0 END) FROM analytics_requestlog"
    )
    try:
        if backend == "sqlite":
            with sqlite3.connect(SQLITE_PATH) as conn:
                total, hits, free_hits = conn.execute(query).fetchone()
        else:
            with psycopg.connect(DSN, connect_timeout=5) as conn:
                total, hits, free_hits = conn.execute(query).fetchone()
    except (psycopg.Error, sqlite3.Error) as exc:
        log(f"could not count request-log rows: {exc}")
        return None
    return {"rows": total, "cache_hit_rows": hits, "cache_hit_rows_at_cost_0": free_hits}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("cache-bench: wrk is not installed; install it with `apt-get install wrk` (Debian/Ubuntu).")
    started = datetime.now(UTC)
    busy_before = report.cpu_busy_percent()
    logs = RESULTS / "logs" / f"cache-{started:%Y%m%dT%H%M%SZ}"
    with processes.fake_provider(0, logs / "fake.log") as fake:
        env = processes.gateway_env(processes.free_port(), fake, logs / "spool", args.overrides)
        log(f"fresh database: migrate, create an API key ({args.backend} backend)")
        key = prepare_database(env)
        with processes.gateway(env, key, logs / "gateway.log") as (url, proc):
            prime(url, key)
            hit = measure(url, key, args, headers=CACHE_HEADERS, label="cache hit")
            miss = measure(url, key, args, headers=None, label="no cache (through to the fake provider)")
            error_lines = proc.log_count(" ERROR ", "Traceback", "[ERROR]")
    rows = count_rows(args.backend)
    print(f"{'request':<28}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'req/s':>9}")
    for label, result in (("cache hit", hit), ("no cache (fake provider)", miss)):
        p = result["percentiles_ms"]
        print(
            f"{label:<28}{p.get('p50', 0):>8.2f}{p.get('p90', 0):>8.2f}{p.get('p99', 0):>8.2f}"
            f"{result['requests_per_sec'] or 0:>9.0f}"
        )
    print(f"\nbackend {args.backend}; request log {rows}; gateway error lines {error_lines}")
    busy_after = report.cpu_busy_percent()
    if max(busy_before or 0, busy_after or 0) > 15:
        print(
            f"warning: the machine was busy (CPU {busy_before}% before, {busy_after}% after): noisy numbers"
        )
    data = {
        "date": started.isoformat(timespec="seconds"),
        "commit": report.git_commit(processes.ROOT),
        "nproc": report.nproc(),
        "backend": args.backend,
        "duration_s": args.duration,
        "gateway_env_overrides": args.overrides,
        "cpu_busy_percent": {"before": busy_before, "after": busy_after},
        "cache_hit": hit,
        "no_cache": miss,
        "log_rows": rows,
        "gateway_error_lines": error_lines,
        "logs": str(logs),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(f"raw numbers: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("cache-bench: interrupted; processes stopped")
