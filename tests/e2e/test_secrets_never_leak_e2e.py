"""Secrets never leak: a client's API key is never logged or stored, and a provider key never reaches a
response, an error, a log, a database row or the admin.

The real server runs at its most verbose (LOG_LEVEL=DEBUG, gunicorn at debug with its access log on), with
a distinct key per provider and one more provider that puts the caller's key into every error it sends, as
careless hosts do. The test drives every path a key travels — answers, streams, provider errors before and
during a stream, validation errors, an unknown model, wrong, revoked and misplaced keys (in the query
string, as Basic auth, in other headers), a client hanging up mid-stream, stored bodies with the key pasted
into the messages, the dashboard and the admin as staff — then searches the server's whole output, every
row of every table, every response and page received (and Redis, when the suite runs on it).
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.apps import apps
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import override_settings

from accounts import keys
from accounts.models import ApiKey, User
from accounts.services import api_key_create, api_key_revoke, user_get_or_create
from analytics.models import RequestLog
from tests.e2e.conftest import LiveServer, wait_for_log
from tests.e2e.test_request_log_e2e import _raw_stream_then_hang_up

pytestmark = pytest.mark.e2e

PASSWORD = "a-long-e2e-passphrase-73"
# A secret counts as leaked where any 16 characters of it past its first 11 appear: the whole key, a
# truncated one or one with its prefix cut all match; the display prefix (nm- and 8 more) does not.
PUBLIC_CHARS = len(keys.KEY_PREFIX) + keys.DISPLAY_CHARS
NEEDLE_CHARS = 16


def needle(secret: str) -> str:
    return secret[PUBLIC_CHARS : PUBLIC_CHARS + NEEDLE_CHARS]


def find_leaks(places: dict[str, str], secrets_by_name: dict[str, str]) -> list[str]:
    """Where each secret appears: 'name in place: …context…', one line per occurrence (5 per place)."""
    found = []
    for name, secret in secrets_by_name.items():
        for place, text in places.items():
            for match in list(re.finditer(re.escape(needle(secret)), text))[:5]:
                context = text[max(match.start() - 120, 0) : match.end() + 60]
                found.append(f"{name} in {place}: …{context!r}…")
    return found


def test_the_search_finds_a_planted_key_whole_or_truncated_but_not_its_prefix_or_digest():
    key = keys.generate()
    assert find_leaks({"log": f"INFO x Authorization: Bearer {key}\n"}, {"key": key})
    assert find_leaks({"row": f'{{"message": "bad key {key[:30]}"}}'}, {"key": key})
    assert find_leaks({"row": key[5:]}, {"key": key})
    harmless = f"key {keys.display_prefix(key)}… digest {keys.digest(key)} masked {key[:6]}****"
    assert find_leaks({"log": harmless}, {"key": key}) == []


# --- a provider that leaks its caller's key into its errors ---------------------------------------------


class _LeakyHost(BaseHTTPRequestHandler):
    """An OpenAI-compatible host that writes the key it was called with into every error it sends.

    The last user message picks the answer: `leak 400|401|403|429|500` (a JSON error), `leak html` (an
    HTML error page), `leak stream` (a stream that fails with an error event); anything else succeeds."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        text = body["messages"][-1]["content"]
        said = f"Incorrect API key provided: {key}. You passed Authorization: Bearer {key}"
        if match := re.search(r"leak (\d{3})", text):
            status = int(match.group(1))
            error = {"message": said, "type": "invalid_request_error", "param": None, "code": None}
            self._send(status, "application/json", json.dumps({"error": error}).encode())
        elif "leak html" in text:
            self._send(502, "text/html", f"<html><body>Bad gateway for {key}</body></html>".encode())
        elif "leak stream" in text:
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
            first = {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}
            events = [first, {"error": {"message": said, "type": "server_error"}}]
            payload = b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)
            self._send(200, "text/event-stream", payload)
        else:
            answer = {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
            self._send(200, "application/json", json.dumps(answer).encode())

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args) -> None:  # noqa: A002 (BaseHTTPRequestHandler's signature)
        pass


@pytest.fixture(scope="module")
def leaky_host():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _LeakyHost)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


# --- the server ----------------------------------------------------------------------------------------

PROVIDER_KEYS = {
    "openai": f"sk-proj-e2eopenai{secrets.token_hex(24)}",
    "anthropic": f"sk-ant-api03-e2e{secrets.token_hex(24)}",
    "gemini": f"AIzaE2Egemini{secrets.token_hex(24)}",
    "mistral": f"e2e-mistral-key-{secrets.token_hex(24)}",
    "groq": f"gsk_e2egroqkey{secrets.token_hex(24)}",
    "together": f"e2e-together-key{secrets.token_hex(24)}",  # a provider that is down
    "leaky": f"sk-e2e-leaky-key-{secrets.token_hex(24)}",
}
DJANGO_SECRET_KEY = f"e2e-django-secret-{secrets.token_hex(24)}"


@pytest.fixture(scope="module")
def verbose_server(django_db_setup, fake_provider, leaky_host, tmp_path_factory):
    server = LiveServer(
        fake_provider,
        tmp_path_factory.mktemp("secrets") / "server.log",
        **{f"{name.upper()}_API_KEY": key for name, key in PROVIDER_KEYS.items()},
        EXTRA_PROVIDERS=f"leaky={leaky_host}",
        SECRET_KEY=DJANGO_SECRET_KEY,
        LOG_LEVEL="DEBUG",
        WEB_LOG_LEVEL="debug",
        WEB_ACCESS_LOG="-",
        UPSTREAM_MAX_RETRIES="1",
        UPSTREAM_RETRY_MAX_WAIT_SECONDS="1",
        # plain http: the session and CSRF cookies may not require https
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
    )
    yield server.start()
    server.stop()


class Client:
    """requests against the server, keeping the text of every response (status, headers, body) received,
    except the ones marked private: those that rightly show the key back to the one who sent it."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.received: list[str] = []
        self.request_ids: list[str] = []  # chat requests with a valid key: each leaves a log row

    def call(self, method: str, path: str, *, key: str | None = None, private: bool = False, **kwargs):
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        stream = bool(isinstance(kwargs.get("json"), dict) and kwargs["json"].get("stream"))
        with self.session.request(
            method, self.base_url + path, headers=headers, stream=stream, timeout=60, **kwargs
        ) as response:
            try:
                body = b"".join(response.iter_content(None)).decode(errors="replace")
            except requests.RequestException as exc:  # a stream the server cut
                body = f"<broken: {exc!r}>"
        if not private:  # (the path without its query string: a key sent there is the test's own doing)
            route = path.partition("?")[0]
            self.received.append(
                f"{method} {route} -> {response.status_code} {dict(response.headers)}\n{body}"
            )
        return response, body

    def chat(self, key: str, content: str, model: str = "gpt-4o", **extra) -> int:
        """A chat request with a valid key: it leaves a log row."""
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        response = self.call("POST", "/v1/chat/completions", key=key, json=body)[0]
        self.request_ids.append(response.headers["x-request-id"])
        return response.status_code

    def csrf_post(self, path: str, data: dict) -> requests.Response:
        self.call("GET", path)
        data = {"csrfmiddlewaretoken": self.session.cookies["csrftoken"], **data}
        response = self.session.post(self.base_url + path, data=data, timeout=30, allow_redirects=False)
        self.received.append(
            f"POST {path} -> {response.status_code} {dict(response.headers)}\n{response.text}"
        )
        return response


# --- where to look -------------------------------------------------------------------------------------


def database_text() -> tuple[str, set[str]]:
    """Every row of every table (sessions decoded too), and the tables read."""
    lines = []
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for table in sorted(tables):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                values = (
                    bytes(v).decode(errors="replace") if isinstance(v, bytes | memoryview) else str(v)
                    for v in row
                )
                lines.append(f"{table}: " + " | ".join(values))
    with override_settings(SECRET_KEY=DJANGO_SECRET_KEY):  # the server's, which signed them
        sessions = [session.get_decoded() for session in Session.objects.all()]
    assert sessions and all(sessions), "the server's sessions could not be decoded"
    lines.extend(f"django_session decoded: {session}" for session in sessions)
    return "\n".join(lines), tables


def redis_text() -> str:
    """Every value in the server's Redis database, when it has one."""
    if not settings.REDIS_URL:
        return ""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    lines = []
    for name in client.scan_iter(count=1000):
        kind = client.type(name).decode()
        value = {
            "string": client.get,
            "hash": client.hgetall,
            "list": lambda n: client.lrange(n, 0, -1),
            "set": client.smembers,
            "zset": lambda n: client.zrange(n, 0, -1),
        }.get(kind, lambda n: b"")(name)
        lines.append(f"{name!r} ({kind}): {value!r}")
    return "\n".join(lines)


_NOT_CRAWLED = re.compile(r"^//|^/static/|logout|/delete/|revoke|^/admin/r/|\?")


def crawl(client: Client, starts: list[str], limit: int = 400) -> dict[str, str]:
    """Every page reachable from `starts` by plain links (no query strings, nothing that acts), as text."""
    pages: dict[str, str] = {}
    queue = list(starts)
    while queue and len(pages) < limit:
        path = queue.pop(0)
        if path in pages:
            continue
        response, body = client.call("GET", path)
        pages[path] = f"{response.status_code} {dict(response.headers)}\n{body}"
        for href in re.findall(r'href="([^"#]*)', body):
            href = html.unescape(href)
            if href.startswith("/") and not _NOT_CRAWLED.search(href) and href not in pages:
                queue.append(href)
    return pages


# --- the test ------------------------------------------------------------------------------------------


def test_no_key_leaks_into_the_logs_the_database_the_responses_or_the_admin(verbose_server, transactional_db):
    server = verbose_server
    web = Client(server.url)
    staff = User.objects.create_superuser(email="secrets-staff@example.com", password=None)
    # hashed as the server hashes (the suite's settings use a fast hasher the server does not know)
    User.objects.filter(id=staff.id).update(password=PBKDF2PasswordHasher().encode(PASSWORD, "e2e-salt"))

    # A key created as a person creates one: on the dashboard, shown once, bodies kept (redacted).
    login = web.csrf_post("/admin/login/", {"username": staff.email, "password": PASSWORD, "next": "/admin/"})
    assert login.status_code == 302, login.text[:500]
    created = web.csrf_post("/keys/new/", {"name": "secrets", "store_bodies": "on"})
    assert created.status_code == 302
    shown, page = web.call("GET", created.headers["Location"], private=True)
    key = html.unescape(re.search(r'data-testid="new-key">([^<]+)<', page).group(1))
    api_key = ApiKey.objects.get(digest=keys.digest(key))
    assert api_key.store_bodies and "no-store" in shown.headers["Cache-Control"]
    assert key not in web.call("GET", created.headers["Location"])[1]  # shown once

    # Answers and streams, from every provider.
    for model in ["gpt-4o", "claude-3-5-sonnet", "gemini-flash", "mistral/mistral-small-latest", "leaky/m1"]:
        assert web.chat(key, "hello", model) == 200
        assert web.chat(key, "hello", model, stream=True, stream_options={"include_usage": True}) == 200
    assert web.chat(key, "hello", "groq/llama-3.1-8b-instant") == 200
    # Provider errors before the answer and mid-stream; a provider that is down.
    for directive in [
        "!error 500",
        "!error 503",
        "!error 429",
        "!insufficient-quota",
        "!malformed",
        "!disconnect",
    ]:
        assert web.chat(key, directive) >= 400
    assert web.chat(key, "!error 529", "claude-3-5-sonnet") == 503
    assert web.chat(key, "!error 500", "gemini-flash") == 500
    assert web.chat(key, "!error 401", "mistral/mistral-small-latest") == 401
    assert web.chat(key, "!words 5 !stream-error-after 2", stream=True) == 200
    assert web.chat(key, "hello", "together/meta-llama/Llama-3-8b-chat-hf") == 502
    # A provider that writes its key into its errors: scrubbed before the client, the row and the log.
    leaked = {f"leak {status}": status for status in (400, 401, 403, 429, 500)}
    for text, status in leaked.items():
        assert web.chat(key, text, "leaky/m1") == status
    assert web.chat(key, "leak html", "leaky/m1") == 502
    assert web.chat(key, "leak stream", "leaky/m1", stream=True) == 200
    # Requests the gateway refuses.
    assert web.chat(key, "hello", "no-such-model") == 404
    assert web.chat(key, "hello", temperature="hot") == 400
    for body in [b"{not json", b"", b'{"model": "gpt-4o"}']:
        refused, _ = web.call("POST", "/v1/chat/completions", key=key, data=body)
        web.request_ids.append(refused.headers["x-request-id"])
        assert refused.status_code == 400
    # The key pasted into the messages: kept in the row's bodies only redacted.
    pasted = f"My Neurometric key is {key}; keep it safe."
    assert web.chat(key, pasted) == 200
    assert web.chat(key, pasted, stream=True) == 200
    system = {"role": "system", "content": f"Use {key} for tools."}
    body = {"model": "gpt-4o", "messages": [system, {"role": "user", "content": f"!echo {pasted}"}]}
    echoed, _ = web.call("POST", "/v1/chat/completions", key=key, json=body, private=True)  # its own key back
    web.request_ids.append(echoed.headers["x-request-id"])
    # A client that hangs up mid-stream.
    web.request_ids.append(_raw_stream_then_hang_up(server, key, "!words 200 !chunk-delay 50"))
    # The analytics API, which shows the rows back.
    for path in [
        "/v1/models",
        "/v1/models/gpt-4o",
        "/v1/requests",
        "/v1/requests.csv",
        f"/v1/organization/costs?start_time={int(time.time()) - 86400}",
    ]:
        assert web.call("GET", path, key=key)[0].status_code == 200
    web.call("GET", f"/v1/requests/{web.request_ids[0]}", key=key)

    # Wrong, revoked and misplaced keys: all refused, none written down.
    wrong = keys.generate()
    owner, _ = user_get_or_create(email="secrets-revoked@example.com")
    revoked = api_key_create(user=owner, name="revoked")[1]
    api_key_revoke(key_or_prefix=revoked)
    basic = base64.b64encode(f"{key}:".encode()).decode()
    refused = [
        web.call("POST", "/v1/chat/completions", key=wrong, json={"model": "gpt-4o"}),
        web.call("POST", "/v1/chat/completions", key=revoked, json={"model": "gpt-4o"}),
        web.call("POST", "/v1/chat/completions", key=PROVIDER_KEYS["openai"], json={"model": "gpt-4o"}),
        web.call("GET", f"/v1/models?api_key={key}"),
        web.call("POST", f"/v1/chat/completions?key={key}", json={"model": "gpt-4o"}),
        web.call("GET", "/v1/models", headers={"Authorization": key}),
        web.call("GET", "/v1/models", headers={"Authorization": f"Basic {basic}"}),
        web.call("GET", "/v1/models", headers={"x-api-key": key, "api-key": key}),
    ]
    assert [response.status_code for response, _ in refused] == [401] * len(refused)

    for request_id in web.request_ids:
        wait_for_log(request_id, timeout=15)
    rows = RequestLog.objects.filter(api_key=api_key, endpoint="chat.completions")
    assert rows.count() == len(web.request_ids)
    redacted = [row for row in rows if "[api-key]" in json.dumps([row.request_body, row.response_body])]
    assert len(redacted) == 3  # the pasted key is stored as [api-key], in the request and in the echo
    assert rows.filter(provider="leaky", status_code__gte=400).count() == len(leaked) + 2
    # the leaky host did send its key, and the client got the message with the key scrubbed
    assert "Incorrect API key provided: ***. You passed Authorization: Bearer ***" in "\n".join(web.received)

    # The dashboard and the admin, as staff.
    pages = crawl(web, ["/dashboard/", "/dashboard/logs/", "/keys/", "/admin/"])
    assert not [path for path, text in pages.items() if text.startswith("5")]
    assert any(re.match(r"/admin/analytics/requestlog/\d+/change/", path) for path in pages)
    assert any(path.startswith("/dashboard/logs/req_") for path in pages)
    assert any(path.startswith("/admin/accounts/apikey/") and path.endswith("/change/") for path in pages)

    # Proof that the database search sees every table and its text and JSON: a planted canary is found.
    canary = keys.generate()
    ApiKey.objects.filter(id=api_key.id).update(name=canary[:100], fallbacks=[canary])
    database, tables = database_text()
    assert {model._meta.db_table for model in apps.get_models(include_auto_created=True)} <= tables
    assert len(find_leaks({"database": database}, {"canary": canary})) == 2  # in the name, in the JSON

    server.stop()  # its output is complete: shutdown flushes the log writer
    output = server.output()
    assert " DEBUG " in output and '"GET /v1/models HTTP/1.1" 401' in output  # at its most verbose
    spool = server.log_path.parent / "spool"
    places = {
        "the server's output": output,
        "the spool": "\n".join(p.read_text(errors="replace") for p in spool.glob("*"))
        if spool.is_dir()
        else "",
        "the database": database,
        "Redis": redis_text(),
        "the responses": "\n\n".join(web.received),
    }
    client_keys = {"the client's key": key, "a wrong key": wrong, "a revoked key": revoked}
    server_secrets = {f"the {name} key": value for name, value in PROVIDER_KEYS.items()}
    server_secrets["Django's SECRET_KEY"] = DJANGO_SECRET_KEY
    leaks = find_leaks(places, client_keys | server_secrets)
    assert not leaks, "\n".join(leaks)
