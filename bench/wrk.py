"""Drive wrk (POSTing JSON through lua/post_json.lua) and parse its `--latency` report into numbers."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "lua" / "post_json.lua"

_TIME_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_METRIC = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}

_NUM = r"([\d.]+)([a-zA-Z]*)"
_PATTERNS = {
    "threads": re.compile(r"(\d+) threads and (\d+) connections"),
    "latency": re.compile(rf"^\s+Latency\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+([\d.]+)%", re.M),
    "req_per_thread": re.compile(rf"^\s+Req/Sec\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+([\d.]+)%", re.M),
    "percentile": re.compile(rf"^\s+(\d+)%\s+{_NUM}\s*$", re.M),
    "total": re.compile(rf"(\d+) requests in {_NUM}, {_NUM} read"),
    "socket_errors": re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"),
    "non_2xx_3xx": re.compile(r"Non-2xx or 3xx responses: (\d+)"),
    "requests_per_sec": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "transfer_per_sec": re.compile(rf"Transfer/sec:\s+{_NUM}"),
}


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_MS[unit]


def parse(output: str) -> dict:
    """wrk's text report -> numbers: times in ms, sizes in bytes; `errors` = non-2xx/3xx + socket errors."""
    p = _PATTERNS
    result: dict = {"threads": None, "connections": None, "latency_ms": None, "req_per_thread": None}
    if m := p["threads"].search(output):
        result["threads"], result["connections"] = int(m[1]), int(m[2])
    if m := p["latency"].search(output):
        g = m.groups()
        result["latency_ms"] = {
            "avg": _ms(g[0], g[1]),
            "stdev": _ms(g[2], g[3]),
            "max": _ms(g[4], g[5]),
            "within_stdev_pct": float(g[6]),
        }
    if m := p["req_per_thread"].search(output):
        g = m.groups()
        result["req_per_thread"] = {
            "avg": float(g[0]) * _METRIC[g[1]],
            "stdev": float(g[2]) * _METRIC[g[3]],
            "max": float(g[4]) * _METRIC[g[5]],
            "within_stdev_pct": float(g[6]),
        }
    result["percentiles_ms"] = {f"p{m[1]}": _ms(m[2], m[3]) for m in p["percentile"].finditer(output)}
    m = p["total"].search(output)
    if m is None:
        raise ValueError(f"not a wrk report:\n{output}")
    result["requests"] = int(m[1])
    result["duration_s"] = _ms(m[2], m[3]) / 1000
    result["bytes_read"] = float(m[4]) * _BYTES[m[5]]
    m = p["socket_errors"].search(output)
    counts = map(int, m.groups()) if m else (0, 0, 0, 0)
    result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), counts, strict=True))
    m = p["non_2xx_3xx"].search(output)
    result["non_2xx_3xx"] = int(m[1]) if m else 0
    result["errors"] = result["non_2xx_3xx"] + sum(result["socket_errors"].values())
    m = p["requests_per_sec"].search(output)
    result["requests_per_sec"] = float(m[1]) if m else None
    m = p["transfer_per_sec"].search(output)
    result["transfer_bytes_per_sec"] = float(m[1]) * _BYTES[m[2]] if m else None
    return result


def run(
    url: str,
    *,
    auth: str,
    body: dict,
    connections: int,
    threads: int,
    duration: int,
    timeout: str = "10s",
    headers: dict[str, str] | None = None,
) -> dict:
    """One wrk run; returns `parse()`'s numbers plus the command line and wrk's own output."""
    command = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration}s",
        f"--timeout={timeout}",
        "--latency",
        f"--script={SCRIPT}",
        url,
    ]
    env = {**os.environ, "BENCH_BODY": json.dumps(body, separators=(",", ":")), "BENCH_AUTH": auth}
    env["BENCH_HEADERS"] = "\n".join(f"{name}: {value}" for name, value in (headers or {}).items())
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(command)}\n{proc.stdout}{proc.stderr}")
    result = parse(proc.stdout)
    result["command"] = command
    result["output"] = proc.stdout
    return result


def merge(runs: list[dict]) -> dict:
    """Several wrk runs of one measurement as one: counts and durations summed, each percentile the median
    of the runs' (of those that completed a request); the runs themselves under `runs`."""
    done = [r for r in runs if r["requests"]]
    names = set.intersection(*(set(r["percentiles_ms"]) for r in done)) if done else set()
    requests = sum(r["requests"] for r in runs)
    duration = sum(r["duration_s"] for r in runs)
    return {
        "requests": requests,
        "duration_s": duration,
        "bytes_read": sum(r["bytes_read"] for r in runs),
        "socket_errors": {k: sum(r["socket_errors"][k] for r in runs) for k in runs[0]["socket_errors"]},
        "non_2xx_3xx": sum(r["non_2xx_3xx"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "requests_per_sec": requests / duration if duration else None,
        "percentiles_ms": {p: statistics.median(r["percentiles_ms"][p] for r in done) for p in sorted(names)},
        "runs": runs,
    }


def version() -> str:
    proc = subprocess.run(["wrk", "--version"], capture_output=True, text=True)  # exits 1 after printing
    return (proc.stdout or proc.stderr).splitlines()[0].strip() if (proc.stdout or proc.stderr) else "?"
