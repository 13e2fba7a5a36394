"""What is measured. Each scenario runs twice with the same body and wrk settings: straight at the fake
provider (the no-gateway baseline) and through the gateway in front of that same fake."""

from __future__ import annotations

from dataclasses import dataclass

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}

# The fake providers: A answers at once, B waits 500 ms before every answer (a slow LLM).
PROVIDER_DELAY_MS = {"A": 0, "B": 500}


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    body: dict
    connections: int
    threads: int
    provider: str  # key of PROVIDER_DELAY_MS
    metrics: tuple[str, ...]  # "p50", "p90", "p99" (latency, ms) or "rps" (requests/sec)
    min_duration: int = 0  # seconds; the measurement runs max(--duration, this)
    timeout: str = "10s"  # wrk --timeout: slower answers count as socket timeout errors
    always_show_errors: bool = False


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("latency", "latency", BODY, 1, 1, "A", ("p50", "p90", "p99")),
        Scenario("latency_stream", "latency_stream", STREAM_BODY, 1, 1, "A", ("p50",)),
        Scenario("throughput", "throughput", BODY, 32, 2, "A", ("rps",)),
        Scenario(
            "slow", "slow (200 conn)", BODY, 200, 2, "B", ("rps",), min_duration=20, always_show_errors=True
        ),
    )
}
