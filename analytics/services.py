"""Writes on the request log. The gateway calls `request_log_record` once per authenticated request."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiKey
from analytics.classify import classify
from analytics.hashing import request_signals
from analytics.log_writer import LogWriter
from analytics.models import RequestLog
from analytics.pricing import cost_usd
from analytics.redaction import redact, redact_keys_text

log = logging.getLogger(__name__)

LAST_USED_GRANULARITY = timedelta(minutes=1)
# Stored whatever the key's settings, and filled in by the client: an API key pasted there is redacted.
_CLIENT_TEXT_FIELDS = ("requested_model", "model", "end_user", "tags", "error_message")


def request_log_record(row: dict) -> None:
    """Queue one row (plain JSON-able values; see `_build`). Never raises into serving."""
    try:
        if settings.REQUEST_LOG_MODE == "inline":
            log_writer.write([row])  # spools on failure, like the background writer
        else:
            log_writer.submit(row)
    except Exception:
        log.exception("Could not record request %s", row.get("request_id"))


def _classify(row: dict) -> None:
    body = row.pop("_classify", None)
    if body is None:
        return
    row.update(request_signals(body))  # request_hash, prefix_hash ...: fingerprints for the recommendations
    if not row.get("task_type"):
        row["task_type"] = classify(body, completion_tokens=row.get("completion_tokens"))


def _fields(row: dict) -> dict:
    """A queued row as RequestLog field values: time, exact cost, redacted bodies."""
    fields = dict(row)
    fields["created_at"] = datetime.fromtimestamp(fields.pop("created_ts"), tz=UTC)
    tokens = {
        name: fields.get(name, 0)
        for name in ("prompt_tokens", "cached_tokens", "cache_write_tokens", "completion_tokens")
    }
    if not tokens["prompt_tokens"] and not tokens["completion_tokens"]:
        cost = Decimal(0)  # nothing billed, whatever the price
    else:
        cost = cost_usd(fields.get("pricing"), **tokens)
    if fields.get("cache_hit"):  # answered from the response cache: free, and it saved what it would cost
        fields["cost_saved_usd"], cost = cost, Decimal(0)
    fields["cost_usd"] = cost
    fields["cost_unknown"] = cost is None
    for name in ("request_body", "response_body"):
        if fields.get(name) is not None:
            fields[name] = redact(fields[name])
    for name in _CLIENT_TEXT_FIELDS:
        if fields.get(name):
            fields[name] = redact(fields[name], redact_keys_text)
    return fields


def _build(row: dict) -> RequestLog:
    return RequestLog(**_fields(row))


def request_log_write_batch(rows: list[dict]) -> None:
    """Insert rows (a replayed row is skipped, not doubled) and touch the keys' last_used_at."""
    try:
        _write_batch(rows)
    except DatabaseError:
        # The writer's connection may have died with the database (a restart): the next batch reconnects.
        if not connection.in_atomic_block:
            connection.close()
        raise


def _write_batch(rows: list[dict]) -> None:
    for row in _taking_turns(rows):
        _classify(row)  # before anything can fail: a spooled row keeps its task type, not the request
    if connection.vendor == "postgresql" and _copy([_fields(row) for row in _taking_turns(rows)]):
        _touch_keys({row["api_key_id"] for row in rows if row.get("api_key_id")})
        return
    objects = [_build(row) for row in _taking_turns(rows)]
    try:
        with transaction.atomic():
            RequestLog.objects.bulk_create(objects, ignore_conflicts=True)
    except IntegrityError:
        # One bad row (its user deleted meanwhile) must not sink the batch: write the rest one by one.
        for obj in objects:
            try:
                with transaction.atomic():
                    RequestLog.objects.bulk_create([obj], ignore_conflicts=True)
            except IntegrityError:
                log.error("Dropped request-log row %s: %s", obj.request_id, "its user or key is gone")
    _touch_keys({row["api_key_id"] for row in rows if row.get("api_key_id")})


_TURN_AFTER_SECONDS = 0.0005  # of writing
_TURN_SECONDS = 0.00001


def _taking_turns(rows: list[dict]):
    """Each row, giving serving a turn after every _TURN_AFTER_SECONDS of writing.

    The writer shares its process with the requests it logs: under gevent, one thread, where nothing else
    runs until it gives way. A batch costs ~25 µs of CPU per row (classification, cost, COPY), so without
    turns a request that arrived while a batch was written waited for all of it: p99 at one connection
    2.8 ms against a p50 of 0.47, and 7.4 ms with 2-second batches. A turn is a sleep on a timer, not
    sleep(0): gevent resumes a sleep(0) before it polls the sockets, so a waiting request would not be read.

    A turn lasts as long as the worker takes to serve what is ready: under full load, many requests. The
    writer then writes at least as long as its turn took before it gives the next, so while it has rows it
    keeps at least half of the worker's time and never falls behind the load. With a fixed turn every 8
    rows it did: at 32 connections the log was complete 8.4 s after the load stopped instead of 0.2 s."""
    due = time.perf_counter() + _TURN_AFTER_SECONDS
    for row in rows:
        if (gave := time.perf_counter()) >= due:
            time.sleep(_TURN_SECONDS)
            resumed = time.perf_counter()
            due = resumed + max(_TURN_AFTER_SECONDS, resumed - gave)
        yield row


_COPY_FIELDS = [f for f in RequestLog._meta.concrete_fields if not f.primary_key]
_JSON_FIELDS = {f.attname for f in _COPY_FIELDS if f.get_internal_type() == "JSONField"}
_DEFAULTS = {f.attname: f.get_default() for f in _COPY_FIELDS}


def _copy(rows: list[dict]) -> bool:
    """PostgreSQL's COPY: several times cheaper than INSERT through the ORM, which matters because the
    writer shares its process with the gateway. False when the batch needs the careful path (a replayed
    row that is already there, a row whose user is gone)."""
    import psycopg
    from psycopg.types.json import Jsonb

    columns = ", ".join(connection.ops.quote_name(f.column) for f in _COPY_FIELDS)
    sql = f"COPY {connection.ops.quote_name(RequestLog._meta.db_table)} ({columns}) FROM STDIN"
    try:
        with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for row in _taking_turns(rows):
                values = []
                for field in _COPY_FIELDS:
                    name = field.attname
                    value = row.get(name, _DEFAULTS[name])
                    if name in _JSON_FIELDS and value is not None:
                        value = Jsonb(value)
                    values.append(value)
                copy.write_row(values)
    except (IntegrityError, DataError, psycopg.IntegrityError, psycopg.DataError):
        return False
    return True


_touched: dict = {}  # key id -> when this process last set the key's last_used_at
_TOUCHED_MAX = 100_000
_NEVER = datetime.min.replace(tzinfo=UTC)


def _touch_keys(key_ids: set) -> None:
    """Set the keys' last_used_at, to the minute: a key this process set less than a minute ago costs no
    query (a batch is written every 50 ms under load; the UPDATE would find nothing to change)."""
    now = timezone.now()
    due = {key_id for key_id in key_ids if now - _touched.get(key_id, _NEVER) >= LAST_USED_GRANULARITY}
    if not due:
        return
    ApiKey.objects.filter(id__in=due).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_GRANULARITY)
    ).update(last_used_at=now)
    if len(_touched) >= _TOUCHED_MAX:
        _touched.clear()
    _touched.update(dict.fromkeys(due, now))


log_writer = LogWriter(
    request_log_write_batch,
    batch_size=settings.REQUEST_LOG_BATCH_SIZE,
    flush_seconds=settings.REQUEST_LOG_FLUSH_SECONDS,
    spool_dir=settings.REQUEST_LOG_SPOOL_DIR,
)
