"""Benchmark the gateway against the no-gateway baseline, in one run, on the same fake providers.

    .venv/bin/python -m bench.run [--duration 10] [--scenarios latency throughput ...]
                                  [--gateway-env WEB_CONCURRENCY=1 ...] [--json bench/results/latest.json]

Order: start fake providers A (0 ms) and B (500 ms); fresh database; then per provider one gateway
instance (never two at once), and per scenario baseline then gateway, each warmed up before measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import processes, report, wrk
from bench.scenarios import PROVIDER_DELAY_MS, SCENARIOS, Scenario

RESULTS = Path(__file__).resolve().parent / "results"
ERROR_MARKERS = (" ERROR ", " CRITICAL ", "Traceback", "[ERROR]", "[CRITICAL]", "WORKER TIMEOUT")
ROW_SETTLE_SECONDS = 2.0  # the background log writer flushes every 50 ms; cut requests finish within 500 ms
BUSY_WARNING_PERCENT = 15.0  # machine CPU use, outside the benchmark, above which results are suspect


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded warm-up (default 2)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the gateway, repeatable (e.g. WEB_CONCURRENCY=1)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write results")
    args = parser.parse_args(argv)
    args.overrides = {}
    for item in args.gateway_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--gateway-env expects KEY=VALUE, got {item!r}")
        args.overrides[key] = value
    return args


def measure(scenario: Scenario, url: str, auth: str, args, *, label: str, count_rows: bool = False) -> dict:
    """Warm up (discarded), then measure; for the gateway, also count log rows around the measurement."""
    duration = max(args.duration, scenario.min_duration)
    settings = dict(auth=auth, body=scenario.body, connections=scenario.connections, threads=scenario.threads)
    log(f"{scenario.name}: {label}: warm-up {args.warmup}s, then {duration}s")
    warmup = wrk.run(f"{url}/v1/chat/completions", duration=args.warmup, timeout=scenario.timeout, **settings)
    # The warm-up's cut requests must finish and be written before counting, or they count as measured.
    before = processes.settled_log_rows(ROW_SETTLE_SECONDS / 2) if count_rows else None
    result = wrk.run(f"{url}/v1/chat/completions", duration=duration, timeout=scenario.timeout, **settings)
    result["warmup"] = warmup
    if count_rows:
        result["log_rows"] = {"before": before, "after": processes.settled_log_rows(ROW_SETTLE_SECONDS)}
    log(f"{scenario.name}: {label}: {report.describe(result, scenario.metrics)}")
    return result


def run(args, logs: Path) -> dict:
    """Start the processes, measure every selected scenario, stop everything; `logs` gets each log."""
    selected = [SCENARIOS[name] for name in SCENARIOS if name in args.scenarios]
    providers = [p for p in PROVIDER_DELAY_MS if any(s.provider == p for s in selected)]
    results: dict = {}
    gateway_logs: dict = {}
    with contextlib.ExitStack() as stack:
        fakes = {}
        for p in providers:
            delay = PROVIDER_DELAY_MS[p]
            fakes[p] = stack.enter_context(processes.fake_provider(delay, logs / f"fake-{p}.log"))
            log(f"fake provider {p} ({delay} ms) on {fakes[p]}")
        envs = {
            p: processes.gateway_env(processes.free_port(), fakes[p], logs / "spool", args.overrides)
            for p in providers
        }
        log(f"fresh database {processes.DB_NAME}: migrate, create an API key")
        key = processes.prepare_database(envs[providers[0]])
        for p in providers:
            if p != providers[0]:
                processes.migrate(envs[p])
            with processes.gateway(envs[p], key, logs / f"gateway-{p}.log") as (gateway_url, proc):
                log(f"gateway on {gateway_url} in front of fake provider {p}")
                for scenario in (s for s in selected if s.provider == p):
                    baseline = measure(scenario, fakes[p], "sk-no-gateway", args, label="no gateway")
                    through = measure(scenario, gateway_url, key, args, label="gateway", count_rows=True)
                    results[scenario.name] = {"baseline": baseline, "gateway": through}
            gateway_logs[p] = {
                "path": str(proc.log_path),
                "error_lines": proc.log_count(*ERROR_MARKERS),
            }
    final = processes.settled_log_rows(ROW_SETTLE_SECONDS)
    spooled = processes.spooled_rows(logs / "spool")
    return {"results": results, "final_rows": final, "gateway_logs": gateway_logs, "spooled_rows": spooled}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed; install it with `apt-get install wrk` (Debian/Ubuntu).")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup, as for Ctrl-C
    started = datetime.now(UTC)
    busy_before = report.cpu_busy_percent()
    if busy_before is not None and busy_before > BUSY_WARNING_PERCENT:
        log(f"warning: the machine is already {busy_before}% busy before the run: numbers will be noisy")
    logs = RESULTS / "logs" / started.strftime("%Y%m%dT%H%M%SZ")  # and the gateway's spool, new each run
    stamp = processes.source_stamp()
    outcome = run(args, logs)
    source_changed = processes.source_stamp() != stamp
    busy_after = report.cpu_busy_percent()
    results = outcome["results"]
    print(report.table(results))
    print()
    text, check = report.log_rows(results, outcome["final_rows"])
    print(text)
    for p, info in outcome["gateway_logs"].items():
        if info["error_lines"]:
            print(f"gateway {p}: {info['error_lines']} error lines in {info['path']}")
    if busy_after is not None and busy_after > BUSY_WARNING_PERCENT:
        print(f"warning: the machine was {busy_after}% busy after the run (other processes): noisy numbers")
    if source_changed:
        print("warning: the project's code changed during the run: the gateway instances may differ")
    if outcome["spooled_rows"]:
        print(f"{outcome['spooled_rows']} request-log rows were spooled to disk (the database refused them)")
    data = {
        "date": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": report.git_commit(processes.ROOT),
        "nproc": report.nproc(),
        "wrk": wrk.version(),
        "cpu_busy_percent": {"before": busy_before, "after": busy_after},
        "loadavg_after": os.getloadavg(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "gateway_env_overrides": args.overrides,
        "logs": str(logs),
        "source_changed_during_run": source_changed,
        "provider_delay_ms": PROVIDER_DELAY_MS,
        "scenarios": {name: {**dataclasses.asdict(SCENARIOS[name]), **res} for name, res in results.items()},
        "log_rows": check,
        "gateway_logs": outcome["gateway_logs"],
        "spooled_rows": outcome["spooled_rows"],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nraw numbers: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; processes stopped")
