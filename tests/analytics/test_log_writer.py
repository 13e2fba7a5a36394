"""analytics.log_writer.LogWriter: batching, spooling when the database refuses, replay without doubles."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import orjson
import pytest

from accounts.models import ApiKey
from accounts.services import api_key_create, user_get_or_create
from analytics import services
from analytics.log_writer import LogWriter
from analytics.models import RequestLog
from analytics.services import request_log_write_batch


class FakeDatabase:
    """A write_batch callable that records the batches it took, or refuses them while `failing`."""

    def __init__(self, failing: bool = False):
        self.failing = failing
        self.batches: list[list[dict]] = []
        self.refused = 0
        self.lock = threading.Lock()

    def __call__(self, rows: list[dict]) -> None:
        with self.lock:
            if self.failing:
                self.refused += 1
                raise RuntimeError("database is down")
            self.batches.append([dict(row) for row in rows])

    @property
    def rows(self) -> list[dict]:
        return [row for batch in self.batches for row in batch]


def make_rows(n: int, start: int = 0) -> list[dict]:
    return [{"request_id": f"req_{i:04d}", "status_code": 200, "n": i} for i in range(start, start + n)]


def spool_files(directory) -> list:
    return sorted(p for p in directory.iterdir()) if directory.is_dir() else []


def read_spool(directory) -> list[dict]:
    rows = []
    for path in spool_files(directory):
        rows += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return rows


def writer_for(database, tmp_path, *, batch_size: int = 500, flush_seconds: float = 0.05) -> LogWriter:
    return LogWriter(
        database, batch_size=batch_size, flush_seconds=flush_seconds, spool_dir=tmp_path / "spool"
    )


def quiesce(writer: LogWriter, database: FakeDatabase) -> None:
    """The background thread lives on (a daemon); leave it a working database and nothing to replay."""
    database.failing = False
    writer.flush(5.0)
    for path in spool_files(writer.spool_dir):
        path.unlink()


# --- batching ---------------------------------------------------------------------------------------------


def test_submitted_rows_are_written_in_batches_after_flush(tmp_path):
    database = FakeDatabase()
    writer = writer_for(database, tmp_path)
    rows = make_rows(10)

    for row in rows:
        writer.submit(row)
    assert writer.flush(5.0)

    assert 1 <= len(database.batches) <= 2
    assert database.rows == rows  # all of them, once each, in order
    assert spool_files(writer.spool_dir) == []
    quiesce(writer, database)


def test_a_batch_never_exceeds_batch_size(tmp_path):
    database = FakeDatabase()
    writer = writer_for(database, tmp_path, batch_size=4, flush_seconds=0.5)
    rows = make_rows(10)

    for row in rows:
        writer.submit(row)
    assert writer.flush(5.0)

    assert all(len(batch) <= 4 for batch in database.batches)
    assert len(database.batches) >= 3
    assert database.rows == rows
    quiesce(writer, database)


def test_submit_returns_at_once_even_when_the_database_is_slow(tmp_path):
    release = threading.Event()

    def slow_write(rows):
        release.wait(5.0)

    writer = writer_for(slow_write, tmp_path)
    started = time.perf_counter()
    for row in make_rows(50):
        writer.submit(row)
    elapsed = time.perf_counter() - started
    release.set()

    assert elapsed < 0.5
    assert writer.flush(5.0)


def test_flush_with_nothing_submitted_returns_true_at_once(tmp_path):
    writer = writer_for(FakeDatabase(), tmp_path)
    assert writer.flush(0.1) is True


# --- spooling ---------------------------------------------------------------------------------------------


def test_rows_the_database_refuses_are_spooled_to_disk_as_jsonl(tmp_path):
    database = FakeDatabase(failing=True)
    writer = writer_for(database, tmp_path)
    rows = make_rows(10)

    for row in rows:
        writer.submit(row)
    assert writer.flush(5.0)

    assert database.refused >= 1 and database.rows == []
    files = spool_files(writer.spool_dir)
    assert len(files) == 1 and files[0].name.startswith("request-log-") and files[0].suffix == ".jsonl"
    assert read_spool(writer.spool_dir) == rows
    quiesce(writer, database)


def test_write_reports_failure_and_spools_without_raising(tmp_path):
    database = FakeDatabase(failing=True)
    writer = writer_for(database, tmp_path)

    assert writer.write(make_rows(3)) is False
    assert writer.write(make_rows(2, start=3)) is False

    assert read_spool(writer.spool_dir) == make_rows(5)


def test_replay_spool_writes_the_rows_and_removes_the_spool_file(tmp_path):
    database = FakeDatabase(failing=True)
    writer = writer_for(database, tmp_path)
    rows = make_rows(7)
    writer.write(rows)
    assert spool_files(writer.spool_dir)

    database.failing = False
    assert writer.replay_spool() == 7

    assert database.rows == rows
    assert spool_files(writer.spool_dir) == []


def test_replay_spool_writes_in_batches_of_batch_size(tmp_path):
    database = FakeDatabase(failing=True)
    writer = writer_for(database, tmp_path, batch_size=3)
    writer.write(make_rows(7))

    database.failing = False
    assert writer.replay_spool() == 7
    assert [len(batch) for batch in database.batches] == [3, 3, 1]


def test_another_process_replays_a_spool_left_behind(tmp_path):
    """A new writer (a restarted process) picks up what a previous one spooled."""
    broken = FakeDatabase(failing=True)
    writer_for(broken, tmp_path).write(make_rows(4))

    database = FakeDatabase()
    assert writer_for(database, tmp_path).replay_spool() == 4
    assert database.rows == make_rows(4)
    assert spool_files(tmp_path / "spool") == []


def test_replay_while_the_database_is_still_down_keeps_every_row(tmp_path):
    database = FakeDatabase(failing=True)
    writer = writer_for(database, tmp_path, batch_size=2)
    rows = make_rows(5)
    writer.write(rows)

    assert writer.replay_spool() == 0

    assert sorted(read_spool(writer.spool_dir), key=lambda r: r["n"]) == rows
    assert all(p.suffix == ".jsonl" for p in spool_files(writer.spool_dir))  # no claimed file left behind


def test_replay_that_fails_halfway_loses_and_doubles_nothing(tmp_path):
    database = FakeDatabase(failing=True)
    writer = writer_for(database, tmp_path, batch_size=2)
    rows = make_rows(5)
    writer.write(rows)

    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("connection lost")
        database.batches.append(list(batch))

    writer.write_batch = flaky
    assert writer.replay_spool() == 2
    assert database.rows == rows[:2]

    writer.write_batch = database
    database.failing = False
    assert writer.replay_spool() == 3

    assert sorted(database.rows, key=lambda r: r["n"]) == rows
    assert spool_files(writer.spool_dir) == []


def test_replay_with_no_spool_directory_writes_nothing(tmp_path):
    database = FakeDatabase()
    assert writer_for(database, tmp_path).replay_spool() == 0
    assert database.batches == []


# --- replay into the real request log ---------------------------------------------------------------------


def log_rows(user_id: int, key_id: str, n: int) -> list[dict]:
    now = time.time()
    return [
        {
            "request_id": f"req_replay_{i}",
            "user_id": user_id,
            "api_key_id": key_id,
            "created_ts": now,
            "endpoint": "chat.completions",
            "requested_model": "gpt-4o",
            "served_model": "gpt-4o-2024-08-06",
            "provider": "openai",
            "stream": False,
            "status_code": 200,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "pricing": {"input_per_mtok": "2.5", "output_per_mtok": "10"},
        }
        for i in range(n)
    ]


@pytest.mark.django_db(transaction=True)
def test_replaying_the_same_rows_twice_into_the_request_log_writes_each_request_once(tmp_path):
    user, _ = user_get_or_create(email="replay@example.com")
    api_key, _ = api_key_create(user=user, name="replay")
    rows = log_rows(user.id, str(api_key.id), 5)

    refusing = FakeDatabase(failing=True)
    spooler = writer_for(refusing, tmp_path)
    spooler.write(rows)
    spooler.write(rows)  # the same rows spooled twice (e.g. a batch written, then its spool replayed)

    writer = writer_for(request_log_write_batch, tmp_path)
    assert writer.replay_spool() == 10
    spooler.write(rows)
    assert writer.replay_spool() == 5

    assert RequestLog.objects.count() == 5
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == [r["request_id"] for r in rows]
    assert spool_files(writer.spool_dir) == []
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_row_whose_user_is_gone_does_not_sink_the_rest_of_the_batch(tmp_path):
    user, _ = user_get_or_create(email="kept@example.com")
    api_key, _ = api_key_create(user=user, name="kept")
    rows = log_rows(user.id, str(api_key.id), 3)
    rows[1]["user_id"] = user.id + 999
    rows[1]["api_key_id"] = None

    refusing = FakeDatabase(failing=True)
    writer_for(refusing, tmp_path).write(rows)
    writer_for(request_log_write_batch, tmp_path).replay_spool()

    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["req_replay_0", "req_replay_2"]


# --- a damaged or abandoned spool ---------------------------------------------------------------------------


def write_spool_file(directory, name: str, rows: list[dict], tail: bytes = b"") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows) + tail)


def test_replay_skips_a_torn_last_line_and_writes_the_good_rows(tmp_path):
    spool = tmp_path / "spool"
    rows = make_rows(3)
    write_spool_file(spool, f"request-log-{os.getpid()}.jsonl", rows, tail=b'{"request_id": "req_torn", "sta')
    database = FakeDatabase()

    writer_for(database, tmp_path).replay_spool()

    assert database.rows == rows


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_writer_keeps_writing_after_meeting_a_damaged_spool(tmp_path):
    spool = tmp_path / "spool"
    write_spool_file(spool, f"request-log-{os.getpid()}.jsonl", [], tail=b"not json\n")
    database = FakeDatabase()
    writer = writer_for(database, tmp_path)

    writer.submit(make_rows(1)[0])
    writer.flush(2.0)
    time.sleep(0.2)  # the thread replays the spool right after its first batch
    writer.submit(make_rows(1, start=1)[0])
    flushed = writer.flush(1.0)

    quiesce(writer, database)
    assert flushed
    assert database.rows == make_rows(2)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_spool_claimed_by_a_process_that_died_is_replayed(tmp_path):
    pid = dead_pid()
    rows = make_rows(4)
    write_spool_file(tmp_path / "spool", f"request-log-claimed-{pid}-request-log-{pid}.jsonl", rows)
    database = FakeDatabase()

    writer_for(database, tmp_path).replay_spool()

    assert database.rows == rows


def test_the_spool_of_another_live_process_is_left_to_that_process(tmp_path):
    # pid 1 is always alive: its file may still be appended to, so only pid 1 replays it
    write_spool_file(tmp_path / "spool", "request-log-1.jsonl", make_rows(2))
    database = FakeDatabase()

    writer_for(database, tmp_path).replay_spool()

    assert database.rows == []
    assert (tmp_path / "spool" / "request-log-1.jsonl").exists()


def test_the_spool_of_a_process_that_died_is_replayed(tmp_path):
    pid = dead_pid()
    rows = make_rows(2)
    write_spool_file(tmp_path / "spool", f"request-log-{pid}.jsonl", rows)
    database = FakeDatabase()

    writer_for(database, tmp_path).replay_spool()

    assert database.rows == rows


@pytest.mark.django_db(transaction=True)
def test_last_used_at_costs_one_query_per_key_and_minute(tmp_path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user, _ = user_get_or_create(email="touch@example.com")
    api_key, _ = api_key_create(user=user, name="touch")
    rows = log_rows(user.id, str(api_key.id), 6)

    def key_updates(batch) -> int:
        with CaptureQueriesContext(connection) as queries:
            request_log_write_batch(batch)
        return sum(1 for q in queries.captured_queries if q["sql"].startswith('UPDATE "accounts_apikey"'))

    assert key_updates(rows[:2]) == 1
    first = ApiKey.objects.get(id=api_key.id).last_used_at
    assert first is not None
    assert key_updates(rows[2:4]) == 0  # the same minute: no query
    ApiKey.objects.filter(id=api_key.id).update(last_used_at=first - timedelta(minutes=5))
    services._touched[str(api_key.id)] -= timedelta(minutes=1)  # as if this process touched it a minute ago
    assert key_updates(rows[4:]) == 1
    assert ApiKey.objects.get(id=api_key.id).last_used_at > first - timedelta(minutes=5)


@pytest.mark.django_db
def test_a_batch_gives_way_to_a_request_waiting_in_the_same_gevent_worker(monkeypatch):
    """Under gevent the writer and the requests share one thread: a client's request that arrives while a
    batch is being written is read before the batch ends, not after it (gunicorn.conf.py patches time.sleep
    as here)."""
    gevent = pytest.importorskip("gevent")
    from gevent import socket as gevent_socket

    monkeypatch.setattr(time, "sleep", gevent.sleep)
    user, _ = user_get_or_create(email="turns@example.com")
    api_key, _ = api_key_create(user=user, name="turns")
    rows = log_rows(user.id, str(api_key.id), 1000)  # milliseconds of writing on any machine
    client, server = gevent_socket.socketpair()
    events = []

    def serving():
        server.recv(1)
        events.append("request read")

    def writing():
        client.sendall(b"x")  # the request arrives as the batch starts
        request_log_write_batch(rows)
        events.append("batch written")

    waiting = gevent.spawn(serving)
    gevent.sleep(0)  # the request's greenlet now waits on its socket
    gevent.spawn(writing).get(timeout=30)
    waiting.get(timeout=5)
    client.close()
    server.close()
    assert events == ["request read", "batch written"]
    assert RequestLog.objects.filter(user_id=user.id).count() == 1000
