"""The load of one measurement: a function of its duration in seconds that returns wrk-shaped numbers (at
least `requests` and `errors`; `percentiles_ms` for latency rows). `bench.run.measure` warms up with one,
then measures with one, and accounts for the server's CPU and request-log rows around it."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from bench import processes, wrk
from bench.scenarios import CHAT_PATH, Scenario

Load = Callable[[int], dict]
DEFAULT_KEY = "default"  # the unlimited key bench creates first


def wrk_load(scenario: Scenario, url: str, auth: str, *, baseline: bool = False) -> Load:
    """wrk at `url` with the scenario's body; for a baseline with `scenario.native`, its native request."""
    native = scenario.native if baseline else None
    path, body, headers = (
        (native.path, native.body, native.headers) if native else (CHAT_PATH, scenario.body, None)
    )
    settings = dict(connections=scenario.connections, threads=scenario.threads, timeout=scenario.timeout)

    def run(duration: int) -> dict:
        return wrk.run(url + path, auth=auth, body=body, headers=headers, duration=duration, **settings)

    return run


def alternating(scenario: Scenario, url: str, keys: dict[str, str], sid: int, pairs: int) -> Load:
    """The gateway with the default key (A) and with `keys[scenario.compare_key]` (B), in `pairs` pairs of
    wrk runs of ceil(duration / pairs) s each, ordered A B, B A, A B, ... so that drift of a noisy machine
    hits both keys alike. Returns all runs merged (requests, errors: the server's whole load) with the
    percentiles of B, which the table shows; `keys` holds each key's runs merged, with the server CPU of its
    runs, and `pairs` each pair's B p50 - A p50."""
    names = (DEFAULT_KEY, scenario.compare_key)

    def run(duration: int) -> dict:
        seconds = max(1, math.ceil(duration / pairs))
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for i in range(pairs):
            for name in names if i % 2 == 0 else reversed(names):
                cpu = processes.session_cpu_seconds(sid)
                result = wrk_load(scenario, url, keys[name])(seconds)
                result["server_cpu"] = server_cpu(
                    processes.session_cpu_seconds(sid) - cpu, result["requests"]
                )
                runs[name].append(result)
        merged = wrk.merge([r for name in names for r in runs[name]])
        by_key = {name: wrk.merge(runs[name]) for name in names}
        for name, result in by_key.items():
            seconds_used = sum(r["server_cpu"]["seconds"] for r in runs[name])
            result["server_cpu"] = server_cpu(seconds_used, result["requests"])
        merged["percentiles_ms"] = by_key[scenario.compare_key]["percentiles_ms"]
        merged["keys"] = by_key
        merged["pairs"] = [
            {
                "a_p50": a["percentiles_ms"].get("p50"),
                "b_p50": b["percentiles_ms"].get("p50"),
                "difference_ms": b["percentiles_ms"]["p50"] - a["percentiles_ms"]["p50"],
            }
            for a, b in zip(runs[names[0]], runs[names[1]], strict=True)
            if a["requests"] and b["requests"]
        ]
        differences = [p["difference_ms"] for p in merged["pairs"]]
        merged["median_difference_ms"] = statistics.median(differences) if differences else None
        return merged

    return run


def server_cpu(seconds: float, requests: int) -> dict:
    """CPU seconds a server used during a load, and per request completed."""
    return {"seconds": round(seconds, 2), "ms_per_request": 1000 * seconds / requests if requests else None}
