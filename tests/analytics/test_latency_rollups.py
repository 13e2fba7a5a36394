"""analytics.rollups: LatencyRollup rows (per user × model × provider, hours and days) always equal the
merge of the bucket's Rollup rows (every key and task type) — after a rollup, late rows, a rebuild and
pruning."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.services import api_key_create, user_get_or_create
from analytics import rollups, sketch
from analytics.models import LatencyRollup, RequestLog, Rollup
from analytics.rollups import DAY, HOUR, MINUTE, bucket_floor
from tests.analytics.test_rollups import day_start, insert, log_row

GROUP = ("granularity", "bucket_start", "user_id", "model", "provider")
SKETCHES = ("latency_sketch", "ttft_sketch", "overhead_sketch")


def merged_rollups() -> dict[tuple, dict]:
    """The hour and day Rollup rows merged per bucket, user, model and provider, as the test does it."""
    merged: dict[tuple, dict] = defaultdict(
        lambda: {"requests": 0, "latency_ms_sum": 0.0, **{name: {} for name in SKETCHES}}
    )
    for row in Rollup.objects.exclude(granularity=MINUTE).values(
        *GROUP, "requests", "latency_ms_sum", *SKETCHES
    ):
        target = merged[tuple(row[name] for name in GROUP)]
        target["requests"] += row["requests"]
        target["latency_ms_sum"] += row["latency_ms_sum"]
        for name in SKETCHES:
            target[name] = sketch.merge([target[name], row[name]])
    return dict(merged)


def latency_rollups() -> dict[tuple, dict]:
    found = {}
    for row in LatencyRollup.objects.values(*GROUP, "requests", "latency_ms_sum", *SKETCHES):
        key = tuple(row[name] for name in GROUP)
        assert key not in found, f"two latency rollups for {key}"
        found[key] = {name: row[name] for name in ("requests", "latency_ms_sum", *SKETCHES)}
    return found


def assert_consistent() -> None:
    expected, found = merged_rollups(), latency_rollups()
    assert found.keys() == expected.keys()
    for key, figures in expected.items():
        assert found[key]["requests"] == figures["requests"], key
        assert found[key]["latency_ms_sum"] == pytest.approx(figures["latency_ms_sum"]), key
        for name in SKETCHES:
            assert found[key][name] == figures[name], (key, name)


@pytest.fixture
def people(db):
    """Two users, each with two API keys."""
    result = []
    for name in ("ada", "grace"):
        user, _ = user_get_or_create(email=f"{name}@example.com")
        keys = [api_key_create(user=user, name=f"{name} {n}")[0] for n in range(2)]
        result.append((user, keys))
    return result


def traffic(user, keys, at, *, n: int = 12) -> list[RequestLog]:
    """Rows over every key, two task types and two models, some streamed, a few minutes apart."""
    rows = []
    for i in range(n):
        model, provider = [("gpt-4o-mini", "openai"), ("claude-sonnet-4", "anthropic")][i % 2]
        rows.append(
            log_row(
                user,
                at + timedelta(minutes=i % 3, seconds=i),
                key=keys[i % len(keys)] if i % 5 else None,
                model=model,
                provider=provider,
                task_type=["chat", "code"][(i // 2) % 2],
                latency_ms=50.0 + 37 * i,
                stream=i % 3 == 0,
                ttft_ms=10.0 + i if i % 3 == 0 else None,
                overhead_ms=1.0 + i / 4,
            )
        )
    return insert(*rows)


def test_latency_rollups_are_the_merge_of_the_rollups(people):
    for user, keys in people:
        traffic(user, keys, day_start(1) + timedelta(hours=23, minutes=58))  # across midnight
        traffic(user, keys, day_start(0) + timedelta(minutes=5), n=7)
    rollups.rollup_pending()

    assert_consistent()
    assert LatencyRollup.objects.filter(granularity=DAY).count() == 2 * 2 * 2  # days × users × models
    assert not LatencyRollup.objects.filter(granularity=MINUTE).exists()
    day = LatencyRollup.objects.get(
        granularity=DAY, bucket_start=day_start(0), user=people[0][0], model="gpt-4o-mini"
    )
    raw = RequestLog.objects.filter(
        user=people[0][0], model="gpt-4o-mini", created_at__gte=day_start(0), created_at__lt=day_start(-1)
    )
    assert day.requests == raw.count() == 6  # over every key and task type (2 from before midnight's)
    assert sketch.count(day.latency_sketch) == 6
    assert day.ttft_sketch  # the streamed ones


def test_rolling_again_leaves_one_latency_rollup_per_group(people):
    user, keys = people[0]
    traffic(user, keys, day_start(1) + timedelta(hours=3))
    rollups.rollup_pending()
    expected = latency_rollups()

    at = day_start(1) + timedelta(hours=3)
    for granularity in (MINUTE, HOUR, DAY):
        rollups.rollup_buckets(granularity=granularity, starts=[bucket_floor(at, granularity)])

    assert latency_rollups() == expected


def test_late_rows_update_the_latency_rollups(people):
    user, keys = people[0]
    at = day_start(1) + timedelta(hours=7, minutes=30)
    traffic(user, keys, at)
    rollups.rollup_pending()

    insert(log_row(user, at + timedelta(seconds=20), key=keys[1], task_type="code", latency_ms=9000.0))
    rollups.rollup_pending()

    assert_consistent()
    hour = LatencyRollup.objects.get(
        granularity=HOUR, bucket_start=bucket_floor(at, HOUR), model="gpt-4o-mini"
    )
    assert hour.requests == 7
    assert sketch.quantile(hour.latency_sketch, 1.0) == pytest.approx(9000.0, rel=0.01)


def test_a_row_visible_below_the_cursor_updates_the_latency_rollups(people):
    user, keys = people[0]
    at = day_start(1) + timedelta(hours=9)
    base = 10**12
    first, second = (log_row(user, at + timedelta(minutes=m), key=keys[0]) for m in (0, 5))
    first.id, second.id = base + 1000, base + 3000
    insert(first, second)
    rollups.rollup_pending()

    late = log_row(user, at + timedelta(seconds=1), key=keys[1], task_type="code")
    late.id = base + 2000
    insert(late)
    assert rollups.rollup_pending()["late_minutes"] == 1

    assert_consistent()
    assert LatencyRollup.objects.get(granularity=DAY).requests == 3


def test_recomputing_one_user_leaves_the_others_latency_rollups(people):
    (ada, ada_keys), (grace, grace_keys) = people
    at = day_start(1) + timedelta(hours=2)
    traffic(ada, ada_keys, at)
    traffic(grace, grace_keys, at)
    rollups.rollup_pending()
    graces = LatencyRollup.objects.filter(user=grace).count()

    insert(log_row(ada, at, key=ada_keys[0]))
    rollups.rollup_pending()

    assert LatencyRollup.objects.filter(user=grace).count() == graces
    assert_consistent()


def test_rebuild_rewrites_the_latency_rollups(people):
    user, keys = people[0]
    since = day_start(1)
    traffic(user, keys, since + timedelta(hours=4))
    traffic(user, keys, timezone.now() - timedelta(minutes=5), n=5)
    rollups.rollup_pending()
    expected = latency_rollups()
    LatencyRollup.objects.filter(granularity=DAY).update(requests=99)
    LatencyRollup.objects.filter(granularity=HOUR).delete()

    rollups.rollup_rebuild(since=since)

    assert latency_rollups() == expected
    assert_consistent()


def test_pruning_and_the_retention_keep_the_latency_rollups(people):
    user, keys = people[0]
    now = timezone.now()
    old = bucket_floor(now - timedelta(days=31), MINUTE)
    with override_settings(REQUEST_LOG_RETENTION_DAYS=60):
        traffic(user, keys, old)
        traffic(user, keys, now - timedelta(days=1))
        rollups.rollup_pending()
    before = latency_rollups()

    assert rollups.prune_raw_logs(older_than_days=30) == 12
    assert latency_rollups() == before

    insert(log_row(user, old + timedelta(seconds=5), key=keys[0]))  # very late: its minute is skipped
    assert rollups.rollup_pending()["skipped_minutes"] == 1
    assert latency_rollups() == before
    assert_consistent()
