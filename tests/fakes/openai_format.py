"""OpenAI Chat Completions wire format (`/v1/chat/completions`, `/v1/models`)."""

import time
from urllib.parse import unquote

from tests.fakes.wire import Resp, args_json, blocks_text, count_words, json_resp, split_text, sse_data

MODELS = ("gpt-4o", "gpt-4o-mini", "o3-mini", "meta-llama/Llama-3.1-8B-Instruct")
CREATED = 1715367049

# status -> (type, code, message)
ERRORS = {
    400: ("invalid_request_error", None, "Invalid request (fake provider)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: bad-k***."),
    403: ("invalid_request_error", None, "You are not allowed to sample from this model."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `x` does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-4o in organization org-fake on requests per min (RPM): Limit 60.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
RATE_HEADERS = [
    ("x-ratelimit-limit-requests", "60"),
    ("x-ratelimit-limit-tokens", "150000"),
    ("x-ratelimit-remaining-requests", "0"),
    ("x-ratelimit-remaining-tokens", "149984"),
    ("x-ratelimit-reset-requests", "1s"),
    ("x-ratelimit-reset-tokens", "6m0s"),
]
QUOTA = (
    "insufficient_quota",
    "insufficient_quota",
    "You exceeded your current quota, please check your plan and billing details.",
)


def error(status: int, message: str | None = None, *, quota=False, retry_after=None, param=None) -> Resp:
    if quota:
        etype, code, default = QUOTA
    else:
        fallback = (
            ("server_error", None, "Server error.")
            if status >= 500
            else ("invalid_request_error", None, "Request failed.")
        )
        etype, code, default = ERRORS.get(status, fallback)
    headers = list(RATE_HEADERS) if status == 429 and not quota else []
    if retry_after:
        headers.append(("retry-after", retry_after))
    body = {"error": {"message": message or default, "type": etype, "param": param, "code": code}}
    return json_resp(status, body, headers)


def check_auth(headers: dict, query: dict) -> Resp | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if token == "bad-key":
        return error(401)
    return None


def models(path: str) -> Resp:
    if path in ("/v1/models", "/v1/models/"):
        data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "system"} for m in MODELS]
        return json_resp(200, {"object": "list", "data": data})
    model = unquote(path[len("/v1/models/") :])
    if model not in MODELS:
        return error(404, f"The model `{model}` does not exist or you do not have access to it.")
    return json_resp(200, {"id": model, "object": "model", "created": CREATED, "owned_by": "system"})


def validate(body: dict) -> Resp | None:
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return error(400, "'messages' must be a non-empty array.", param="messages")
    return None


def last_user_text(body: dict) -> str:
    for msg in reversed(body["messages"]):
        if isinstance(msg, dict) and msg.get("role") == "user":
            texts = blocks_text(msg.get("content"))
            if texts:
                return " ".join(texts)
    return ""


def prompt_tokens(body: dict) -> int:
    return sum(
        count_words(t) for m in body["messages"] if isinstance(m, dict) for t in blocks_text(m.get("content"))
    )


def max_tokens(body: dict):
    limits = [v for v in (body.get("max_tokens"), body.get("max_completion_tokens")) if isinstance(v, int)]
    return min(limits) if limits else None


def is_stream(body: dict, call) -> bool:
    return bool(body.get("stream"))


def usage(plan, n: int = 1) -> dict:
    completion = plan.completion_tokens(n=n)
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": plan.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": plan.cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": plan.reasoning, "audio_tokens": 0},
    }


def _tool_calls(plan) -> list[dict]:
    return [
        {"id": f"call_fake_{i}", "type": "function", "function": {"name": name, "arguments": args_json(args)}}
        for i, (name, args) in enumerate(plan.tools)
    ]


def complete(call, plan) -> Resp:
    n = call.body.get("n")
    n = n if isinstance(n, int) and 1 <= n <= 128 else 1
    message = {"role": "assistant", "content": plan.text if plan.pieces else None, "refusal": None}
    if plan.tools:
        message["tool_calls"] = _tool_calls(plan)
    choices = [
        {"index": i, "message": message, "logprobs": None, "finish_reason": plan.finish} for i in range(n)
    ]
    return json_resp(
        200,
        {
            "id": "chatcmpl-" + call.rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": choices,
            "usage": usage(plan, n),
            "system_fingerprint": None,
        },
    )


def stream(call, plan):
    include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
    head = {
        "id": "chatcmpl-" + call.rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.model,
    }

    def chunk(delta, finish=None):
        out = dict(head, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            out["usage"] = None
        return sse_data(out)

    yield chunk({"role": "assistant", "content": ""})
    if plan.malformed:
        yield b"data: {broken\n\n"
        return
    stop_after = plan.stream_error_after
    for i, piece in enumerate(plan.pieces):
        if stop_after is not None and i >= stop_after:
            break
        yield chunk({"content": piece})
    if stop_after is not None:
        yield sse_data(
            {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        )
        return
    for i, (name, args) in enumerate(plan.tools):
        first = {
            "index": i,
            "id": f"call_fake_{i}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        yield chunk({"tool_calls": [first]})
        for frag in split_text(args_json(args)):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]})
    yield chunk({}, plan.finish)
    if include_usage:
        yield sse_data(dict(head, choices=[], usage=usage(plan)))
    yield b"data: [DONE]\n\n"
