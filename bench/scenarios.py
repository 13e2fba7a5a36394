"""What is measured. Each scenario runs with the same body and wrk settings straight at the fake provider
(the no-gateway baseline), through the gateway in front of that same fake and, unless --no-litellm, through
LiteLLM's proxy in front of it."""

from __future__ import annotations

from dataclasses import dataclass

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
# A slow stream, as from provider B: 100 one-word events 100 ms apart (the fake's directives), after B's
# 500 ms: each stream stays open ~10.4 s.
SLOW_STREAM_BODY = {
    **STREAM_BODY,
    "messages": [{"role": "user", "content": "Say hello to the benchmark !words 100 !chunk-delay 100"}],
}

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
    metrics: tuple[str, ...]  # "p50", "p90", "p99" (latency, ms), "rps" (requests/sec) or "completed"
    min_duration: int = 0  # seconds; the measurement runs max(--duration, this)
    timeout: str = "10s"  # wrk --timeout: slower answers count as socket timeout errors
    always_show_errors: bool = False
    memory_interval: float = 0  # > 0: sample the server's processes' RSS every this many seconds
    settle: float = 10  # after the warm-up, wait up to this long for the server to go idle (cut requests end)
    with_baseline: bool = True  # also measured straight at the fake provider
    soak: bool = False  # opt-in (--soak-minutes N): runs N minutes


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("latency", "latency", BODY, 1, 1, "A", ("p50", "p90", "p99")),
        Scenario("latency_stream", "latency_stream", STREAM_BODY, 1, 1, "A", ("p50",)),
        Scenario("throughput", "throughput", BODY, 32, 2, "A", ("rps",)),
        Scenario(
            "slow",
            "slow (200 conn)",
            BODY,
            200,
            2,
            "B",
            ("rps",),
            min_duration=20,
            always_show_errors=True,
            memory_interval=1.0,
        ),
        Scenario(
            "streams_1000",
            "streams_1000",
            SLOW_STREAM_BODY,
            1000,
            2,
            "B",
            ("completed", "p50"),
            min_duration=40,
            timeout="30s",
            always_show_errors=True,
            memory_interval=1.0,
            settle=180,
        ),
        Scenario(
            "soak",
            "soak (200 conn)",
            BODY,
            200,
            2,
            "B",
            ("rps",),
            always_show_errors=True,
            memory_interval=10.0,
            with_baseline=False,
            soak=True,
        ),
    )
}
