"""gunicorn settings for the web process (Procfile `web:`). Every value can be overridden by the environment.

gevent workers: an LLM call holds its request for seconds to minutes while the worker waits on the
provider, so each worker must hold thousands of concurrent requests; a greenlet per request does that in
a few KB, where a thread per request (gthread) or a process (sync) does not. See README "Performance".
"""

import multiprocessing
import os

# The application is loaded once in the master and the workers forked from it (preload_app), so they share
# its memory: 227 -> 156 MB of PSS for the master and two idle workers. gevent must then patch the standard
# library before the application imports it, here, rather than in each worker after the fork.
if os.environ.get("WEB_WORKER_CLASS", "gevent") == "gevent":
    from gevent import monkey

    monkey.patch_all()

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
threads = int(os.environ.get("WEB_THREADS", "1"))  # gthread only: threads per worker
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "2000"))
keepalive = int(os.environ.get("WEB_KEEPALIVE", "75"))
timeout = int(os.environ.get("WEB_TIMEOUT", "120"))  # gevent: worker heartbeat, not a request limit
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "30"))
accesslog = os.environ.get("WEB_ACCESS_LOG") or None  # off by default: the request log is the record
# gunicorn's default line, without what may carry a client's API key: the query string (`?api_key=...`)
# and the Basic-auth user (`curl -u KEY:`). tests/e2e/test_secrets_never_leak_e2e.py searches the log.
access_log_format = '%(h)s %(l)s - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket sits at one fixed path per user, so two servers on a machine would take each
# other's; nothing here uses it.
control_socket_disable = True
preload_app = os.environ.get("WEB_PRELOAD", "true").lower() != "false"
# Python's cyclic garbage collector, per worker (see post_worker_init): the thresholds of its three
# generations, "off" to leave Python's defaults (700,10,10).
_GC_THRESHOLDS = os.environ.get("WEB_GC_THRESHOLDS", "2000,10,10")


def on_starting(server):
    """In the master, before the workers fork: the tokenizers' tables, loaded once and shared by every worker
    (copy-on-write) — see gateway/tokens.py `preload`."""
    from gateway.tokens import preload

    preload()


def pre_fork(server, worker):
    """In the master, with the application loaded (preload_app), before each worker is forked: import every
    view (the URLconf), collect, and move every object that exists now out of the collector's reach
    (gc.freeze). The workers then share these pages with the master: a worker's collections never walk (and
    so never write to, copying them) the modules, classes, settings and catalogue it inherited."""
    if server.cfg.preload_app:
        _freeze_loaded_application()


def _freeze_loaded_application():
    import gc

    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view module now rather than on a first request
    gc.collect()
    gc.freeze()


def post_worker_init(worker):
    """In each worker: let the collector run a little less often (its objects were frozen in the master,
    pre_fork). Otherwise collections stall every request the worker holds. Measured at 200 slow
    connections, alternated runs: 0.86-0.88x of the no-gateway throughput without the freeze and thresholds,
    0.92-0.94x with, p99 latency at 1 connection unchanged (~4 ms); a gen-0 threshold of 50,000 gained no
    more and raised that p99 to 15-30 ms (bench/README.md)."""
    import gc

    if worker.cfg.preload_app:
        gc.freeze()  # what the worker created while starting (no collection first: it would walk the shared)
    else:
        _freeze_loaded_application()
    if _GC_THRESHOLDS != "off":
        gc.set_threshold(*(int(n) for n in _GC_THRESHOLDS.split(",")))
