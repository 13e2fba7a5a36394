"""`long_stream`: does the gateway's cost per streamed chunk stay flat as a stream grows (issue #3)?

    .venv/bin/python -m bench.run --no-litellm --scenarios long_stream --duration 5
    .venv/bin/python -m bench.stream_growth --duration 5      # the same

A Python client (http.client, one keep-alive connection per target) asks fake provider A for streams of
200 and 2,000 one-word chunks (`!words N`), in OpenAI's, Anthropic's and Gemini's own API straight at the
fake, and through the gateway in OpenAI's format with a model of that provider; for each stream it notes
when the request was sent and when each `data:` line arrived. Straight and gateway streams alternate, and so
do the sizes, so that a noisy machine's drift hits all alike. Per format and size it reports the median time
to the last byte of both, the time the gateway adds per chunk and the gateway's CPU per chunk; and for the
2,000-chunk stream the mean gap between chunks over chunks 1,000-1,500 ("early") and the last 500 ("late").
Targets: the time added per chunk of the 2,000-chunk stream at most 1.2x that of the 200-chunk one, and the
gateway's late gap at most 1.2x its early one.
"""

from __future__ import annotations

import http.client
import statistics
import sys
import time
from urllib.parse import urlsplit

import orjson

from bench import processes
from bench.loads import Load
from bench.scenarios import (
    ANTHROPIC_MODEL,
    CHAT_PATH,
    GEMINI_MODEL,
    PROMPT,
    Native,
    anthropic_native,
    gemini_native,
    openai_native,
    stream_body,
)

SIZES = (200, 2000)
WINDOW = 500  # chunks: gaps over the last WINDOW chunks of the longest stream and the WINDOW before them
GROWTH_TARGET = 1.2
FORMATS = {  # format: (model through the gateway, its native request straight at the fake)
    "openai": ("gpt-4o", openai_native),
    "anthropic": (ANTHROPIC_MODEL, anthropic_native),
    "gemini": (GEMINI_MODEL, gemini_native),
}


class Client:
    """One keep-alive HTTP/1.1 connection; `stream()` times one streamed answer."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def stream(self, path: str, body: dict, headers: dict) -> dict:
        """Send, then read line by line: the total time to the last byte and when each `data:` line came."""
        payload = orjson.dumps(body)
        clock = time.perf_counter
        started = clock()
        self.conn.request("POST", path, body=payload, headers={"Content-Type": "application/json", **headers})
        response = self.conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {response.read()[:300]!r}")
        arrivals = [clock() for line in response if line.startswith(b"data:")]
        ended = clock()
        return {"total_ms": 1000 * (ended - started), "arrivals": [t - started for t in arrivals]}

    def close(self) -> None:
        self.conn.close()


def _gap_us(arrivals: list[float], late: bool) -> float | None:
    """Mean gap between chunks, in µs, over the last WINDOW chunks (late) or the WINDOW before them (early).
    Not the first ~1,000 of 2,000: they come in bursts while the fake is still writing (~5 µs an event; on 2
    cores the fake, the gateway and the client take turns): the client drains a backlog at its own ~5 µs
    a chunk, then waits 30-50 µs. Once the fake is done, the gaps are the gateway's steady ~15-20 µs."""
    if len(arrivals) <= 2 * WINDOW:
        return None
    if late:
        return 1e6 * (arrivals[-1] - arrivals[-1 - WINDOW]) / WINDOW
    return 1e6 * (arrivals[-1 - WINDOW] - arrivals[-1 - 2 * WINDOW]) / WINDOW


def load(fake_url: str, gateway_url: str, key: str, sid: int) -> Load:
    """A `bench.loads.Load`: streams for `duration` s in all, a third of it per format, in whole rounds
    (each size once straight and once through the gateway; the order flips every round). `requests` counts
    the gateway's streams."""
    urls = {"direct": fake_url, "gateway": gateway_url}

    def run(duration: int) -> dict:
        clients = {target: Client(url) for target, url in urls.items()}
        streams = {fmt: {size: {**{t: [] for t in urls}, "cpu_s": 0.0} for size in SIZES} for fmt in FORMATS}
        errors: list[str] = []

        def one(target: str, fmt: str, size: int) -> None:
            model, native = FORMATS[fmt]
            text = f"{PROMPT} !words {size}"
            if target == "direct":
                request = native(text)
            else:
                request = Native(CHAT_PATH, stream_body(model, text), {"Authorization": f"Bearer {key}"})
            cpu = processes.session_cpu_seconds(sid) if target == "gateway" else 0.0
            try:
                timing = clients[target].stream(request.path, request.body, request.headers)
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                errors.append(f"{fmt} {size} {target}: {exc}")
                clients[target].close()
                clients[target] = Client(urls[target])
                return
            if target == "gateway":
                streams[fmt][size]["cpu_s"] += processes.session_cpu_seconds(sid) - cpu
            streams[fmt][size][target].append(timing)

        started = time.monotonic()
        try:
            for fmt in FORMATS:
                deadline = time.monotonic() + duration / len(FORMATS)
                turn = 0
                while turn < len(SIZES) or turn % len(SIZES) or time.monotonic() < deadline:
                    order = list(urls) if (turn // len(SIZES)) % 2 == 0 else list(urls)[::-1]
                    for target in order:
                        one(target, fmt, SIZES[turn % len(SIZES)])
                    turn += 1
        finally:
            for client in clients.values():
                client.close()
        return {
            "requests": sum(len(s["gateway"]) for sizes in streams.values() for s in sizes.values()),
            "errors": len(errors),
            "error_messages": errors[:10],
            "duration_s": round(time.monotonic() - started, 2),
            "formats": {fmt: _summary(sizes) for fmt, sizes in streams.items()},
        }

    return run


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summary(sizes: dict) -> dict:
    """Per size: medians of both targets, what the gateway adds; then the growth checks."""
    out: dict = {}
    for size, s in sizes.items():
        direct = _median([t["total_ms"] for t in s["direct"]])
        gateway = _median([t["total_ms"] for t in s["gateway"]])
        added = gateway - direct if direct is not None and gateway is not None else None
        streams = len(s["gateway"])
        out[size] = {
            "streams": {"direct": len(s["direct"]), "gateway": streams},
            "data_lines": {
                "direct": _median([len(t["arrivals"]) for t in s["direct"]]),
                "gateway": _median([len(t["arrivals"]) for t in s["gateway"]]),
            },
            "direct_ms": direct,
            "gateway_ms": gateway,
            "added_ms": added,
            "added_us_per_chunk": 1000 * added / size if added is not None else None,
            "gateway_cpu_us_per_chunk": 1e6 * s["cpu_s"] / (streams * size) if streams else None,
            "gap_us": {
                target: {
                    "early": _median([_gap_us(t["arrivals"], late=False) for t in s[target]]),
                    "late": _median([_gap_us(t["arrivals"], late=True) for t in s[target]]),
                }
                for target in ("direct", "gateway")
            },
            "total_ms": {
                target: [round(t["total_ms"], 3) for t in s[target]] for target in ("direct", "gateway")
            },
        }
    small, large = out[min(SIZES)], out[max(SIZES)]
    growth = _ratio(large["added_us_per_chunk"], small["added_us_per_chunk"])
    gap = large["gap_us"]["gateway"]
    gap_growth = _ratio(gap["late"], gap["early"])
    marginal = None
    if large["added_ms"] is not None and small["added_ms"] is not None:
        marginal = 1000 * (large["added_ms"] - small["added_ms"]) / (max(SIZES) - min(SIZES))
    return {
        "sizes": out,
        "added_per_chunk_growth": growth,  # added µs/chunk, longest stream ÷ shortest
        "marginal_us_per_chunk": marginal,  # (added(2000) - added(200)) / 1800: the fixed cost taken out
        "gap_growth": gap_growth,  # the gateway's gap, late ÷ early
        "target_met": growth is not None
        and gap_growth is not None
        and growth <= GROWTH_TARGET
        and gap_growth <= GROWTH_TARGET,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def section(results: dict) -> str:
    """The long_stream table, printed below bench.run's main table."""
    result = results.get("long_stream", {}).get("gateway")
    if not result or "formats" not in result:
        return ""
    lines = [
        f"long_stream: !words N at fake provider A, one connection; medians of each stream's time to the"
        f" last byte ({result['requests']} gateway streams); gap = mean time between chunks of the"
        f" {max(SIZES)}-chunk stream, the {WINDOW} chunks before the last {WINDOW} / the last {WINDOW}",
    ]
    rows = [
        ["format", "chunks", "streams", "no gateway ms", "gateway ms", "added ms", "added µs/chunk"]
        + ["gateway CPU µs/chunk", "gap no gateway µs", "gap gateway µs"]
    ]
    for fmt, summary in result["formats"].items():
        for size, s in summary["sizes"].items():
            gaps = s["gap_us"]
            rows.append(
                [
                    fmt,
                    str(size),
                    f"{s['streams']['direct']} / {s['streams']['gateway']}",
                    _f(s["direct_ms"], 2),
                    _f(s["gateway_ms"], 2),
                    _f(s["added_ms"], 2),
                    _f(s["added_us_per_chunk"]),
                    _f(s["gateway_cpu_us_per_chunk"]),
                    f"{_f(gaps['direct']['early'])} / {_f(gaps['direct']['late'])}",
                    f"{_f(gaps['gateway']['early'])} / {_f(gaps['gateway']['late'])}",
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.append(
        f"per-chunk growth, target ≤ {GROWTH_TARGET:g}x for both: added µs/chunk {max(SIZES)} ÷"
        f" {min(SIZES)}; gateway gap late ÷ early; marginal = (added {max(SIZES)} - added {min(SIZES)})"
        f" ÷ {max(SIZES) - min(SIZES)} chunks"
    )
    for fmt, summary in result["formats"].items():
        growth, gap = summary["added_per_chunk_growth"], summary["gap_growth"]
        lines.append(
            f"  {fmt:<10} added/chunk {_f(growth, 2)}x  gap {_f(gap, 2)}x"
            f"  marginal {_f(summary['marginal_us_per_chunk'])} µs/chunk"
            f"  {'met' if summary['target_met'] else 'NOT MET'}"
        )
    if result["errors"]:
        lines.append(f"  {result['errors']} failed streams: {result['error_messages']}")
    return "\n".join(lines)


if __name__ == "__main__":
    from bench import run

    sys.exit(run.main(["--scenarios", "long_stream", "--no-litellm", *sys.argv[1:]]))
