"""Django's SQLite backend, keeping closed connections for the next request (the embedded default).

Django opens a database connection per thread and closes it when the request ends; under gevent every
request is its own greenlet, so every request that touches the database opened a new SQLite connection.
Its first statement costs about 0.6 ms on the reference machine (the WAL index is mapped and the schema
read) — more than all the rest of a response-cache hit. Here a closed connection goes back to a short list
of the process's idle connections to the same file, and the next one is taken from there.

A connection is only kept outside a transaction. Each process keeps its own (a forked child starts empty).
`SQLITE_KEEP_CONNECTIONS` (default 8) caps the idle list; 0 closes every connection, as Django does.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.db.backends.sqlite3 import base

_idle: dict[str, list] = {}  # database file -> idle sqlite3 connections
_pid = os.getpid()


def _idle_for(database: str) -> list:
    global _idle, _pid
    if _pid != os.getpid():  # never share a parent's connections with a forked child
        _idle, _pid = {}, os.getpid()
    return _idle.setdefault(database, [])


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        idle = _idle_for(conn_params["database"])
        if idle:
            return idle.pop()
        return super().get_new_connection(conn_params)

    def _close(self):
        connection = self.connection
        keep = getattr(settings, "SQLITE_KEEP_CONNECTIONS", 8)
        if connection is not None and not connection.in_transaction and not self.is_in_memory_db():
            idle = _idle_for(self.settings_dict["NAME"])
            if len(idle) < keep:
                idle.append(connection)
                return
        super()._close()
