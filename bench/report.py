"""The comparison table, memory, soak and request-log sections, and the run's metadata."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.processes import IDLE_CORES
from bench.scenarios import SCENARIOS

# targets for the gateway's soak, on the PSS of all its processes: growth over the run, and peak
SOAK_MAX_GROWTH_PCT = 5.0
SOAK_MAX_PSS_MB = 250.0
LOG_CATCH_UP_TARGET_S = 10.0
_UNITS = {"rps": "req/s", "completed": "completed"}


def metric_value(result: dict | None, metric: str) -> float | None:
    if result is None:
        return None
    if metric == "rps":
        return result["requests_per_sec"]
    if metric == "completed":
        return result["requests"]
    if not result["requests"]:  # wrk prints 0.00us percentiles when nothing completed
        return None
    return result["percentiles_ms"].get(metric)


def format_value(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric in _UNITS:
        return f"{value:.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _is_latency(metric: str) -> bool:
    return metric not in _UNITS


def _compare(base: float | None, other: float | None, metric: str) -> str:
    """Against the baseline: + ms for latencies, a ratio for counts."""
    if base is None or other is None:
        return "-"
    if _is_latency(metric):
        return f"{other - base:+.2f} ms"
    return f"{other / base:.2f}x" if base else "-"


def _versus(base: float | None, gw: float | None, lite: float | None, metric: str) -> str:
    """Gateway vs LiteLLM: our req/s (or completed) ÷ LiteLLM's; for latencies our overhead ÷ LiteLLM's."""
    if gw is None or lite is None:
        return "-"
    if _is_latency(metric):
        if base is None or lite - base <= 0:
            return "-"
        return f"{(gw - base) / (lite - base):.2f}x"
    if not lite:
        return "∞ (LiteLLM 0)" if gw else "-"
    return f"{gw / lite:.2f}x"


def _columns(rows: list[list[str]], gap: int = 2) -> list[str]:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return ["".join(cell.ljust(widths[i] + gap) for i, cell in enumerate(row)).rstrip() for row in rows]


def describe(result: dict, metrics: tuple[str, ...]) -> str:
    """One measurement in a line, for progress output."""
    parts = [f"{m} {format_value(metric_value(result, m), m)}" for m in metrics if m != "completed"]
    text = ", ".join([*parts, f"{result['requests']} requests", f"{result['errors']} errors"])
    if (cpu := result.get("server_cpu")) and cpu["ms_per_request"] is not None:
        text += f", server CPU {cpu['ms_per_request']:.2f} ms/request"
    if mem := result.get("memory"):
        text += f", RSS peak {mem['peak']['rss_mb']:.0f} MB, end {mem['end']['rss_mb']:.0f} MB"
    if info := result.get("log_catch_up"):
        reached = f"{info['reached_s']} s" if info["reached_s"] is not None else "never (rows missing)"
        text += f", log caught up after {reached}"
    return text


def _errors(scenario, base: dict | None, gw: dict | None, lite: dict | None) -> str:
    shown = [r for r in (gw, lite) if r is not None]
    if not (scenario.always_show_errors or any(r["errors"] for r in (base, gw, lite) if r is not None)):
        return ""
    text = " / ".join(str(r["errors"]) for r in shown)
    if base is not None and base["errors"]:
        text += f" (no gateway: {base['errors']})"
    return text


def table(results: dict) -> str:
    """One row per scenario and metric; with LiteLLM measured, its column and the ratios against it."""
    litellm = any("litellm" in res for res in results.values())
    if litellm:
        header = ["scenario", "metric", "no gateway", "gateway", "LiteLLM", "gateway vs none"]
        header += ["LiteLLM vs none", "gateway ÷ LiteLLM", "errors gw / LiteLLM"]
    else:
        header = ["scenario", "metric", "no gateway", "gateway", "overhead / ratio", "errors"]
    rows = [header]
    for name, res in results.items():
        if "gateway" not in res:
            continue
        scenario = SCENARIOS[name]
        base, gw, lite = res.get("baseline"), res["gateway"], res.get("litellm")
        for i, metric in enumerate(scenario.metrics):
            b, g, li = (metric_value(r, metric) for r in (base, gw, lite))
            unit = _UNITS.get(metric, f"{metric} ms")
            row = [scenario.label, unit, format_value(b, metric), format_value(g, metric)]
            if litellm:
                row += [format_value(li, metric), _compare(b, g, metric), _compare(b, li, metric)]
                row.append(_versus(b, g, li, metric))
            else:
                row.append(_compare(b, g, metric))
            row.append(_errors(scenario, base, gw, lite if litellm else None) if i == 0 else "")
            rows.append(row)
    if len(rows) == 1:  # e.g. only long_stream, which has its own section
        return ""
    lines = _columns(rows)
    if any(metric == "completed" for name in results for metric in SCENARIOS[name].metrics):
        lines.append(
            "completed: streams that ended within the run (one that ended after wrk's --timeout is also a"
            " timeout error); one still open when wrk stops counts as neither."
        )
    if litellm:
        lines += [
            "vs none: latency rows: + ms over the no-gateway baseline; req/s, completed: x the baseline.",
            "gateway ÷ LiteLLM: req/s, completed: ours ÷ LiteLLM's (above 1: we serve more); latency rows:",
            "our overhead ÷ LiteLLM's overhead (below 1: we add less).",
        ]
    return "\n".join(lines)


def server_cpu(results: dict) -> str:
    """CPU time the server's processes used per request wrk completed (what a request costs the server,
    whatever the client saw), and the cores that makes."""
    rows = []
    litellm = any("litellm" in res for res in results.values())
    for name, res in results.items():
        cells = []
        for target in ("gateway", "litellm") if litellm else ("gateway",):
            result = res.get(target)
            cpu = result.get("server_cpu") if result else None
            if cpu is None:
                cells.append("-")
                continue
            ms = f"{cpu['ms_per_request']:.2f}" if cpu["ms_per_request"] is not None else "-"
            cells.append(f"{ms} ({cpu['seconds'] / result['duration_s']:.2f} cores)")
        if any(cell != "-" for cell in cells):
            rows.append([SCENARIOS[name].label, *cells])
    if not rows:
        return ""
    header = ["scenario", "gateway", "LiteLLM"][: len(rows[0])]
    title = "server CPU per completed request, ms (user + system, all of the server's processes; cores used):"
    return "\n".join([title, *("  " + line for line in _columns([header, *rows]))])


def busy_at_start(results: dict) -> str:
    """Measurements that began while the server was still busy with the requests its warm-up cut."""
    lines = []
    for name, res in results.items():
        for target, label in (("gateway", "gateway"), ("litellm", "LiteLLM")):
            settle = res.get(target, {}).get("settle")
            if settle and (settle["server_cores"] or 0) >= IDLE_CORES:
                lines.append(
                    f"warning: {label} {SCENARIOS[name].label}: measured while still busy after its warm-up"
                    f" ({settle['server_cores']} cores used {settle['waited_s']:g} s after it)"
                )
    return "\n".join(lines)


def memory_summary(idle: dict | None, samples: list[dict], end: dict) -> dict:
    """The memory samples of one measurement: idle (before the warm-up), start (as the load begins),
    first (one sampling interval in: the working set of the connections is built by then), peak, end,
    and growth from first to end."""
    every = [*samples, end]
    first = samples[1] if len(samples) > 1 else every[0]

    def growth(measure: str) -> float | None:
        return round(100 * (end[measure] - first[measure]) / first[measure], 1) if first[measure] else None

    return {
        "idle": idle,
        "start": every[0],
        "first": first,
        "peak": max(every, key=lambda s: s["rss_mb"]),
        "pss_peak": max(every, key=lambda s: s["pss_mb"]),  # RSS and PSS need not peak in the same sample
        "end": end,
        "growth_pct": growth("rss_mb"),
        "pss_growth_pct": growth("pss_mb"),
        "samples": samples,
    }


def _memory_cell(mem: dict | None) -> str:
    if mem is None:
        return "-"
    idle = f"{mem['idle']['rss_mb']:.0f}" if mem["idle"] else "?"
    return (
        f"{idle} / {mem['peak']['rss_mb']:.0f} / {mem['end']['rss_mb']:.0f}"
        f" (PSS peak {mem['pss_peak']['pss_mb']:.0f}, {mem['pss_peak']['processes']} proc)"
    )


def memory(results: dict) -> str:
    """RSS of the servers' processes, for the scenarios that sample it (soak has its own section)."""
    rows = []
    for name, res in results.items():
        scenario = SCENARIOS[name]
        if scenario.soak or not scenario.memory_interval or "gateway" not in res:
            continue
        targets = ("gateway", "litellm") if "litellm" in res else ("gateway",)
        rows.append([scenario.label, *(_memory_cell(res[target].get("memory")) for target in targets)])
    if not rows:
        return ""
    header = ["scenario", "gateway", "LiteLLM"][: max(map(len, rows))]
    title = "memory of the web processes, MB: RSS summed over all of a server's processes, idle / peak / end"
    return "\n".join([title, *("  " + line for line in _columns([header, *rows]))])


def soak(results: dict, minutes: float) -> str:
    res = results.get("soak")
    if not res or "gateway" not in res:
        return ""
    scenario = SCENARIOS["soak"]
    lines = [
        f"soak: {minutes:g} min at {scenario.connections} connections on provider {scenario.provider};"
        f" memory of all the server's processes every {scenario.memory_interval:g} s,"
        " growth = last ÷ first - 1",
        f"(gateway targets, on PSS — RSS summed counts shared pages once per process: growth"
        f" < {SOAK_MAX_GROWTH_PCT:g} %, max ≤ {SOAK_MAX_PSS_MB:g} MB, errors 0)",
    ]
    rows = []
    for target, label in (("gateway", "gateway"), ("litellm", "LiteLLM")):
        r = res.get(target)
        if r is None:
            continue
        mem = r["memory"]
        pss_peak, growth = mem["pss_peak"]["pss_mb"], mem["pss_growth_pct"]
        row = [
            label,
            f"PSS first ({mem['first']['t_s']:g} s) {mem['first']['pss_mb']:.1f} MB",
            f"last {mem['end']['pss_mb']:.1f} MB",
            f"max {pss_peak:.1f} MB",
            f"growth {growth:+.1f} %" if growth is not None else "growth ?",
            f"(RSS summed {mem['first']['rss_mb']:.0f} → {mem['end']['rss_mb']:.0f} MB,"
            f" {mem['growth_pct']:+.1f} %)",
            f"{r['requests_per_sec']:.0f} req/s",
            f"errors {r['errors']}",
        ]
        if target == "gateway":
            met = (
                growth is not None
                and growth < SOAK_MAX_GROWTH_PCT
                and pss_peak <= SOAK_MAX_PSS_MB
                and r["errors"] == 0
            )
            row.append("targets met" if met else "TARGETS NOT MET")
        rows.append(row)
    return "\n".join(lines + ["  " + line for line in _columns(rows)])


def _met(value: float, target: float) -> str:
    return f"target ≤ {target:g} ms: {'met' if value <= target else 'NOT MET'}"


def targets(results: dict) -> str:
    """The issues' targets on the p50 the gateway adds: over the baseline, or (compare_key) with one key
    over the other, as the median of the pairs' differences."""
    lines = []
    for name, res in results.items():
        scenario, gw = SCENARIOS[name], res.get("gateway")
        if scenario.target_ms is None or gw is None:
            continue
        if scenario.compare_key:
            diff = gw.get("median_difference_ms")
            if diff is None:
                continue
            pairs = " ".join(f"{p['difference_ms']:+.3f}" for p in gw["pairs"])
            lines.append(
                f"  {scenario.label}: p50 with the {scenario.compare_key} key - with the default key,"
                f" median of {len(gw['pairs'])} pairs (A B, B A, ...): {diff:+.3f} ms ({pairs})"
                f"  {_met(diff, scenario.target_ms)}"
            )
            for key, result in gw["keys"].items():
                cpu = result["server_cpu"]["ms_per_request"]
                lines.append(
                    f"    {key + ' key':<14} p50 {format_value(metric_value(result, 'p50'), 'p50')} ms"
                    f" (median of its runs), {result['requests']} requests, {result['errors']} errors,"
                    f" server CPU {'-' if cpu is None else f'{cpu:.2f}'} ms/request"
                )
            continue
        base, value = metric_value(res.get("baseline"), "p50"), metric_value(gw, "p50")
        if base is None or value is None:
            continue
        added = value - base
        lines.append(
            f"  {scenario.label}: p50 gateway - no gateway {added:+.2f} ms  {_met(added, scenario.target_ms)}"
        )
    if not lines:
        return ""
    return "\n".join(["issue targets, p50 the gateway adds:", *lines])


def catch_up(results: dict) -> str:
    """How long after the load stopped the request log held every request wrk completed."""
    rows = []
    for name, res in results.items():
        info = res.get("gateway", {}).get("log_catch_up")
        if info is None:
            continue
        reached = f"{info['reached_s']:.1f} s" if info["reached_s"] is not None else "never (rows missing)"
        row = [SCENARIOS[name].label, f"all of wrk's requests logged after {reached}"]
        row.append(f"count stopped changing after {info['settled_s']:.1f} s")
        if name == "throughput":
            ok = info["reached_s"] is not None and info["reached_s"] <= LOG_CATCH_UP_TARGET_S
            row.append(f"target ≤ {LOG_CATCH_UP_TARGET_S:g} s: {'met' if ok else 'NOT MET'}")
        rows.append(row)
    if not rows:
        return ""
    title = "request-log catch-up once the load stopped (row count polled every 0.1 s):"
    return "\n".join([title, *("  " + line for line in _columns(rows))])


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
