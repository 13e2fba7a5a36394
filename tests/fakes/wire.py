"""Small helpers shared by the three wire-format modules."""

import json
import math

import orjson

# A stream generator yields this to drop the connection without finishing the response.
ABORT = object()

# (status, headers, body). The server adds content-length, x-request-id and connection.
Resp = tuple[int, list[tuple[str, str]], bytes]

TOOL_ARGS = {"city": "Paris"}


def json_resp(status: int, obj, headers=()) -> Resp:
    return status, [("content-type", "application/json"), *headers], orjson.dumps(obj)


def sse_data(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_event(name: str, obj) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def args_json(args) -> str:
    """Tool arguments as OpenAI sends them: a JSON string, e.g. '{"city": "Paris"}'."""
    return json.dumps(args)


def split_text(text: str, parts: int = 4) -> list[str]:
    """Split a string into `parts` roughly equal fragments (for streamed tool arguments)."""
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def count_words(text) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def blocks_text(content, kind: str = "text") -> list[str]:
    """Text of a string content or of a list of `{type: "text", text}` blocks/parts."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == kind]
    return []
