"""Database use on the hot path: borrow a connection for one query and give it back at once.

A gevent worker holds hundreds of requests that each wait seconds on a provider. Django keeps a request's
database connection until the request ends, so a request that touched the database once (a key lookup on a
cache miss) would hold a pooled PostgreSQL connection for its whole provider call, and a few hundred such
requests would drain the pool. `released()` returns the connection to the pool as soon as the query is done.
SQLite connections are not pooled and cost nothing to keep, so they are left alone, as is any connection
inside a transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def released() -> Iterator[None]:
    try:
        yield
    finally:
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            connection.close()  # with psycopg's pool: back to the pool
