"""Benchmark the gateway against the no-gateway baseline and LiteLLM, in one run, on the same fake providers.

    .venv/bin/python -m bench.run [--duration 10] [--scenarios latency throughput ...] [--no-litellm]
                                  [--soak-minutes 10] [--gateway-env WEB_CONCURRENCY=1 ...]
                                  [--json bench/results/latest.json]

Order: start fake providers A (0 ms) and B (500 ms); fresh database; then per provider one gateway
instance, per scenario baseline then gateway; then one LiteLLM instance in front of the same fake, per
scenario LiteLLM. Never two servers at once; each measurement is warmed up first.
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
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import loads, processes, report, stream_growth, wrk
from bench.scenarios import KEY_FLAGS, PROVIDER_DELAY_MS, SCENARIOS, Scenario

RESULTS = Path(__file__).resolve().parent / "results"
ERROR_MARKERS = (" ERROR ", " CRITICAL ", "Traceback", "[ERROR]", "[CRITICAL]", "WORKER TIMEOUT")
LITELLM_ERROR_MARKERS = ("ERROR:", "CRITICAL:", "Traceback")  # "LiteLLM Proxy:ERROR: ...", uvicorn's
ROW_SETTLE_SECONDS = 2.0  # the background log writer flushes every 50 ms; cut requests finish within 500 ms
BUSY_WARNING_PERCENT = 15.0  # machine CPU use, outside the benchmark, above which results are suspect


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded warm-up (default 2)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=[name for name, s in SCENARIOS.items() if s.in_default],
        help="default: all but " + " ".join(name for name, s in SCENARIOS.items() if not s.in_default),
    )
    parser.add_argument(
        "--litellm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure LiteLLM's proxy (default: when bench/.venvs/litellm exists)",
    )
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=0,
        metavar="N",
        help="add the soak scenario: N minutes at 200 connections on provider B (default: off; 10 if only "
        "--scenarios soak)",
    )
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
    if args.soak_minutes > 0 and "soak" not in args.scenarios:
        args.scenarios.append("soak")
    elif "soak" in args.scenarios and args.soak_minutes <= 0:
        args.soak_minutes = 10
    litellm_bin = processes.LITELLM_VENV / "bin" / "litellm"
    if args.litellm is None:
        args.litellm = litellm_bin.is_file()
    elif args.litellm and not litellm_bin.is_file():
        parser.error(f"--litellm: {litellm_bin} is missing; install it with: {processes.LITELLM_INSTALL}")
    return args


def worker_deaths(log_path: Path) -> dict:
    """uvicorn's "Child process [N] died" lines in LiteLLM's log: while starting (a worker that missed
    uvicorn's health check while importing, on a busy machine) and once requests were being served."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {"starting": 0, "serving": 0}
    first = next((i for i, line in enumerate(lines) if '"POST /v1/chat/completions' in line), len(lines))
    deaths = [i for i, line in enumerate(lines) if "] died" in line]
    return {"starting": sum(i < first for i in deaths), "serving": sum(i >= first for i in deaths)}


def duration_of(scenario: Scenario, args) -> int:
    if scenario.soak:
        return round(args.soak_minutes * 60)
    return max(args.duration, scenario.min_duration)


def measure(
    scenario: Scenario,
    load: loads.Load,
    args,
    *,
    label: str,
    warmup_load: loads.Load | None = None,
    server: processes.Process | None = None,
    count_rows: bool = False,
) -> dict:
    """Warm up with `warmup_load` (default `load`; discarded), wait for the server to go idle, then measure
    with `load`. With `server` (the gateway or LiteLLM), add its CPU per request and sample its processes'
    memory when the scenario asks; for the gateway (`count_rows`), count log rows around the measurement and
    how long the rows take to catch up once the load stops."""
    duration = duration_of(scenario, args)
    sample_memory = server is not None and scenario.memory_interval > 0
    idle = processes.session_memory(server.pid) if sample_memory else None
    log(f"{scenario.name}: {label}: warm-up {args.warmup}s, then {duration}s")
    warmup = (warmup_load or load)(args.warmup)
    # Requests the warm-up cut may still be running in the server (a stream relayed to a client that is
    # gone): measuring on top of them would not be the scenario's load.
    if server is not None:
        waited, cores = processes.wait_idle(server.pid, scenario.settle)
        if cores >= processes.IDLE_CORES:
            log(
                f"{scenario.name}: {label}: still busy ({cores} cores) {waited}s after the warm-up; measuring"
            )
    else:  # the fake provider drops a cut request at its next write
        waited, cores = min(scenario.settle, 2.0), None
        time.sleep(waited)
    # The warm-up's cut requests must finish and be written before counting, or they count as measured.
    before = processes.settled_log_rows(ROW_SETTLE_SECONDS / 2) if count_rows else None
    cpu = processes.session_cpu_seconds(server.pid) if server is not None else None
    if sample_memory:
        with processes.MemorySampler(server.pid, scenario.memory_interval) as sampler:
            result = load(duration)
            end = sampler.sample()  # at once: before the server lets go of anything
        result["memory"] = report.memory_summary(idle, sampler.samples, end)
    else:
        result = load(duration)
    if cpu is not None:  # CPU the server's processes used, per request completed: robust to a busy machine
        result["server_cpu"] = loads.server_cpu(
            processes.session_cpu_seconds(server.pid) - cpu, result["requests"]
        )
    result["warmup"] = warmup
    result["settle"] = {"waited_s": waited, "server_cores": cores}
    if count_rows:
        after, catch_up = processes.log_catch_up(before, result["requests"])
        result["log_rows"] = {"before": before, "after": after}
        result["log_catch_up"] = catch_up
    log(f"{scenario.name}: {label}: {report.describe(result, scenario.metrics)}")
    return result


def gateway_loads(scenario: Scenario, url: str, fake: str, keys: dict[str, str], sid: int):
    """(load, warm-up load) of the scenario's gateway measurement."""
    default = keys[loads.DEFAULT_KEY]
    if scenario.client == "stream_growth":
        return stream_growth.load(fake, url, default, sid), None
    if scenario.compare_key:
        return (
            loads.alternating(scenario, url, keys, sid, scenario.pairs),
            loads.alternating(scenario, url, keys, sid, 1),
        )
    return loads.wrk_load(scenario, url, default), None


def run(args, logs: Path) -> dict:
    """Start the processes, measure every selected scenario, stop everything; `logs` gets each log."""
    selected = [SCENARIOS[name] for name in SCENARIOS if name in args.scenarios]
    providers = [p for p in PROVIDER_DELAY_MS if any(s.provider == p for s in selected)]
    results: dict = {name: {} for name in SCENARIOS if name in args.scenarios}
    gateway_logs: dict = {}
    litellm_logs: dict = {}
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
        names = sorted({s.compare_key for s in selected if s.compare_key})
        log(f"fresh database {processes.DB_NAME}: migrate, create API keys: {', '.join(['default', *names])}")
        keys = {loads.DEFAULT_KEY: processes.prepare_database(envs[providers[0]])}
        keys.update({name: processes.create_api_key(envs[providers[0]], *KEY_FLAGS[name]) for name in names})
        key = keys[loads.DEFAULT_KEY]
        # One gateway instance, then one LiteLLM instance, per group; the soak gets fresh ones, so that its
        # memory figures start from a server that has not just held 1,000 streams.
        groups = []
        for p in providers:
            for soak in (False, True):
                group = [s for s in selected if s.provider == p and s.soak == soak]
                if group:
                    groups.append((p, f"{p}-soak" if soak else p, group))
        for p, name, group in groups:
            if name != providers[0]:
                processes.migrate(envs[p])
            with processes.gateway(envs[p], key, logs / f"gateway-{name}.log") as (gateway_url, proc):
                log(f"gateway on {gateway_url} in front of fake provider {p}")
                for scenario in group:
                    if scenario.with_baseline:
                        baseline = loads.wrk_load(scenario, fakes[p], "sk-no-gateway", baseline=True)
                        results[scenario.name]["baseline"] = measure(
                            scenario, baseline, args, label="no gateway"
                        )
                    load, warmup = gateway_loads(scenario, gateway_url, fakes[p], keys, proc.pid)
                    results[scenario.name]["gateway"] = measure(
                        scenario,
                        load,
                        args,
                        label="gateway",
                        warmup_load=warmup,
                        server=proc,
                        count_rows=True,
                    )
            gateway_logs[name] = {
                "path": str(proc.log_path),
                "error_lines": proc.log_count(*ERROR_MARKERS),
            }
            group = [s for s in group if s.litellm]
            if not args.litellm or not group:
                continue
            log(f"LiteLLM in front of fake provider {p}: starting ({processes.LITELLM_WORKERS} workers)")
            with processes.litellm(fakes[p], logs / f"litellm-{name}.log") as (litellm_url, proc):
                log(f"LiteLLM on {litellm_url} in front of fake provider {p}")
                for scenario in group:
                    load = loads.wrk_load(scenario, litellm_url, processes.LITELLM_KEY)
                    results[scenario.name]["litellm"] = measure(
                        scenario, load, args, label="LiteLLM", server=proc
                    )
            litellm_logs[name] = {
                "path": str(proc.log_path),
                "error_lines": proc.log_count(*LITELLM_ERROR_MARKERS),
                "worker_deaths": worker_deaths(proc.log_path),
            }
    final = processes.settled_log_rows(ROW_SETTLE_SECONDS)
    spooled = processes.spooled_rows(logs / "spool")
    return {
        "results": results,
        "final_rows": final,
        "gateway_logs": gateway_logs,
        "litellm_logs": litellm_logs,
        "spooled_rows": spooled,
    }


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
    for section in (
        report.table(results),
        report.busy_at_start(results),
        report.server_cpu(results),
        report.memory(results),
        report.soak(results, args.soak_minutes),
        report.targets(results),
        stream_growth.section(results),
        report.catch_up(results),
    ):
        if section:
            print(section)
            print()
    text, check = report.log_rows(results, outcome["final_rows"])
    print(text)
    for p, info in outcome["gateway_logs"].items():
        if info["error_lines"]:
            print(f"gateway {p}: {info['error_lines']} error lines in {info['path']}")
    for p, info in outcome["litellm_logs"].items():
        if info["error_lines"]:
            print(f"LiteLLM {p}: {info['error_lines']} error lines in {info['path']}")
        deaths = info["worker_deaths"]
        if deaths["starting"] or deaths["serving"]:
            print(
                f"LiteLLM {p}: uvicorn restarted a worker {deaths['starting']}x while starting,"
                f" {deaths['serving']}x while serving (see {info['path']})"
            )
    if busy_before is not None and busy_before > BUSY_WARNING_PERCENT:
        print(f"warning: the machine was {busy_before}% busy before the run (other processes): noisy numbers")
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
        "soak_minutes": args.soak_minutes if "soak" in args.scenarios else None,
        "litellm": {
            "version": processes.litellm_version(),
            "workers": processes.LITELLM_WORKERS,
            "config": processes.litellm_config("<fake provider>"),
            "logs": outcome["litellm_logs"],
        }
        if args.litellm
        else None,
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
