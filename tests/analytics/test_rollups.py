"""analytics.rollups: buckets recomputed from raw rows, incrementally, idempotently, late rows included."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.services import api_key_create, user_get_or_create
from analytics import rollups, sketch
from analytics.models import RequestLog, Rollup, RollupCursor
from analytics.rollups import DAY, HOUR, MINUTE, bucket_floor

_request_ids = itertools.count()
# Whole-bucket checks compare sums of Decimal columns: SQLite sums them as floats.
COST_TOLERANCE = Decimal("1e-9")


def log_row(user, at, *, key=None, **fields) -> RequestLog:
    cost = fields.pop("cost", Decimal("0.001"))
    values = {
        "model": "gpt-4o-mini",
        "requested_model": "gpt-4o-mini",
        "provider": "openai",
        "task_type": "chat",
        "status_code": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_ms": 100.0,
        "overhead_ms": 2.0,
    } | fields
    return RequestLog(
        request_id=f"req_rollup_{next(_request_ids)}",
        user=user,
        api_key=key,
        created_at=at,
        cost_usd=cost,
        cost_unknown=cost is None,
        **values,
    )


def insert(*rows: RequestLog) -> list[RequestLog]:
    return RequestLog.objects.bulk_create(rows)


def day_start(days_ago: int):
    return bucket_floor(timezone.now() - timedelta(days=days_ago), DAY)


def snapshot(granularity: str | None = None) -> list[dict]:
    """Every rollup row's content (not its id or write time), in a stable order."""
    fields = [f.attname for f in Rollup._meta.concrete_fields if f.name not in ("id", "updated_at")]
    rows = Rollup.objects.all() if granularity is None else Rollup.objects.filter(granularity=granularity)
    order = ("granularity", "bucket_start", "user_id", "api_key_id", "model", "provider", "task_type")
    return sorted(rows.values(*fields), key=lambda row: tuple(str(row[name]) for name in order))


@pytest.fixture
def people(db):
    """Three users, each with one API key."""
    result = []
    for name in ("ada", "grace", "edsger"):
        user, _ = user_get_or_create(email=f"{name}@example.com")
        result.append((user, api_key_create(user=user, name=name)[0]))
    return result


@pytest.fixture
def ada(people):
    return people[0]


# --- against a direct aggregation of random rows --------------------------------------------------------

MODELS = [("gpt-4o-mini", "openai"), ("claude-sonnet-4", "anthropic"), ("mistral-small", "mistral")]
random_row = st.fixed_dictionaries(
    {
        "person": st.integers(0, 2),
        "model": st.integers(0, 2),
        "with_key": st.booleans(),
        # milliseconds into a 6-hour window from 21:00 UTC: the rows straddle midnight
        "offset_ms": st.integers(0, 6 * 3600 * 1000 - 1),
        "status_code": st.sampled_from([200, 200, 200, 201, 400, 404, 429, 499, 500, 503]),
        "cost": st.one_of(st.none(), st.integers(0, 10**7).map(lambda n: Decimal(n) / 10**9)),
        "prompt_tokens": st.integers(0, 50_000),
        "completion_tokens": st.integers(0, 5_000),
        "latency_ms": st.floats(1.0, 120_000.0, allow_nan=False),
        "stream": st.booleans(),
        "task_type": st.sampled_from(["chat", "code", "summarize"]),
    }
)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=st.lists(random_row, min_size=1, max_size=60))
def test_rollups_equal_a_direct_aggregation_of_random_rows(people, specs):
    RequestLog.objects.all().delete()
    Rollup.objects.all().delete()
    RollupCursor.objects.all().delete()
    start = day_start(3) + timedelta(hours=21)
    rows = []
    for spec in specs:
        user, key = people[spec["person"]]
        model, provider = MODELS[spec["model"]]
        rows.append(
            log_row(
                user,
                start + timedelta(milliseconds=spec["offset_ms"]),
                key=key if spec["with_key"] else None,
                model=model,
                provider=provider,
                task_type=spec["task_type"],
                status_code=spec["status_code"],
                cost=spec["cost"],
                prompt_tokens=spec["prompt_tokens"],
                completion_tokens=spec["completion_tokens"],
                latency_ms=spec["latency_ms"],
                ttft_ms=spec["latency_ms"] / 3 if spec["stream"] else None,
                overhead_ms=spec["latency_ms"] / 50,
                stream=spec["stream"],
            )
        )
    insert(*rows)

    summary = rollups.rollup_pending(batch_size=25)
    assert summary["rows"] == len(rows)

    for granularity in (MINUTE, HOUR, DAY):
        # Totals per user, model and bucket equal the sums over the raw rows.
        expected = defaultdict(lambda: {"requests": 0, "tokens": 0, "cost": Decimal(0), "unknown": 0})
        for row in rows:
            totals = expected[(row.user_id, row.model, bucket_floor(row.created_at, granularity))]
            totals["requests"] += 1
            totals["tokens"] += row.prompt_tokens + row.completion_tokens
            totals["cost"] += row.cost_usd or 0
            totals["unknown"] += row.cost_unknown
        actual = defaultdict(lambda: {"requests": 0, "tokens": 0, "cost": Decimal(0), "unknown": 0})
        for rollup in Rollup.objects.filter(granularity=granularity):
            totals = actual[(rollup.user_id, rollup.model, rollup.bucket_start)]
            totals["requests"] += rollup.requests
            totals["tokens"] += rollup.prompt_tokens + rollup.completion_tokens
            totals["cost"] += rollup.cost_usd
            totals["unknown"] += rollup.cost_unknown_requests
            # Each sketch counts its bucket's rows (time to first token: the streamed ones).
            assert sketch.count(rollup.latency_sketch) == rollup.requests
            assert sketch.count(rollup.overhead_sketch) == rollup.requests
            assert sketch.count(rollup.ttft_sketch) == rollup.stream_requests
        assert actual.keys() == expected.keys(), granularity
        for group, totals in expected.items():
            assert actual[group]["requests"] == totals["requests"]
            assert actual[group]["tokens"] == totals["tokens"]
            assert actual[group]["unknown"] == totals["unknown"]
            assert abs(actual[group]["cost"] - totals["cost"]) <= COST_TOLERANCE

        # Errors by class, per user.
        classes = Counter()
        for row in rows:
            code = row.status_code
            kind = (
                "errors_rate_limit"
                if code == 429
                else "errors_cancelled"
                if code == 499
                else "errors_server"
                if code >= 500
                else "errors_client"
                if code >= 400
                else None
            )
            if kind:
                classes[(row.user_id, kind)] += 1
        for (user_id, kind), n in classes.items():
            rolled = Rollup.objects.filter(granularity=granularity, user_id=user_id)
            assert sum(getattr(r, kind) for r in rolled) == n

    # p50 from the merged sketches is within 1 % of the true nearest-rank p50, per user.
    for user, _ in people:
        latencies = [row.latency_ms for row in rows if row.user_id == user.id]
        if not latencies:
            continue
        true_p50 = nearest_rank(latencies, 0.5)
        for granularity in (MINUTE, DAY):
            merged = sketch.merge(
                r.latency_sketch for r in Rollup.objects.filter(granularity=granularity, user=user)
            )
            assert sketch.count(merged) == len(latencies)
            assert abs(sketch.quantile(merged, 0.5) - true_p50) <= 0.01 * true_p50


# --- behaviour ---------------------------------------------------------------------------------------------


def test_rolling_twice_gives_identical_rows(people):
    at = day_start(1) + timedelta(hours=10, minutes=5)
    (ada, ada_key), (grace, _) = people[0], people[1]
    insert(
        log_row(ada, at, key=ada_key, latency_ms=120.0),
        log_row(ada, at + timedelta(seconds=30), key=ada_key, latency_ms=80.0, cost=None),
        log_row(grace, at + timedelta(hours=2), model="claude-sonnet-4", provider="anthropic"),
    )
    rollups.rollup_pending()
    first = snapshot()
    assert len(first) == 6  # ada and grace: one row each per minute, hour and day

    RollupCursor.objects.update(last_id=0)  # read every row again
    rollups.rollup_pending()
    assert snapshot() == first
    for granularity in (MINUTE, HOUR, DAY):
        starts = Rollup.objects.filter(granularity=granularity).values_list("bucket_start", flat=True)
        rollups.rollup_buckets(granularity=granularity, starts=list(starts))
    assert snapshot() == first


def test_errors_are_counted_by_class(ada):
    user, key = ada
    at = day_start(1) + timedelta(hours=3)
    insert(*(log_row(user, at, key=key, status_code=code) for code in (200, 400, 404, 429, 499, 500, 503)))
    rollups.rollup_pending()
    (rollup,) = Rollup.objects.filter(granularity=DAY)
    assert (rollup.requests, rollup.errors_client, rollup.errors_rate_limit) == (7, 2, 1)
    assert (rollup.errors_server, rollup.errors_cancelled) == (2, 1)


def test_cost_sums_known_costs_and_counts_unknown_ones(ada):
    user, key = ada
    at = day_start(1) + timedelta(hours=3)
    insert(
        log_row(user, at, key=key, cost=Decimal("0.000001234567")),
        log_row(user, at, key=key, cost=Decimal("1.5")),
        log_row(user, at, key=key, cost=None),
    )
    rollups.rollup_pending()
    for granularity in (MINUTE, HOUR, DAY):
        (rollup,) = Rollup.objects.filter(granularity=granularity)
        assert rollup.cost_usd == Decimal("1.500001234567")
        assert rollup.cost_unknown_requests == 1


def test_sketches_are_built_from_the_exact_raw_values(ada):
    user, key = ada
    at = day_start(1) + timedelta(hours=3)
    # values on or next to the sketch's bucket edges, and ones the databases print short (1 + 2**-52)
    latencies = [1.0000000000000002, 1.0, sketch.GAMMA**7, sketch.GAMMA**7 * (1 + 2**-52), 1234.5678901234567]
    insert(
        *(
            log_row(user, at, key=key, latency_ms=v, ttft_ms=v / 3, overhead_ms=v / 7, stream=True)
            for v in latencies
        )
    )
    rollups.rollup_pending()
    for granularity in (MINUTE, HOUR, DAY):
        (rollup,) = Rollup.objects.filter(granularity=granularity)
        assert rollup.latency_sketch == sketch.build(latencies)
        assert rollup.ttft_sketch == sketch.build(v / 3 for v in latencies)
        assert rollup.overhead_sketch == sketch.build(v / 7 for v in latencies)


def test_groups_by_key_model_provider_and_task_type(ada):
    user, key = ada
    at = day_start(1) + timedelta(hours=3)
    insert(
        log_row(user, at, key=key),
        log_row(user, at, key=key),
        log_row(user, at, key=None),
        log_row(user, at, key=key, model="mistral-small", provider="mistral"),
        log_row(user, at, key=key, task_type="code"),
    )
    rollups.rollup_pending()
    groups = sorted(
        (str(r.api_key_id), r.model, r.provider, r.task_type, r.requests)
        for r in Rollup.objects.filter(granularity=HOUR)
    )
    assert groups == sorted(
        [
            (str(key.id), "gpt-4o-mini", "openai", "chat", 2),
            ("None", "gpt-4o-mini", "openai", "chat", 1),
            (str(key.id), "mistral-small", "mistral", "chat", 1),
            (str(key.id), "gpt-4o-mini", "openai", "code", 1),
        ]
    )


def test_only_model_requests_are_rolled_up(ada):
    user, key = ada
    at = day_start(1) + timedelta(hours=3)
    insert(log_row(user, at, key=key), log_row(user, at, key=key, endpoint="analytics.usage"))
    rollups.rollup_pending()
    assert [r.requests for r in Rollup.objects.filter(granularity=DAY)] == [1]


def test_a_late_row_is_folded_into_buckets_already_rolled(ada):
    user, key = ada
    at = day_start(1) + timedelta(hours=7, minutes=30)
    insert(log_row(user, at, key=key, latency_ms=100.0))
    rollups.rollup_pending()
    assert Rollup.objects.get(granularity=MINUTE).requests == 1

    # Arrives later (a higher id) with a created_at in buckets that were already rolled up.
    insert(log_row(user, at + timedelta(seconds=20), key=key, latency_ms=300.0))
    summary = rollups.rollup_pending()
    assert summary["rows"] == 1
    for granularity in (MINUTE, HOUR, DAY):
        (rollup,) = Rollup.objects.filter(granularity=granularity)
        assert rollup.requests == 2
        assert rollup.latency_ms_sum == 400.0
        assert sketch.count(rollup.latency_sketch) == 2


def test_a_row_that_becomes_visible_below_the_cursor_is_folded_in(ada):
    """A writer's transaction took lower ids but committed after the cursor passed them."""
    user, key = ada
    at = day_start(1) + timedelta(hours=9)
    base = 10**12
    insert(
        RequestLog(id=base + 1000, **_fields(log_row(user, at, key=key))),
        RequestLog(id=base + 3000, **_fields(log_row(user, at + timedelta(minutes=5), key=key))),
    )
    rollups.rollup_pending()
    assert RollupCursor.objects.get().last_id == base + 3000

    insert(RequestLog(id=base + 2000, **_fields(log_row(user, at + timedelta(seconds=1), key=key))))
    summary = rollups.rollup_pending()
    assert summary["rows"] == 0
    assert summary["late_minutes"] == 1
    assert Rollup.objects.get(granularity=MINUTE, bucket_start=at).requests == 2
    assert Rollup.objects.get(granularity=DAY).requests == 3

    # Nothing stale left: the next run re-reads the window and finds nothing to do.
    assert rollups.rollup_pending()["late_minutes"] == 0


def _fields(row: RequestLog) -> dict:
    return {f.attname: getattr(row, f.attname) for f in RequestLog._meta.concrete_fields if f.name != "id"}


def test_utc_day_boundaries_split_buckets(ada):
    user, key = ada
    midnight = day_start(1)
    insert(
        log_row(user, midnight - timedelta(milliseconds=1), key=key),  # 23:59:59.999
        log_row(user, midnight, key=key),  # 00:00:00.000
    )
    rollups.rollup_pending()
    for granularity, before in ((DAY, day_start(2)), (HOUR, midnight - timedelta(hours=1))):
        starts = dict(Rollup.objects.filter(granularity=granularity).values_list("bucket_start", "requests"))
        assert starts == {before: 1, midnight: 1}
    minutes = dict(Rollup.objects.filter(granularity=MINUTE).values_list("bucket_start", "requests"))
    assert minutes == {midnight - timedelta(minutes=1): 1, midnight: 1}


def test_only_one_of_two_workers_claims_a_range(db):
    RollupCursor.objects.create(name=rollups.CURSOR, last_id=0)
    assert rollups.cursor_claim(from_id=0, to_id=500) is True
    assert rollups.cursor_claim(from_id=0, to_id=500) is False  # the second worker read the same cursor
    assert RollupCursor.objects.get().last_id == 500


def test_a_worker_that_loses_the_claim_takes_the_next_range(ada, monkeypatch):
    user, key = ada
    at = day_start(1) + timedelta(hours=2)
    logs = insert(*(log_row(user, at + timedelta(minutes=i), key=key) for i in range(4)))
    real_claim = rollups.cursor_claim
    stolen = []

    def claim_after_a_rival(*, from_id, to_id):
        if not stolen:  # another worker claims the same range first
            stolen.append((from_id, to_id))
            assert real_claim(from_id=from_id, to_id=to_id)
        return real_claim(from_id=from_id, to_id=to_id)

    monkeypatch.setattr(rollups, "cursor_claim", claim_after_a_rival)
    summary = rollups.rollup_pending(batch_size=2)
    assert stolen == [(0, logs[1].id)]
    assert summary["rows"] == 2  # the rival's two rows are the rival's to roll up
    assert summary["cursor"] == logs[3].id == RollupCursor.objects.get().last_id
    assert Rollup.objects.filter(granularity=MINUTE).count() == 2


def test_two_workers_rewriting_the_same_bucket_at_once_leave_it_single(transactional_db, monkeypatch):
    """Under READ COMMITTED, a second delete-then-insert that waited on the first's deleted rows would
    skip the first's new rows and insert its own: the bucket would count twice."""
    user, _ = user_get_or_create(email="ada@example.com")
    at = day_start(1) + timedelta(hours=5)
    insert(log_row(user, at), log_row(user, at + timedelta(seconds=1), model="mistral-small"))
    rollups.rollup_buckets(granularity=MINUTE, starts=[at])  # rows to delete
    real_write = rollups._write_buckets
    first_has_deleted = threading.Event()

    def slow_write(*args):  # called once the block's rows are deleted, before the new ones are written
        if threading.current_thread().name == "first":
            first_has_deleted.set()
            time.sleep(0.5)  # the second worker arrives while this one holds the bucket
        return real_write(*args)

    monkeypatch.setattr(rollups, "_write_buckets", slow_write)
    errors = []

    def work():
        try:
            rollups.rollup_buckets(granularity=MINUTE, starts=[at])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=work, name="first")
    second = threading.Thread(target=work, name="second")
    first.start()
    assert first_has_deleted.wait(10)
    second.start()
    first.join(20)
    second.join(20)

    assert errors == []
    rows = sorted(Rollup.objects.values_list("model", "requests"))
    assert rows == [("gpt-4o-mini", 1), ("mistral-small", 1)]


def test_a_failed_batch_gives_its_range_back(ada, monkeypatch):
    user, key = ada
    insert(log_row(user, day_start(1), key=key))

    def fail(minutes, summary):
        if minutes:
            raise RuntimeError("database went away")

    monkeypatch.setattr(rollups, "_recompute", fail)
    with pytest.raises(RuntimeError):
        rollups.rollup_pending()
    assert RollupCursor.objects.get().last_id == 0


def test_minutes_past_the_retention_are_not_recomputed(ada):
    """Their raw rows may be pruned already: recomputing would drop them from the rollups."""
    user, key = ada
    old = bucket_floor(timezone.now() - timedelta(days=31), MINUTE)
    with override_settings(REQUEST_LOG_RETENTION_DAYS=60):
        insert(log_row(user, old, key=key), log_row(user, old, key=key))
        rollups.rollup_pending()
    RequestLog.objects.all().delete()  # pruned
    insert(log_row(user, old + timedelta(seconds=5), key=key))  # a very late row

    summary = rollups.rollup_pending()
    assert summary["skipped_minutes"] == 1
    assert Rollup.objects.get(granularity=MINUTE).requests == 2


def test_prune_deletes_only_old_rolled_up_raw_rows_and_keeps_rollups(ada):
    user, key = ada
    now = timezone.now()
    with override_settings(REQUEST_LOG_RETENTION_DAYS=60):
        old = insert(*(log_row(user, now - timedelta(days=d), key=key) for d in (45, 40, 31, 31)))
        recent = insert(log_row(user, now - timedelta(days=29), key=key), log_row(user, now, key=key))
        rollups.rollup_pending()
    not_rolled = insert(log_row(user, now - timedelta(days=35), key=key))  # past the cursor
    rollups_before = snapshot()

    deleted = rollups.prune_raw_logs(older_than_days=30, batch_size=2)

    assert deleted == len(old)
    remaining = set(RequestLog.objects.values_list("id", flat=True))
    assert remaining == {row.id for row in recent + not_rolled}
    assert snapshot() == rollups_before
    assert rollups.prune_raw_logs(older_than_days=30) == 0


def test_rollup_buckets_rejects_unaligned_starts(db):
    with pytest.raises(ValueError):
        rollups.rollup_buckets(granularity=HOUR, starts=[day_start(1) + timedelta(minutes=1)])


# --- the command -----------------------------------------------------------------------------------------


def run_analytics(*args) -> str:
    out = StringIO()
    call_command("run_analytics", *args, stdout=out)
    return out.getvalue()


def test_run_analytics_rolls_up_and_prints_a_summary(people):
    (ada, key), (grace, _) = people[0], people[1]
    at = day_start(1) + timedelta(hours=4)
    insert(log_row(ada, at, key=key), log_row(ada, at, key=key), log_row(grace, at + timedelta(hours=1)))

    output = run_analytics()

    assert "Rolled up 3 new request-log rows in 1 batch(es)" in output
    assert "2 minute, 2 hour and 1 day buckets" in output
    assert "6 rollup rows written" in output
    assert "Done in" in output
    assert "Rolled up 0 new request-log rows" in run_analytics()


def test_run_analytics_rebuild_since_recomputes_every_bucket(ada):
    user, key = ada
    since = day_start(1)
    insert(log_row(user, since + timedelta(hours=4), key=key), log_row(user, timezone.now(), key=key))
    run_analytics()
    expected = snapshot()
    Rollup.objects.filter(granularity=DAY).update(requests=99)
    Rollup.objects.filter(granularity=HOUR).delete()

    output = run_analytics("--rebuild-since", f"{since:%Y-%m-%d}")

    assert f"day buckets since {since:%Y-%m-%d}" in output
    assert snapshot() == expected


def test_run_analytics_refuses_bad_or_pruned_rebuild_dates(db):
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        run_analytics("--rebuild-since", "yesterday")
    with pytest.raises(CommandError, match="retention"):
        run_analytics("--rebuild-since", f"{day_start(31):%Y-%m-%d}")
