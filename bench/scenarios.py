"""What is measured. Each scenario runs with the same body and wrk settings straight at the fake provider
(the no-gateway baseline), through the gateway in front of that same fake and, unless --no-litellm, through
LiteLLM's proxy in front of it. Scenarios on Anthropic or Gemini models send the baseline in that provider's
own API (`Native`): the request the gateway itself sends the fake for that scenario's body."""

from __future__ import annotations

from dataclasses import dataclass

CHAT_PATH = "/v1/chat/completions"
PROMPT = "Say hello to the benchmark"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
# A slow stream, as from provider B: 100 one-word events 100 ms apart (the fake's directives), after B's
# 500 ms: each stream stays open ~10.4 s.
SLOW_STREAM_BODY = {
    **STREAM_BODY,
    "messages": [{"role": "user", "content": f"{PROMPT} !words 100 !chunk-delay 100"}],
}

# The fake providers: A answers at once, B waits 500 ms before every answer (a slow LLM).
PROVIDER_DELAY_MS = {"A": 0, "B": 500}

# Extra API keys, by name: `manage.py create_api_key` flags. "limited" has every limit the gateway checks
# per request (rpm, tpm, parallel, monthly budget), each far above what one connection can reach.
KEY_FLAGS = {
    "limited": (
        *("--name", "bench-limited", "--rpm", "100000000", "--tpm", "2000000000"),
        *("--parallel", "10000", "--monthly-budget", "1000000"),
    ),
}


@dataclass(frozen=True)
class Native:
    """A request in a provider's own API, sent straight to the fake for a scenario's baseline."""

    path: str  # with its query string, e.g. "...:streamGenerateContent?alt=sse"
    body: dict
    headers: dict


def stream_body(model: str = "gpt-4o", text: str = PROMPT) -> dict:
    return {**STREAM_BODY, "model": model, "messages": [{"role": "user", "content": text}]}


# What the gateway sends the fake for stream_body(model, text) (gateway/providers/anthropic.py, gemini.py):
# the catalogue's upstream id and its max_output_tokens, the text as blocks / parts.
ANTHROPIC_MODEL = "claude-sonnet-4-5"  # catalogue alias of claude-sonnet-4-5-20250929, provider anthropic
GEMINI_MODEL = "gemini-2.5-flash"  # provider gemini


def openai_native(text: str = PROMPT) -> Native:
    return Native(CHAT_PATH, stream_body(text=text), {"Authorization": "Bearer sk-no-gateway"})


def anthropic_native(text: str = PROMPT) -> Native:
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 64000,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "stream": True,
    }
    return Native("/v1/messages", body, {"x-api-key": "sk-no-gateway", "anthropic-version": "2023-06-01"})


def gemini_native(text: str = PROMPT) -> Native:
    return Native(
        f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": text}]}]},
        {"x-goog-api-key": "sk-no-gateway"},
    )


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
    native: Native | None = None  # the baseline's request, when not `body` at the fake's /v1/chat/completions
    litellm: bool = True  # LiteLLM's config routes gpt-4o only: False for other models and limits
    # the gateway is measured with the unlimited key (A) and with KEY_FLAGS[compare_key] (B), in `pairs`
    # pairs of runs of ceil(duration / pairs) s, ordered A B, B A, ... so that drift hits both alike
    compare_key: str | None = None
    pairs: int = 0
    target_ms: float | None = None  # issue target for the p50 added: gateway - baseline (compare_key: B - A)
    client: str = "wrk"  # or "stream_growth": bench/stream_growth.py measures it (Python client, no wrk)
    in_default: bool = True  # in --scenarios' default set
    soak: bool = False  # opt-in (--soak-minutes N): runs N minutes


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("latency", "latency", BODY, 1, 1, "A", ("p50", "p90", "p99")),
        Scenario("latency_stream", "latency_stream", STREAM_BODY, 1, 1, "A", ("p50",)),
        Scenario(
            "latency_limited",
            "latency_limited",
            BODY,
            1,
            1,
            "A",
            ("p50", "p90", "p99"),
            litellm=False,
            compare_key="limited",
            pairs=4,
            target_ms=0.3,
        ),
        Scenario(
            "anthropic_stream",
            "anthropic_stream",
            stream_body(ANTHROPIC_MODEL),
            1,
            1,
            "A",
            ("p50",),
            native=anthropic_native(),
            litellm=False,
            target_ms=5.0,
        ),
        Scenario(
            "gemini_stream",
            "gemini_stream",
            stream_body(GEMINI_MODEL),
            1,
            1,
            "A",
            ("p50",),
            native=gemini_native(),
            litellm=False,
            target_ms=5.0,
        ),
        Scenario(
            "long_stream",
            "long_stream",
            STREAM_BODY,  # bench/stream_growth.py sends its own bodies, in the three formats
            1,
            1,
            "A",
            (),
            with_baseline=False,  # the client alternates straight-at-the-fake and gateway streams itself
            litellm=False,
            client="stream_growth",
        ),
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
            in_default=False,
            soak=True,
        ),
    )
}
