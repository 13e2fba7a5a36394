"""Nothing lost: a load of requests at 50 concurrent connections with 10 % injected provider faults ends
with exactly one log row per request, and token and cost totals equal to what the clients received.

CI runs NOTHING_LOST_REQUESTS=1000 (the default); the full figure in the README comes from
`NOTHING_LOST_REQUESTS=10000 pytest tests/e2e/test_nothing_lost.py -s`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests

from analytics.models import RequestLog

pytestmark = pytest.mark.e2e

REQUESTS = int(os.environ.get("NOTHING_LOST_REQUESTS", "1000"))
FAULTS = ["!error 500", "!error 503", "!error 429", "!malformed", "!disconnect", "!stream-error-after 1"]
GPT_4O = {"input": Decimal("2.5"), "output": Decimal("10")}  # USD per 1M tokens, from the catalogue


def _one(url: str, key: str, i: int, rng: random.Random) -> dict:
    faulty = rng.random() < 0.10
    stream = rng.random() < 0.4
    words = rng.randint(1, 40)
    fault = rng.choice(FAULTS) if faulty else ""
    text = f"request {i} !words {words} {fault}"
    faulty = faulty and (stream or fault != "!stream-error-after 1")  # that one only breaks streams
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    seen = {"faulty": faulty, "usage": None}
    try:
        with requests.post(
            f"{url}/v1/chat/completions",
            json=body,
            stream=stream,
            timeout=60,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            seen["request_id"] = response.headers.get("x-request-id")
            seen["status"] = response.status_code
            if response.status_code == 200 and not stream:
                seen["usage"] = response.json()["usage"]
            elif response.status_code == 200:
                for line in response.iter_lines():
                    if line.startswith(b"data: {") and b'"usage":{' in line:
                        seen["usage"] = json.loads(line[6:])["usage"]
    except requests.RequestException as exc:
        seen["error"] = repr(exc)
    return seen


def test_every_request_is_logged_once_and_totals_match_what_clients_received(server, e2e_key):
    rng = random.Random(7)
    seeds = [random.Random(rng.random()) for _ in range(REQUESTS)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda i: _one(server.url, e2e_key, i, seeds[i]), range(REQUESTS)))
    elapsed = time.monotonic() - started
    ids = [r["request_id"] for r in results]
    assert all(ids) and len(set(ids)) == REQUESTS, [r for r in results if not r.get("request_id")][:3]

    deadline = time.monotonic() + 30
    while RequestLog.objects.filter(request_id__in=ids).count() < REQUESTS and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = {row.request_id: row for row in RequestLog.objects.filter(request_id__in=ids)}

    complete = [r for r in results if r["usage"] is not None]
    prompt = sum(r["usage"]["prompt_tokens"] for r in complete)
    completion = sum(r["usage"]["completion_tokens"] for r in complete)
    logged = [rows[r["request_id"]] for r in complete if r["request_id"] in rows]
    logged_prompt = sum(row.prompt_tokens for row in logged)
    logged_completion = sum(row.completion_tokens for row in logged)
    expected_cost = (prompt * GPT_4O["input"] + completion * GPT_4O["output"]) / 10**6
    logged_cost = sum((row.cost_usd for row in logged), Decimal(0))
    faults = sum(r["faulty"] for r in results)
    failed_rows = sum(1 for row in rows.values() if row.status_code >= 400)
    # One line with every figure, printed before the asserts so that a failing run shows them too.
    statuses = Counter(r.get("status", "exception") for r in results)
    errors = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items(), key=str) if status != 200)
    print(
        f"\nnothing lost: {REQUESTS} requests in {elapsed:.1f}s ({REQUESTS / elapsed:.0f}/s) at 50 "
        f"connections; {statuses[200]} HTTP 200 ({len(complete)} with usage), {faults} faults injected, "
        f"errors by status {{{errors}}}; "
        f"{len(rows)} rows ({failed_rows} error rows); tokens clients {prompt}+{completion} / rows "
        f"{logged_prompt}+{logged_completion}; cost clients ${expected_cost} / rows ${logged_cost}"
    )

    assert len(rows) == REQUESTS  # exactly one row per request: none lost, none doubled
    assert (logged_prompt, logged_completion) == (prompt, completion)
    assert logged_cost == expected_cost
    assert failed_rows == faults  # every injected fault reached its client as an error, and its row says so
