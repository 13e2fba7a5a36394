"""The comparison table, the request-log check and the run's metadata."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.scenarios import SCENARIOS

_HEADER = f"{'scenario':<18}{'metric':<9}{'no gateway':<13}{'gateway':<11}overhead / ratio"


def metric_value(result: dict, metric: str) -> float | None:
    if metric == "rps":
        return result["requests_per_sec"]
    return result["percentiles_ms"].get(metric)


def format_value(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "rps":
        return f"{value:.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _compare(base: float | None, gw: float | None, metric: str) -> str:
    if base is None or gw is None:
        return "-"
    if metric == "rps":
        return f"{gw / base:.2f}x" if base else "-"
    return f"{gw - base:+.2f} ms"


def describe(result: dict, metrics: tuple[str, ...]) -> str:
    """One measurement in a line, for progress output."""
    parts = [f"{m} {format_value(metric_value(result, m), m)}" for m in metrics]
    return f"{', '.join(parts)}, {result['requests']} requests, {result['errors']} errors"


def table(results: dict) -> str:
    lines = [_HEADER]
    for name, res in results.items():
        scenario = SCENARIOS[name]
        base, gw = res["baseline"], res["gateway"]
        for i, metric in enumerate(scenario.metrics):
            b, g = metric_value(base, metric), metric_value(gw, metric)
            unit = "req/s" if metric == "rps" else f"{metric} ms"
            line = f"{scenario.label:<18}{unit:<9}{format_value(b, metric):<13}"
            line += f"{format_value(g, metric):<11}{_compare(b, g, metric):<10}"
            if i == 0 and (scenario.always_show_errors or base["errors"] or gw["errors"]):
                line += f"errors {gw['errors']}"
                if base["errors"]:
                    line += f" (no gateway: {base['errors']})"
            lines.append(line.rstrip())
    return "\n".join(lines)


def log_rows(results: dict, final: dict | None) -> tuple[str, dict]:
    """Request-log rows the gateway wrote during each measurement vs requests wrk completed there."""
    lines = ["request-log rows written vs requests wrk completed (gateway measurements):"]
    check: dict = {}
    for name, res in results.items():
        rows = res["gateway"]["log_rows"]
        completed = res["gateway"]["requests"]
        if rows["before"] is None or rows["after"] is None:
            check[name] = {"rows": None, "wrk_requests": completed}
            lines.append(f"  {SCENARIOS[name].label:<20}rows ?        wrk {completed:<8} (could not count)")
            continue
        written = rows["after"]["rows"] - rows["before"]["rows"]
        not_ok = rows["after"]["non_200"] - rows["before"]["non_200"]
        check[name] = {"rows": written, "non_200_rows": not_ok, "wrk_requests": completed}
        check[name]["difference"] = written - completed
        lines.append(
            f"  {SCENARIOS[name].label:<20}rows {written:<8} wrk {completed:<8} "
            f"difference {written - completed:+d}   (non-200 rows {not_ok})"
        )
    if final is not None:
        every = sum(r["gateway"]["requests"] + r["gateway"]["warmup"]["requests"] for r in results.values())
        check["total"] = {"rows": final["rows"], "wrk_requests_with_warmups": every}
        check["total"]["difference"] = final["rows"] - every
        lines.append(
            f"  {'all, with warm-ups':<20}rows {final['rows']:<8} wrk {every:<8} "
            f"difference {final['rows'] - every:+d}   (after the gateways stopped)"
        )
    return "\n".join(lines), check


def git_commit(root: Path) -> str:
    """`git rev-parse --short HEAD`, read from .git directly (no git binary needed)."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:7]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0][:7]
    except OSError:
        pass
    return "unknown"


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 0


def cpu_busy_percent(seconds: float = 1.0) -> float | None:
    """How busy the whole machine is (all CPUs, from /proc/stat) over `seconds`; None where unknown."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(100 * (1 - (idle1 - idle0) / (total1 - total0)), 1) if total1 > total0 else None
