"""Anthropic Messages wire format (`/v1/messages`)."""

import os

from tests.fakes.wire import Resp, args_json, blocks_text, count_words, json_resp, split_text, sse_event

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
TOOL_PREAMBLE = "Checking."
ERRORS = {
    400: ("invalid_request_error", "Invalid request (fake provider)."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
RATE_HEADERS = [
    ("anthropic-ratelimit-requests-limit", "50"),
    ("anthropic-ratelimit-requests-remaining", "0"),
    ("anthropic-ratelimit-requests-reset", "2030-01-01T00:00:01Z"),
    ("anthropic-ratelimit-tokens-limit", "80000"),
    ("anthropic-ratelimit-tokens-remaining", "79000"),
    ("anthropic-ratelimit-tokens-reset", "2030-01-01T00:00:01Z"),
]


def error(status: int, message: str | None = None, *, quota=False, retry_after=None) -> Resp:
    if quota:
        status, etype, default = 400, "billing_error", "Your credit balance is too low to access the API."
    else:
        etype, default = ERRORS.get(
            status,
            ("api_error", "Internal server error")
            if status >= 500
            else ("invalid_request_error", "Request failed."),
        )
    rid = "req_fake_" + os.urandom(6).hex()
    headers = [("request-id", rid), *(RATE_HEADERS if status == 429 else [])]
    if retry_after:
        headers.append(("retry-after", retry_after))
    body = {"type": "error", "error": {"type": etype, "message": message or default}, "request_id": rid}
    return json_resp(status, body, headers)


def check_auth(headers: dict, query: dict) -> Resp | None:
    key = headers.get("x-api-key", "")
    if not key:
        return error(401, "x-api-key header is required")
    if key == "bad-key":
        return error(401)
    if not headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    return None


def models(path: str) -> Resp:
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in MODELS
    ]
    return json_resp(200, {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})


def validate(body: dict) -> Resp | None:
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return error(400, "messages: Field required")
    if not isinstance(body.get("max_tokens"), int):
        return error(400, "max_tokens: Field required")
    return None


def last_user_text(body: dict) -> str:
    for msg in reversed(body["messages"]):
        if isinstance(msg, dict) and msg.get("role") == "user":
            texts = blocks_text(msg.get("content"))
            if texts:
                return " ".join(texts)
    return ""


def prompt_tokens(body: dict) -> int:
    total = sum(count_words(t) for t in blocks_text(body.get("system")))
    for msg in body["messages"]:
        if not isinstance(msg, dict):
            continue
        total += sum(count_words(t) for t in blocks_text(msg.get("content")))
        for result in _tool_results(msg.get("content")):
            total += sum(count_words(t) for t in blocks_text(result))
    return total


def _tool_results(content) -> list:
    if not isinstance(content, list):
        return []
    return [b.get("content") for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def max_tokens(body: dict):
    return body.get("max_tokens")


def is_stream(body: dict, call) -> bool:
    return bool(body.get("stream"))


def _texts(plan) -> list[str]:
    return plan.pieces or ([TOOL_PREAMBLE] if plan.tools else [])


def usage(plan) -> dict:
    return {
        "input_tokens": plan.prompt_tokens - plan.cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": plan.cached,
        "output_tokens": plan.completion_tokens(extra_pieces=len(_texts(plan)) - len(plan.pieces)),
    }


def complete(call, plan) -> Resp:
    texts = _texts(plan)
    content = [{"type": "text", "text": "".join(texts)}] if texts else []
    content += [
        {"type": "tool_use", "id": f"toolu_fake_{i}", "name": name, "input": args}
        for i, (name, args) in enumerate(plan.tools)
    ]
    return json_resp(
        200,
        {
            "id": "msg_" + call.rid,
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": STOP[plan.finish],
            "stop_sequence": None,
            "usage": usage(plan),
        },
        [("request-id", "req_" + call.rid)],
    )


def stream(call, plan):
    u = usage(plan)
    start_usage = dict(u, output_tokens=1)
    yield sse_event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_" + call.rid,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": call.model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    yield sse_event("ping", {"type": "ping"})
    if plan.malformed:
        yield b"event: content_block_delta\ndata: {broken\n\n"
        return
    index = 0
    texts = _texts(plan)
    if texts:
        yield sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        for i, piece in enumerate(texts):
            if plan.stream_error_after is not None and i >= plan.stream_error_after:
                break
            yield sse_event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
    if plan.stream_error_after is not None:
        overloaded = {"type": "overloaded_error", "message": "Overloaded"}
        yield sse_event("error", {"type": "error", "error": overloaded})
        return
    if texts:
        yield sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        index = 1
    for i, (name, args) in enumerate(plan.tools):
        block = {"type": "tool_use", "id": f"toolu_fake_{i}", "name": name, "input": {}}
        yield sse_event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )
        for frag in split_text(args_json(args)):
            delta = {"type": "input_json_delta", "partial_json": frag}
            yield sse_event(
                "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
            )
        yield sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    yield sse_event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": STOP[plan.finish], "stop_sequence": None},
            "usage": {"output_tokens": u["output_tokens"]},
        },
    )
    yield sse_event("message_stop", {"type": "message_stop"})
