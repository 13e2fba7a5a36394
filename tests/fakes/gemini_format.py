"""Google Gemini wire format (`/v1beta/models/{model}:generateContent` and `:streamGenerateContent`)."""

from tests.fakes.wire import ABORT, Resp, count_words, json_resp, sse_data

MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash")
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
BLOCKED = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]


def error(status: int, message: str | None = None, *, quota=False, retry_after=None, details=None) -> Resp:
    if message is None:
        message = (
            "You exceeded your current quota, please check your plan and billing details."
            if quota
            else f"Fake provider error {status}."
        )
    code = STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    body = {"error": {"code": status, "message": message, "status": code}}
    headers = []
    if status == 429 and not quota:
        details = (details or []) + [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after or '1'}s"}
        ]
    if retry_after:
        headers.append(("retry-after", retry_after))
    if details:
        body["error"]["details"] = details
    return json_resp(status, body, headers)


def check_auth(headers: dict, query: dict) -> Resp | None:
    key = headers.get("x-goog-api-key") or query.get("key")
    if not key:
        return error(
            403,
            "Method doesn't allow unregistered callers (callers without established "
            "identity). Please use API Key or other form of API consumer identity to call this API.",
        )
    if key == "bad-key":
        return error(
            400,
            "API key not valid. Please pass a valid API key.",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )
    return None


def models(path: str) -> Resp:
    data = [
        {
            "name": "models/" + m,
            "displayName": m,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
        }
        for m in MODELS
    ]
    return json_resp(200, {"models": data})


def validate(body: dict) -> Resp | None:
    if not isinstance(body.get("contents"), list) or not body["contents"]:
        return error(400, "* GenerateContentRequest.contents: contents is not specified")
    return None


def _texts(content) -> list[str]:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return []
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


def last_user_text(body: dict) -> str:
    for content in reversed(body["contents"]):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = _texts(content)
            if texts:
                return " ".join(texts)
    return ""


def prompt_tokens(body: dict) -> int:
    contents = [body.get("systemInstruction"), *body["contents"]]
    return sum(count_words(t) for c in contents for t in _texts(c))


def max_tokens(body: dict):
    config = body.get("generationConfig")
    return config.get("maxOutputTokens") if isinstance(config, dict) else None


def is_stream(body: dict, call) -> bool:
    return call.action == "stream" and call.query.get("alt") == "sse"


def usage(plan) -> dict:
    out = {
        "promptTokenCount": plan.prompt_tokens,
        "candidatesTokenCount": plan.completion_tokens() - plan.reasoning,
        "totalTokenCount": plan.prompt_tokens + plan.completion_tokens(),
    }
    if plan.cached:
        out["cachedContentTokenCount"] = plan.cached
    if plan.reasoning:
        out["thoughtsTokenCount"] = plan.reasoning
    return out


def _fragment(call, parts, finish=None, plan=None) -> dict:
    candidate = {"index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish:
        candidate["finishReason"] = finish
        if finish == "SAFETY":
            candidate["safetyRatings"] = BLOCKED
    out = {"candidates": [candidate]}
    if plan is not None:
        out["usageMetadata"] = usage(plan)
    out["modelVersion"] = call.model
    out["responseId"] = call.rid
    return out


def _calls(plan) -> list[dict]:
    return [{"functionCall": {"name": name, "args": args}} for name, args in plan.tools]


def _fragments(call, plan):
    """The response as stream fragments: one per text piece, the last with finishReason and usage."""
    pieces = plan.pieces
    for piece in pieces[:-1]:
        yield _fragment(call, [{"text": piece}])
    last = [{"text": pieces[-1]}] if pieces else []
    yield _fragment(call, last + _calls(plan), FINISH[plan.finish], plan)


def complete(call, plan) -> Resp:
    if call.action == "stream":  # streamGenerateContent without alt=sse: a JSON array of fragments
        return json_resp(200, list(_fragments(call, plan)))
    parts = ([{"text": plan.text}] if plan.pieces else []) + _calls(plan)
    return json_resp(200, _fragment(call, parts, FINISH[plan.finish], plan))


def stream(call, plan):
    if plan.malformed:
        yield b"data: {broken\n\n"
        return
    if plan.stream_error_after is not None:
        for piece in plan.pieces[: plan.stream_error_after]:
            yield sse_data(_fragment(call, [{"text": piece}]))
        yield ABORT
        return
    for fragment in _fragments(call, plan):
        yield sse_data(fragment)
