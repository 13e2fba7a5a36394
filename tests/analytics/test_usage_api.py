"""GET /v1/organization/usage/completions: OpenAI's Usage API, from rollups (old) and raw rows (recent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import combinations
from urllib.parse import urlencode

import pytest
import responses
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from accounts.services import api_key_create
from analytics import selectors
from tests.analytics.factories import BOUNDARY, NOW, log_row, pin_clock, rolled_up, rollups_of, total_cost, ts
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db

URL = "/v1/organization/usage/completions"
DAY = 86400


def usage(api, **params) -> dict:
    response = api.get(f"{URL}?{urlencode(params, doseq=True)}")
    assert response.status_code == 200, response.content
    return response.json()


def all_results(page: dict) -> list[dict]:
    return [result for bucket in page["data"] for result in bucket["results"]]


def summed(page: dict, field: str):
    values = [result[field] for result in all_results(page)]
    return sum((Decimal(v) for v in values), Decimal(0)) if field == "cost_usd" else sum(values)


# --- shape and paging ------------------------------------------------------------------------------------


def test_the_page_has_openai_usage_shape_plus_our_extras(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    log_row(owner, owner_key[0], at=NOW - timedelta(seconds=5), prompt=1000, cached=200, completion=300)

    page = usage(api, start_time=ts(NOW) - DAY, group_by="model")

    assert set(page) == {"object", "data", "has_more", "next_page"}
    assert page["object"] == "page" and page["has_more"] is False and page["next_page"] is None
    bucket = page["data"][-1]
    assert set(bucket) == {"object", "start_time", "end_time", "results"}
    assert bucket["object"] == "bucket"
    assert bucket["results"] == [
        {
            "object": "organization.usage.completions.result",
            "input_tokens": 1000,
            "output_tokens": 300,
            "input_cached_tokens": 200,
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "num_model_requests": 1,
            "project_id": None,
            "user_id": None,
            "api_key_id": None,
            "model": "gpt-4o",
            "batch": None,
            "provider": None,
            "task_type": None,
            "errors": 0,
            "cost_usd": "0.005250000000",  # 800 × 2.5 + 200 × 1.25 + 300 × 10, per 1M
        }
    ]


def test_empty_buckets_are_returned_with_no_results(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    log_row(owner, owner_key[0], at=NOW - timedelta(seconds=5))

    page = usage(api, start_time=ts(datetime(2026, 3, 15, tzinfo=UTC)), end_time=ts(NOW))

    starts = [bucket["start_time"] for bucket in page["data"]]
    assert starts == [ts(datetime(2026, 3, day, tzinfo=UTC)) for day in (15, 16, 17, 18)]
    assert [len(bucket["results"]) for bucket in page["data"]] == [0, 0, 0, 1]
    assert all(bucket["end_time"] - bucket["start_time"] == DAY for bucket in page["data"])


def test_pages_follow_next_page_until_has_more_is_false(api, owner, monkeypatch):
    pin_clock(monkeypatch)
    start, end = datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 18, tzinfo=UTC)  # 10 days

    seen, sizes, params = [], [], {"start_time": ts(start), "end_time": ts(end), "limit": 3}
    while True:
        page = usage(api, **params)
        sizes.append(len(page["data"]))
        seen += [bucket["start_time"] for bucket in page["data"]]
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        assert isinstance(page["next_page"], str)
        params["page"] = page["next_page"]

    assert sizes == [3, 3, 3, 1]
    assert seen == list(range(ts(start), ts(end), DAY))


@pytest.mark.parametrize(
    ("width", "default", "largest", "span"),
    [("1d", 7, 31, 40 * DAY), ("1h", 24, 168, 8 * DAY), ("1m", 60, 1440, 2 * DAY)],
)
def test_limit_defaults_and_maxima_follow_openai(api, owner, monkeypatch, width, default, largest, span):
    pin_clock(monkeypatch)
    start = ts(NOW) - span

    assert len(usage(api, start_time=start, bucket_width=width)["data"]) == default
    assert len(usage(api, start_time=start, bucket_width=width, limit=largest)["data"]) == largest
    response = api.get(f"{URL}?start_time={start}&bucket_width={width}&limit={largest + 1}")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("", "start_time"),
        ("start_time=yesterday", "start_time"),
        ("start_time=-5", "start_time"),
        ("start_time=1773800000&bucket_width=2h", "bucket_width"),
        ("start_time=1773800000&group_by=user_id", "group_by"),
        ("start_time=1773800000&group_by=model,project_id", "group_by"),
        ("start_time=1773800000&end_time=1773800000", "end_time"),
        ("start_time=1773800000&limit=0", "limit"),
        ("start_time=1773800000&page=not-a-cursor", "page"),
    ],
)
def test_invalid_parameters_are_400_naming_the_param(api, query, param):
    response = api.get(f"{URL}?{query}")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"]


def test_a_cursor_of_another_range_is_rejected(api, monkeypatch):
    pin_clock(monkeypatch)
    first = usage(api, start_time=ts(NOW) - 20 * DAY, limit=2)

    response = api.get(f"{URL}?start_time={ts(NOW) - DAY}&page={first['next_page']}")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "page"


# --- grouping, widths, UTC days ---------------------------------------------------------------------------

DIMENSIONS = ("model", "api_key_id", "provider", "task_type")


@pytest.fixture
def mixed_rows(owner, owner_key, monkeypatch):
    """Rows over two models, keys, providers and task types, half rolled up and half recent."""
    pin_clock(monkeypatch)
    second_key, _ = api_key_create(user=owner, name="second")
    keys = [owner_key[0], second_key]
    rows = []
    for i in range(16):
        rows.append(
            log_row(
                owner,
                keys[i % 2],
                at=(NOW - timedelta(hours=3, minutes=i)) if i < 8 else (NOW - timedelta(seconds=10 + i)),
                model=("gpt-4o", "claude-3-5-sonnet")[(i // 2) % 2],
                provider=("openai", "anthropic")[(i // 4) % 2],
                task_type=("chat", "summarization")[(i // 8) % 2],
                prompt=100 + i,
                completion=10 + i,
            )
        )
    rolled_up(rows[:8])
    return rows


def _expected(rows, group_by) -> dict[tuple, tuple]:
    expected: dict[tuple, list] = {}
    for row in rows:
        values = {
            "model": row.model,
            "api_key_id": str(row.api_key_id),
            "provider": row.provider,
            "task_type": row.task_type,
        }
        key = tuple(values[name] if name in group_by else None for name in DIMENSIONS)
        totals = expected.setdefault(key, [0, 0, 0])
        totals[0] += 1
        totals[1] += row.prompt_tokens
        totals[2] += row.completion_tokens
    return {key: tuple(value) for key, value in expected.items()}


@pytest.mark.parametrize(
    "group_by", [list(combo) for size in range(5) for combo in combinations(DIMENSIONS, size)]
)
def test_every_group_by_combination_matches_the_rows(api, mixed_rows, group_by):
    page = usage(api, start_time=ts(NOW) - DAY, end_time=ts(NOW), group_by=group_by)

    got: dict[tuple, tuple] = {}
    for result in all_results(page):
        key = tuple(result[name] for name in DIMENSIONS)
        previous = got.get(key, (0, 0, 0))
        got[key] = (
            previous[0] + result["num_model_requests"],
            previous[1] + result["input_tokens"],
            previous[2] + result["output_tokens"],
        )
    assert got == _expected(mixed_rows, group_by)


def test_group_by_may_be_repeated_or_a_comma_list(api, mixed_rows):
    repeated = api.get(f"{URL}?start_time={ts(NOW) - DAY}&group_by=model&group_by=provider").json()
    listed = api.get(f"{URL}?start_time={ts(NOW) - DAY}&group_by=model,provider").json()
    bracketed = api.get(f"{URL}?start_time={ts(NOW) - DAY}&group_by[]=model&group_by[]=provider").json()

    assert repeated == listed == bracketed
    assert len(all_results(repeated)) == 4


def test_utc_day_boundaries_split_buckets_at_midnight(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    before = log_row(owner, owner_key[0], at=datetime(2026, 3, 16, 23, 59, 59, 999999, tzinfo=UTC))
    after = log_row(owner, owner_key[0], at=datetime(2026, 3, 17, 0, 0, 0, tzinfo=UTC))
    rolled_up([before, after])

    # An unaligned start is widened to the UTC day that holds it.
    page = usage(api, start_time=ts(datetime(2026, 3, 16, 15, 30, tzinfo=UTC)), end_time=ts(NOW))

    by_start = {bucket["start_time"]: bucket["results"] for bucket in page["data"]}
    assert [r["num_model_requests"] for r in by_start[ts(datetime(2026, 3, 16, tzinfo=UTC))]] == [1]
    assert [r["num_model_requests"] for r in by_start[ts(datetime(2026, 3, 17, tzinfo=UTC))]] == [1]
    assert by_start[ts(datetime(2026, 3, 18, tzinfo=UTC))] == []


@pytest.mark.parametrize(("width", "step"), [("1h", 3600), ("1m", 60)])
def test_hour_and_minute_buckets_are_aligned_and_hold_their_rows(
    api, owner, owner_key, monkeypatch, width, step
):
    pin_clock(monkeypatch)
    moments = [NOW - timedelta(minutes=50), NOW - timedelta(minutes=20), NOW - timedelta(seconds=3)]
    rows = [log_row(owner, owner_key[0], at=moment) for moment in moments]
    rolled_up(rows[:2])

    page = usage(api, start_time=ts(NOW) - 3600, end_time=ts(NOW), bucket_width=width, limit=100)

    assert all(bucket["start_time"] % step == 0 for bucket in page["data"])
    counted = {
        bucket["start_time"]: bucket["results"][0]["num_model_requests"]
        for bucket in page["data"]
        if bucket["results"]
    }
    expected: dict[int, int] = {}
    for moment in moments:
        expected[ts(moment) - ts(moment) % step] = expected.get(ts(moment) - ts(moment) % step, 0) + 1
    assert counted == expected


# --- real time: raw rows after the boundary, rollups before it ----------------------------------------------


def test_a_request_finished_a_second_ago_is_counted(api, owner, owner_key):
    now = timezone.now()
    row = log_row(owner, owner_key[0], at=now - timedelta(seconds=1))

    page = usage(api, start_time=ts(now) - 3600, bucket_width="1h")

    assert summed(page, "num_model_requests") == 1
    assert summed(page, "cost_usd") == total_cost([row])


@responses.activate
def test_a_chat_completion_shows_in_usage_at_once(api):
    responses.post(UPSTREAM, json=completion(prompt=21, completion_tokens=8))
    start = int(timezone.now().timestamp()) - 60
    reply = api.post(
        "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert reply.status_code == 200

    page = usage(api, start_time=start, bucket_width="1m", group_by="model")

    assert [
        (r["model"], r["num_model_requests"], r["input_tokens"], r["output_tokens"])
        for r in all_results(page)
    ] == [("gpt-4o", 1, 21, 8)]


@pytest.mark.parametrize(
    ("width", "start"),
    [
        ("1d", datetime(2026, 3, 16, tzinfo=UTC)),
        ("1h", datetime(2026, 3, 17, 22, tzinfo=UTC)),
        ("1m", datetime(2026, 3, 18, 12, 20, tzinfo=UTC)),
    ],
)
def test_rows_rolled_up_before_the_boundary_are_counted_once(
    api, owner, owner_key, monkeypatch, width, start
):
    pin_clock(monkeypatch)
    key = owner_key[0]
    old = [
        log_row(owner, key, at=start + timedelta(seconds=30)),
        log_row(owner, key, at=datetime(2026, 3, 18, 0, 0, 1, tzinfo=UTC)),
        log_row(owner, key, at=datetime(2026, 3, 18, 11, 2, 3, tzinfo=UTC)),
        log_row(owner, key, at=BOUNDARY - timedelta(microseconds=1)),
    ]
    old = [row for row in old if row.created_at >= start]
    recent = [log_row(owner, key, at=BOUNDARY), log_row(owner, key, at=NOW - timedelta(seconds=1))]
    # What the rollup job leaves: minutes, hours and days of the same rows, including today's partial day
    # and the current hour and minute, which also hold rows after the boundary.
    rolled_up(old + recent)

    page = usage(api, start_time=ts(start), end_time=ts(NOW), bucket_width=width, limit=31)

    everything = old + recent
    assert summed(page, "num_model_requests") == len(everything)
    assert summed(page, "input_tokens") == sum(row.prompt_tokens for row in everything)
    assert summed(page, "cost_usd") == total_cost(everything)


def test_before_the_boundary_rollups_are_the_only_source(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    not_rolled_yet = log_row(owner, owner_key[0], at=BOUNDARY - timedelta(minutes=1))
    recent = log_row(owner, owner_key[0], at=BOUNDARY + timedelta(minutes=1))

    assert summed(usage(api, start_time=ts(NOW) - DAY), "num_model_requests") == 1

    rollups_of([not_rolled_yet], "minute")
    rollups_of([not_rolled_yet], "hour")
    assert summed(usage(api, start_time=ts(NOW) - DAY), "num_model_requests") == 2
    assert recent.created_at >= BOUNDARY


def test_totals_are_the_exact_decimal_sum_of_the_rows(api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    rows = [
        log_row(
            owner,
            owner_key[0],
            at=NOW - timedelta(minutes=7 * i, seconds=i),
            prompt=137 * i + 1,
            cached=(31 * i) % 100,
            completion=59 * i + 7,
            status=(200, 200, 429, 500, 499, 400)[i % 6],
        )
        for i in range(40)
    ]
    rolled_up([row for row in rows if row.created_at < BOUNDARY])

    page = usage(api, start_time=ts(NOW) - DAY, end_time=ts(NOW), bucket_width="1h", limit=168)

    assert summed(page, "cost_usd") == total_cost(rows)
    assert summed(page, "num_model_requests") == 40
    assert summed(page, "errors") == sum(row.status_code >= 400 for row in rows)
    assert summed(page, "input_cached_tokens") == sum(row.cached_tokens for row in rows)


@given(
    start=st.integers(min_value=0, max_value=3 * 24 * 60),
    length=st.integers(min_value=0, max_value=5 * 24 * 60),
    coarsest=st.sampled_from(["day", "hour", "minute"]),
)
def test_the_rollup_cover_tiles_the_range_with_aligned_buckets(start, length, coarsest):
    lo, hi = (
        1_773_000_000 // 86400 * 86400 + start * 60,
        1_773_000_000 // 86400 * 86400 + (start + length) * 60,
    )
    pieces = sorted(selectors.rollup_cover(lo, hi, coarsest), key=lambda piece: piece[1])

    position = lo
    for granularity, first, end in pieces:
        step = selectors.STEPS[granularity]
        assert first == position and first % step == 0 and end % step == 0 and end > first
        assert step <= selectors.STEPS[coarsest]
        position = end
    assert position == hi
    # The largest buckets: never more than 59 minutes (or 23 hours) on either side of a coarser piece.
    assert sum(1 for piece in pieces if piece[0] == "day") <= 1


# --- privacy --------------------------------------------------------------------------------------------


def test_another_user_sees_none_of_the_owners_usage(api, outsider_api, owner, owner_key, monkeypatch):
    pin_clock(monkeypatch)
    rows = [log_row(owner, owner_key[0], at=NOW - timedelta(seconds=s)) for s in (5, 3600, 20 * 3600)]
    rolled_up(rows[1:])

    theirs = usage(outsider_api, start_time=ts(NOW) - DAY, group_by="model,api_key_id")
    mine = usage(api, start_time=ts(NOW) - DAY, group_by="model,api_key_id")

    assert len(theirs["data"]) == len(mine["data"]) == 2
    assert all_results(theirs) == []
    assert summed(mine, "num_model_requests") == 3


@pytest.mark.parametrize("authorization", [None, "Bearer nm-not-a-real-key-0000000000000000"])
def test_without_a_valid_key_it_is_401(client, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = client.get(f"{URL}?start_time=1773800000", **headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
