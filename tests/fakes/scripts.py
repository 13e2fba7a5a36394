"""Behaviour directives: `!tokens` in the last user message decide what the fake answers.

A directive is a whitespace-separated token starting with `!`; several may be combined.
Directives taking an argument consume the following token. Unknown directives are ignored.
"Last user message" = the last user message that has text (tool-result-only turns are skipped).

  (none)                  "Hello from the fake provider." in 4 pieces ("Hello", " from", " the fake", ...)
  !words N                "w0 w1 ... wN-1", one word per piece
  !echo                   one piece: the request body as compact JSON
  !tool NAME / !tools2    tool call(s) with arguments {"city": "Paris"} (10 completion tokens each)
  !length                 first half of the pieces (at least 1), finish length
  !content-filter         no content, finish content_filter
  !error CODE             HTTP CODE with the format's error body (429: retry-after 1)
  !retry-after X          retry-after header value for the error
  !insufficient-quota     OpenAI/Gemini 429 quota error, Anthropic 400 billing_error
  !fail-first N           the first N requests with this exact text fail (500, or !error's CODE)
  !stream-error-after K   stream K content pieces, then an in-stream error (Gemini: connection dropped)
  !slow MS / !chunk-delay MS   wait before the headers / between stream events
  !linger MS              streams: hold the body open MS after the last event before ending it
  !cached N / !reasoning N     cached prompt tokens (capped at the prompt) / reasoning tokens
  !malformed / !disconnect     broken JSON / connection closed early
"""

from dataclasses import dataclass, field

import orjson

from tests.fakes.wire import TOOL_ARGS

DEFAULT_PIECES = ("Hello", " from", " the fake", " provider.")
DEFAULT_TEXT = "".join(DEFAULT_PIECES)
TOOL_TOKENS = 10  # completion tokens charged per tool call

WITH_ARG = {
    "words",
    "error",
    "retry-after",
    "fail-first",
    "stream-error-after",
    "tool",
    "slow",
    "chunk-delay",
    "linger",
    "cached",
    "reasoning",
}


@dataclass(slots=True)
class Plan:
    """What to answer: built once per request, rendered by a wire-format module."""

    prompt_tokens: int
    pieces: list[str] = field(default_factory=lambda: list(DEFAULT_PIECES))
    finish: str = "stop"  # stop | length | tool_calls | content_filter (OpenAI names)
    tools: list[tuple[str, dict]] = field(default_factory=list)
    cached: int = 0
    reasoning: int = 0
    error: int | None = None  # HTTP status to fail with
    quota: bool = False  # insufficient quota / billing error
    retry_after: str | None = None
    slow_ms: int = 0
    chunk_delay_ms: int = 0
    linger_ms: int = 0
    stream_error_after: int | None = None
    malformed: bool = False
    disconnect: bool = False

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def completion_tokens(self, extra_pieces: int = 0, n: int = 1) -> int:
        return (len(self.pieces) + extra_pieces + TOOL_TOKENS * len(self.tools)) * n + self.reasoning


def parse_directives(text: str) -> dict[str, str | None]:
    if "!" not in text:
        return {}
    tokens = text.split()
    found: dict[str, str | None] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if len(tok) < 2 or tok[0] != "!":
            continue
        name = tok[1:].lower()
        if name in WITH_ARG and i < len(tokens) and not tokens[i].startswith("!"):
            found[name] = tokens[i]
            i += 1
        else:
            found[name] = found.get(name)
    return found


def _int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip(".,;:)\"'"))
    except ValueError:
        return default


def make_plan(text: str, prompt_tokens: int, max_tokens, body, failures: dict) -> Plan:
    """`failures` maps a last-message text to how many `!fail-first` failures it has had."""
    plan = Plan(prompt_tokens=prompt_tokens)
    d = parse_directives(text)
    if d:
        _apply(plan, d, text, body, failures)
    if (
        not plan.tools
        and isinstance(max_tokens, int)
        and not isinstance(max_tokens, bool)
        and 0 < max_tokens < len(plan.pieces)
    ):
        plan.pieces = plan.pieces[:max_tokens]
        plan.finish = "length"
    return plan


def _apply(plan: Plan, d: dict, text: str, body, failures: dict) -> None:
    if "echo" in d:
        plan.pieces = [orjson.dumps(body).decode()]
    elif "words" in d:
        n = _int(d["words"], 10)
        plan.pieces = [f"w{i}" if i == 0 else f" w{i}" for i in range(n)]
    if "tools2" in d:
        plan.tools = [("get_weather", dict(TOOL_ARGS)), ("get_time", dict(TOOL_ARGS))]
    elif "tool" in d:
        plan.tools = [(d["tool"] or "get_weather", dict(TOOL_ARGS))]
    if plan.tools:
        plan.pieces, plan.finish = [], "tool_calls"
    if "length" in d:
        plan.pieces, plan.finish = plan.pieces[: max(1, len(plan.pieces) // 2)], "length"
    if "content-filter" in d:
        plan.pieces, plan.finish = [], "content_filter"
    plan.cached = min(_int(d.get("cached"), 0), plan.prompt_tokens)
    plan.reasoning = _int(d.get("reasoning"), 0)
    plan.slow_ms = _int(d.get("slow"), 0)
    plan.chunk_delay_ms = _int(d.get("chunk-delay"), 0)
    plan.linger_ms = _int(d.get("linger"), 0)
    if "stream-error-after" in d:
        plan.stream_error_after = _int(d["stream-error-after"], 1)
    plan.malformed = "malformed" in d
    plan.disconnect = "disconnect" in d
    status = _int(d["error"], 500) if "error" in d else None
    if "fail-first" in d:
        seen = failures.get(text, 0)
        failures[text] = seen + 1
        status = (status or 500) if seen < _int(d["fail-first"], 1) else None
    if "insufficient-quota" in d:
        status, plan.quota = 429, True
    plan.error = status
    if "retry-after" in d:
        plan.retry_after = d["retry-after"] or "1"
    elif status == 429 and not plan.quota:
        plan.retry_after = "1"
