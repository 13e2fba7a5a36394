"""Quick tests of the fake provider (no Django needed: run with ``-p no:django``)."""

import http.client
import json
import socket
import time

import openai
import pytest
import requests

from tests.fakes.server import FakeProvider

OA = {"Authorization": "Bearer k"}
AN = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
GE = {"x-goog-api-key": "k"}


@pytest.fixture(scope="module")
def fake():
    provider = FakeProvider(host="127.0.0.1", port=0).start()
    yield provider
    provider.stop()


@pytest.fixture(autouse=True)
def _clean(fake):
    fake.clear()


@pytest.fixture()
def client(fake):
    return openai.OpenAI(base_url=fake.url + "/v1", api_key="k", max_retries=0)


def chat(fake, text, headers=OA, **kw):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **kw}
    return requests.post(fake.url + "/v1/chat/completions", headers=headers, json=body, timeout=10)


def sse_json(resp) -> list:
    return [
        json.loads(line[6:])
        for line in resp.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def anthropic(fake, text, headers=AN, **kw):
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "system": "Be terse.",
        "messages": [{"role": "user", "content": text}],
        **kw,
    }
    return requests.post(fake.url + "/v1/messages", headers=headers, json=body, timeout=10)


def anthropic_events(resp) -> list[tuple[str, dict]]:
    events = []
    for block in resp.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def gemini(fake, text, stream=False, headers=GE, query=""):
    verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
    url = f"{fake.url}/v1beta/models/gemini-2.5-flash:{verb}"
    if query:
        url += ("&" if "?" in url else "?") + query
    body = {
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "contents": [{"role": "user", "parts": [{"text": text}]}],
    }
    return requests.post(url, headers=headers, json=body, timeout=10)


# ---- OpenAI ---------------------------------------------------------------------------------


def test_openai_non_stream_sdk(fake, client):
    resp = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Say hello please"},
        ],
    )
    completion = resp.parse()
    assert completion.object == "chat.completion" and isinstance(completion.created, int)
    assert completion.model == "gpt-4o"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content == "Hello from the fake provider."
    assert completion.usage.prompt_tokens == 5 and completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == 9
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0
    assert completion._request_id == resp.headers["x-request-id"]
    req = fake.last
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer k" and req["json"]["model"] == "gpt-4o"


def test_openai_stream_without_usage(fake):
    resp = chat(fake, "hi", stream=True)
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text.endswith("data: [DONE]\n\n")
    chunks = sse_json(resp)
    assert all("usage" not in c for c in chunks)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == [
        "Hello",
        " from",
        " the fake",
        " provider.",
    ]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_openai_stream_with_usage(fake, client):
    chunks = sse_json(
        chat(fake, "one two !cached 2 !reasoning 3", stream=True, stream_options={"include_usage": True})
    )
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] == 6 and last["usage"]["completion_tokens"] == 4 + 3
    assert last["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    assert last["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    sdk_chunks = list(stream)
    assert sdk_chunks[-1].usage.total_tokens == 1 + 4


def test_openai_tool_call_stream_helper(fake, client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with client.chat.completions.stream(
        model="gpt-4o", tools=tools, messages=[{"role": "user", "content": "!tool get_weather"}]
    ) as s:
        final = s.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.role == "assistant"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id == "call_fake_0"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    fragments = [
        c
        for c in sse_json(chat(fake, "!tool get_weather", stream=True))
        if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    ]
    assert len(fragments) >= 4  # id/name fragment + at least 3 argument fragments


def test_openai_parallel_tools_non_stream(fake):
    body = chat(fake, "!tools2").json()
    msg = body["choices"][0]["message"]
    assert msg["content"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["get_weather", "get_time"]
    assert body["usage"]["completion_tokens"] == 20


def test_openai_errors(fake, client):
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "!error 500"}])
    assert exc.value.status_code == 500 and exc.value.type == "server_error"
    resp = chat(fake, "!error 429")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
    assert resp.headers["x-ratelimit-limit-requests"] == "60"
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert chat(fake, "!error 429 !retry-after 7").headers["retry-after"] == "7"
    quota = chat(fake, "!insufficient-quota")
    assert quota.status_code == 429 and quota.json()["error"]["code"] == "insufficient_quota"
    bad = openai.OpenAI(base_url=fake.url + "/v1", api_key="bad-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.models.list()
    assert exc.value.code == "invalid_api_key" and exc.value.type == "invalid_request_error"
    assert chat(fake, "hi", headers={}).status_code == 401


def test_fail_first(fake):
    codes = [chat(fake, "retry me !fail-first 2").status_code for _ in range(4)]
    assert codes == [500, 500, 200, 200]
    assert chat(fake, "other !fail-first 1 !error 429").status_code == 429
    assert chat(fake, "other !fail-first 1 !error 429").status_code == 200


def test_openai_stream_words_2000(client):
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "!words 2000"}], stream=True
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 2000 and pieces[0] == "w0" and pieces[1] == " w1" and pieces[-1] == " w1999"


def test_openai_stream_error_after(client):
    got = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "!stream-error-after 2"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert got == ["Hello", " from"]


def test_openai_variants(fake):
    body = chat(fake, "!words 10", max_tokens=3, n=2).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["choices"][1]["message"]["content"] == "w0 w1 w2"
    assert body["choices"][0]["finish_reason"] == "length"
    assert chat(fake, "!length").json()["choices"][0]["finish_reason"] == "length"
    assert chat(fake, "!content-filter").json()["choices"][0]["finish_reason"] == "content_filter"
    sent = {"model": "gpt-4o", "messages": [{"role": "user", "content": "!echo"}], "temperature": 0.5}
    echoed = requests.post(fake.url + "/v1/chat/completions", headers=OA, json=sent, timeout=5).json()
    assert json.loads(echoed["choices"][0]["message"]["content"]) == sent
    assert chat(fake, "!malformed").text == '{"not json'
    assert "data: {broken" in chat(fake, "!malformed", stream=True).text
    with pytest.raises(requests.ConnectionError):
        chat(fake, "!disconnect")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        chat(fake, "!disconnect", stream=True)


def test_models_and_404(fake, client):
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o" in ids
    assert client.models.retrieve("meta-llama/Llama-3.1-8B-Instruct").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    anth = requests.get(fake.url + "/v1/models", headers=AN, timeout=5).json()
    assert anth["data"][0]["type"] == "model"
    assert requests.get(fake.url + "/v1beta/models", headers=GE, timeout=5).json()["models"]
    missing = requests.post(fake.url + "/v2/nothing", json={}, timeout=5)
    assert missing.status_code == 404 and "error" in missing.json()


# ---- HTTP behaviour -------------------------------------------------------------------------


def test_keep_alive_and_connection_close(fake):
    with requests.Session() as s:
        for _ in range(2):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            assert s.post(fake.url + "/v1/chat/completions", headers=OA, json=body, timeout=5).ok
    assert fake.requests[0].peer == fake.requests[1].peer
    with socket.create_connection((fake.host, fake.port), timeout=5) as sock:
        sock.sendall(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"connection: close" in data


def test_chunked_request_body(fake):
    raw = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "a b c"}]}).encode()
    resp = requests.post(
        fake.url + "/v1/chat/completions", headers=OA, data=iter([raw[:10], raw[10:]]), timeout=5
    )
    assert resp.ok and resp.json()["usage"]["prompt_tokens"] == 3
    assert fake.last.headers["transfer-encoding"] == "chunked"


def test_slow_and_chunk_delay(fake):
    t0 = time.perf_counter()
    chat(fake, "!slow 200")
    assert time.perf_counter() - t0 >= 0.2
    t0 = time.perf_counter()
    chat(fake, "!chunk-delay 50", stream=True)
    assert time.perf_counter() - t0 >= 0.3  # 7 events, 6 gaps


# ---- Anthropic ------------------------------------------------------------------------------


def test_anthropic_non_stream(fake):
    body = anthropic(fake, "hello there !cached 2").json()
    assert body["type"] == "message" and body["stop_reason"] == "end_turn"
    assert body["content"] == [{"type": "text", "text": "Hello from the fake provider."}]
    assert body["usage"] == {
        "input_tokens": 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2,
        "output_tokens": 4,
    }
    tool = anthropic(fake, "!tool get_weather").json()
    assert tool["stop_reason"] == "tool_use"
    assert tool["content"][0] == {"type": "text", "text": "Checking."}
    assert tool["content"][1]["input"] == {"city": "Paris"}
    assert anthropic(fake, "!length").json()["stop_reason"] == "max_tokens"
    assert anthropic(fake, "!content-filter").json()["stop_reason"] == "refusal"


def test_anthropic_stream(fake):
    events = anthropic_events(anthropic(fake, "!tools2", stream=True))
    names = [e for e, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    starts = [d for e, d in events if e == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use", "tool_use"]
    args = "".join(
        d["delta"]["partial_json"] for e, d in events if e == "content_block_delta" and d["index"] == 1
    )
    assert json.loads(args) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == 21
    err = anthropic_events(anthropic(fake, "!stream-error-after 1", stream=True))
    assert err[-1][0] == "error" and err[-1][1]["error"]["type"] == "overloaded_error"


def test_anthropic_errors(fake):
    for code, etype in [
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (500, "api_error"),
        (400, "invalid_request_error"),
        (404, "not_found_error"),
    ]:
        resp = anthropic(fake, f"!error {code}")
        assert resp.status_code == code
        assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == etype
    assert anthropic(fake, "!error 429").headers["retry-after"] == "1"
    billing = anthropic(fake, "!insufficient-quota")
    assert billing.status_code == 400 and billing.json()["error"]["type"] == "billing_error"
    bad = anthropic(fake, "hi", headers={"x-api-key": "bad-key", "anthropic-version": "2023-06-01"})
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
    assert anthropic(fake, "hi", headers={"x-api-key": "k"}).status_code == 400
    assert anthropic(fake, "hi", max_tokens=None).status_code == 400


# ---- Gemini ---------------------------------------------------------------------------------


def test_gemini_non_stream(fake):
    body = gemini(fake, "hello there !cached 1 !reasoning 2").json()
    cand = body["candidates"][0]
    assert cand["content"]["parts"] == [{"text": "Hello from the fake provider."}]
    assert cand["finishReason"] == "STOP"
    assert body["usageMetadata"] == {
        "promptTokenCount": 8,
        "candidatesTokenCount": 4,
        "totalTokenCount": 14,
        "cachedContentTokenCount": 1,
        "thoughtsTokenCount": 2,
    }
    tool = gemini(fake, "!tool get_weather").json()["candidates"][0]
    assert tool["content"]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    assert tool["finishReason"] == "STOP"
    assert gemini(fake, "!length").json()["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert gemini(fake, "!content-filter").json()["candidates"][0]["finishReason"] == "SAFETY"
    assert gemini(fake, "hi", headers={}, query="key=k").ok


def test_gemini_stream(fake):
    resp = gemini(fake, "hi", stream=True)
    assert "[DONE]" not in resp.text
    frags = sse_json(resp)
    assert "".join(f["candidates"][0]["content"]["parts"][0]["text"] for f in frags) == (
        "Hello from the fake provider."
    )
    assert "usageMetadata" in frags[-1] and all("usageMetadata" not in f for f in frags[:-1])
    assert frags[-1]["candidates"][0]["finishReason"] == "STOP"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        gemini(fake, "!stream-error-after 2", stream=True)


def test_words_stream_has_one_event_per_word_in_anthropic_and_gemini(fake):
    # bench/stream_growth.py relies on `!words N` giving N text events in every format
    events = anthropic_events(anthropic(fake, "!words 2000", stream=True, max_tokens=4000))
    texts = [d["delta"]["text"] for e, d in events if e == "content_block_delta"]
    assert len(texts) == 2000 and texts[0] == "w0" and texts[-1] == " w1999"
    frags = sse_json(gemini(fake, "!words 2000", stream=True))
    assert [f["candidates"][0]["content"]["parts"][0]["text"] for f in frags][::1999] == ["w0", " w1999"]
    assert len(frags) == 2000


def test_gemini_errors(fake):
    bad = gemini(fake, "hi", headers={"x-goog-api-key": "bad-key"})
    err = bad.json()["error"]
    assert bad.status_code == 400 and err["status"] == "INVALID_ARGUMENT"
    assert err["details"][0]["reason"] == "API_KEY_INVALID"
    assert gemini(fake, "hi", headers={}).status_code == 403
    limited = gemini(fake, "!error 429")
    assert limited.status_code == 429 and limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert limited.headers["retry-after"] == "1"
    assert gemini(fake, "!error 503").json()["error"] == {
        "code": 503,
        "message": "Fake provider error 503.",
        "status": "UNAVAILABLE",
    }


# ---- throughput (printed, not asserted) -----------------------------------------------------


def test_throughput_sanity(fake, capsys):
    fake.record = False
    try:
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
        conn = http.client.HTTPConnection(fake.host, fake.port)
        headers = {**OA, "Content-Type": "application/json"}
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            conn.request("POST", "/v1/chat/completions", body, headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
        elapsed = time.perf_counter() - t0
        conn.close()
    finally:
        fake.record = True
    with capsys.disabled():
        rate = n / elapsed
        print(f"\nfake provider: {n} sequential keep-alive requests in {elapsed:.2f}s = {rate:.0f} req/s")
