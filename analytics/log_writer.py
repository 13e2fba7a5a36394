"""Writes request-log rows off the response path, in batches, without losing them.

The guarantee: a row submitted here is written to the database exactly once, unless the process is killed
(SIGKILL, power loss) while the row is still in memory — at most one batch interval
(REQUEST_LOG_FLUSH_SECONDS) or REQUEST_LOG_BATCH_SIZE rows. When the database refuses a batch, its rows
are appended to a spool file (REQUEST_LOG_SPOOL_DIR, fsynced) and replayed when the database answers
again; `request_id` is unique, so a replay never writes a row twice. A graceful shutdown flushes the
queue. Failures are logged, never raised into serving.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

_RETRY_SPOOL_SECONDS = 5.0


class LogWriter:
    def __init__(
        self,
        write_batch: Callable[[list[dict]], None],
        *,
        batch_size: int,
        flush_seconds: float,
        spool_dir: Path,
    ):
        self.write_batch = write_batch
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.spool_dir = spool_dir
        self._queue: queue.Queue[dict] = queue.Queue()
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._next_spool_retry = 0.0

    def submit(self, row: dict) -> None:
        if self._pid != os.getpid():
            self._start()
        self._queue.put(row)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue()  # a forked child must not inherit its parent's rows
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="request-log-writer", daemon=True).start()
            atexit.register(self.flush, 5.0)

    def _run(self) -> None:
        while True:
            rows = self._take_batch()
            try:
                if rows:
                    self.write(rows)
                if time.monotonic() >= self._next_spool_retry:
                    self.replay_spool()
            except Exception:  # the writer must outlive anything: it is the only way rows reach the database
                log.exception("Request-log writer hit an unexpected error; carrying on")
            finally:
                for _ in rows:
                    self._queue.task_done()

    def _take_batch(self) -> list[dict]:
        try:
            rows = [self._queue.get(timeout=_RETRY_SPOOL_SECONDS)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.flush_seconds
        while len(rows) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                rows.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return rows

    def write(self, rows: list[dict]) -> bool:
        try:
            self.write_batch(rows)
            return True
        except Exception:
            log.exception("Could not write %d request-log rows; spooling them to disk", len(rows))
            self._spool(rows)
            self._next_spool_retry = time.monotonic() + _RETRY_SPOOL_SECONDS
            return False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted row is written or spooled (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # --- the spool -------------------------------------------------------------------------------------
    def _spool_path(self) -> Path:
        return self.spool_dir / f"request-log-{os.getpid()}.jsonl"

    def _spool(self, rows: list[dict]) -> None:
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            with open(self._spool_path(), "ab") as spool:
                for row in rows:
                    spool.write(orjson.dumps(row) + b"\n")
                spool.flush()
                os.fsync(spool.fileno())
        except OSError:
            log.critical("Could not spool %d request-log rows: they are lost", len(rows), exc_info=True)

    def replay_spool(self) -> int:
        """Write spooled rows back to the database; returns how many were written.

        A process replays its own spool and those of processes that are gone (a file another live process
        may still be appending to is left to that process)."""
        self._next_spool_retry = time.monotonic() + _RETRY_SPOOL_SECONDS
        written = 0
        for path in self._replayable():
            claimed = self.spool_dir / f"request-log-claimed-{os.getpid()}-{path.name}"
            try:
                path.rename(claimed)  # claim it: one process replays a file
            except OSError:
                continue
            rows = _parse_lines(claimed)
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                if not self.write(batch):
                    self._spool(rows[start + len(batch) :])
                    claimed.unlink()
                    return written
                written += len(batch)
            claimed.unlink()
        return written

    def _replayable(self) -> list[Path]:
        if not self.spool_dir.is_dir():
            return []
        mine = os.getpid()
        found = []
        for path in sorted(self.spool_dir.glob("request-log-*.jsonl")):
            owner = _owner_pid(path.name)
            if owner == mine or owner is None or not _alive(owner):
                found.append(path)
        return found


def _owner_pid(name: str) -> int | None:
    """request-log-123.jsonl → 123; request-log-claimed-456-request-log-123.jsonl → 456."""
    parts = name.removesuffix(".jsonl").split("-")
    try:
        return int(parts[3] if parts[2] == "claimed" else parts[2])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse_lines(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:  # a torn write (crash or full disk mid-line): keep the rest
            log.error("Skipping damaged line %d of request-log spool %s", number, path.name)
    return rows
