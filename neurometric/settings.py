"""Neurometric settings: everything comes from the environment (or a `.env` file beside manage.py).

With nothing set, the product runs on an embedded default: a SQLite file in WAL mode, a local-memory cache
and Celery tasks run eagerly in-process. `DATABASE_URL=postgres://...` and `REDIS_URL=redis://...` switch
the same code to PostgreSQL, Redis and separate Celery worker and beat processes. `.env.example` lists
every variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The environment wins over the .env file; NEUROMETRIC_ENV_FILE names another file ("" for none).
ENV_FILE = os.environ.get("NEUROMETRIC_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "accounts",
    "gateway",
    "analytics",
    "dashboard",
]

MIDDLEWARE = [
    # First, so that every /v1 response (errors included) carries x-request-id and never an HTML page.
    "gateway.middleware.ApiEdgeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "gateway.middleware.PageMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# What an API call (/v1/) goes through instead, in MIDDLEWARE's order; the rest is for pages only
# (neurometric/handler.py).
API_MIDDLEWARE = [
    "gateway.middleware.ApiEdgeMiddleware",
    "django.middleware.security.SecurityMiddleware",
]

ROOT_URLCONF = "neurometric.urls"
WSGI_APPLICATION = "neurometric.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------------
VAR_DIR = Path(env.str("NEUROMETRIC_VAR_DIR", default=str(BASE_DIR / "var")))
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'neurometric.sqlite3'}"
DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db["ENGINE"] = "neurometric.sqlite"  # Django's, keeping closed connections for reuse (see its docstring)
    SQLITE_KEEP_CONNECTIONS = env.int("SQLITE_KEEP_CONNECTIONS", default=8)
    _db["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
    _db["TEST"] = {"NAME": str(VAR_DIR / "test-neurometric.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # psycopg's pool: greenlets borrow a connection for a query and give it back, so a gevent worker
    # holding hundreds of requests needs only a handful of server connections. CONN_HEALTH_CHECKS makes the
    # pool check each connection as it leaves, so connections broken by a database restart are replaced.
    _db["CONN_MAX_AGE"] = 0
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Cache and Celery ---------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# With Redis, a busy key far from its limits is admitted from a process's lease (gateway/limit_leases.py)
# instead of one script call per request; false: every request is checked in Redis.
LIMIT_LEASES = env.bool("LIMIT_LEASES", default=True)
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"

# --- Auth, i18n, static -----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# plotly.js is served from the installed `plotly` package (dashboard/staticfiles.py), never from a CDN.
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "dashboard.staticfiles.PlotlyFinder",
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "dashboard:landing"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Neurometric <noreply@localhost>")

# --- Production hardening (all on when DEBUG is off) --------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Behind a TLS-terminating proxy, set SECURE_SSL_REDIRECT=true (README "Production"); plain-http local runs
# and tests keep it off. HSTS is on whenever DEBUG is off (browsers ignore it over plain http).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Django REST framework: the /v1 API speaks OpenAI's error envelope ----------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["gateway.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [],
    "EXCEPTION_HANDLER": "gateway.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# The OpenAPI schema served at /v1/openapi.json.
SPECTACULAR_SETTINGS = {"TITLE": "Neurometric API", "VERSION": "1.0.0"}

# --- The gateway ----------------------------------------------------------------------------------------
# Bodies larger than this get 413 in OpenAI's envelope.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=10.0)
UPSTREAM_READ_TIMEOUT = env.float("UPSTREAM_READ_TIMEOUT", default=600.0)
UPSTREAM_POOL_SIZE = env.int("UPSTREAM_POOL_SIZE", default=1000)
# How long a process trusts what it learnt about an API key (revocation reaches every process within it).
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=1.0)
# While the database cannot be reached, a key seen within this many seconds keeps working.
API_KEY_STALE_SECONDS = env.float("API_KEY_STALE_SECONDS", default=300.0)
# How often a process re-reads the catalogue overrides staff keep in the database.
CATALOG_REFRESH_SECONDS = env.float("CATALOG_REFRESH_SECONDS", default=10.0)
STORE_REQUEST_BODIES = env.bool("STORE_REQUEST_BODIES", default=False)

REQUEST_LOG_BATCH_SIZE = env.int("REQUEST_LOG_BATCH_SIZE", default=500)
REQUEST_LOG_FLUSH_SECONDS = env.float("REQUEST_LOG_FLUSH_SECONDS", default=0.05)
REQUEST_LOG_SPOOL_DIR = Path(env.str("REQUEST_LOG_SPOOL_DIR", default=str(VAR_DIR / "spool")))


def _provider(name: str, base_url: str, *, needs_key: bool = True, extra: bool = False) -> dict:
    prefix = name.upper().replace("-", "_")
    explicit_url = env.str(f"{prefix}_BASE_URL", default="")
    return {
        "api_key": env.str(f"{prefix}_API_KEY", default=""),
        "base_url": (explicit_url or base_url).rstrip("/"),
        "needs_key": needs_key,
        "extra": extra,
        # a keyless provider (Ollama) counts as configured once its URL is set
        "configured": bool(env.str(f"{prefix}_API_KEY", default=""))
        or (not needs_key and bool(explicit_url)),
    }


PROVIDERS = {
    "openai": _provider("openai", "https://api.openai.com/v1"),
    "anthropic": _provider("anthropic", "https://api.anthropic.com"),
    "gemini": _provider("gemini", "https://generativelanguage.googleapis.com"),
    "mistral": _provider("mistral", "https://api.mistral.ai/v1"),
    "groq": _provider("groq", "https://api.groq.com/openai/v1"),
    "together": _provider("together", "https://api.together.xyz/v1"),
    "ollama": _provider("ollama", "http://localhost:11434/v1", needs_key=False),
}
# Any other OpenAI-compatible server, by configuration alone: EXTRA_PROVIDERS=vllm=http://gpu:8000/v1,...
# Each is used as `name/model`; its key, if it needs one, is <NAME>_API_KEY.
for _name, _url in env.dict("EXTRA_PROVIDERS", default={}).items():
    if _name in PROVIDERS or not _name.replace("-", "").replace("_", "").isalnum():
        raise ImproperlyConfigured(f"EXTRA_PROVIDERS: {_name!r} is taken or not a plain name.")
    PROVIDERS[_name] = _provider(_name, _url, needs_key=False, extra=True) | {"configured": True}

# llama-3-70b and llama-3-8b go to the first of these hosts that is configured and serves the model.
LLAMA_HOSTS = env.list("LLAMA_HOSTS", default=["groq", "together", "ollama"])
UPSTREAM_MAX_RETRIES = env.int("UPSTREAM_MAX_RETRIES", default=2)  # per model, on 429, 5xx, timeouts
UPSTREAM_RETRY_BUDGET_SECONDS = env.float("UPSTREAM_RETRY_BUDGET_SECONDS", default=30.0)
UPSTREAM_RETRY_MAX_WAIT_SECONDS = env.float("UPSTREAM_RETRY_MAX_WAIT_SECONDS", default=10.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

# "background": rows are written off the response path by a batching thread (production).
# "inline": written at once in the request's thread (unit tests that run inside a transaction).
REQUEST_LOG_MODE = env.str("REQUEST_LOG_MODE", default="background")
CELERY_TASK_DEFAULT_QUEUE = "default"

# --- Analytics ------------------------------------------------------------------------------------------
# Figures read raw request-log rows for the last N minutes and rollups before that (rollups run every 30 s,
# so they are complete well before the boundary). Must stay larger than the rollup's lag.
ANALYTICS_RAW_WINDOW_MINUTES = env.int("ANALYTICS_RAW_WINDOW_MINUTES", default=10)
if ANALYTICS_RAW_WINDOW_MINUTES < 1:
    raise ImproperlyConfigured("ANALYTICS_RAW_WINDOW_MINUTES must be at least 1.")

# Raw request-log rows older than this many days are deleted daily (analytics.prune_raw_logs); the minute,
# hour and day rollups are kept.
REQUEST_LOG_RETENTION_DAYS = env.int("REQUEST_LOG_RETENTION_DAYS", default=30)
if REQUEST_LOG_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("REQUEST_LOG_RETENTION_DAYS must be at least 1.")

# The model that judges open-text answers in shadow evaluations (analytics/shadow.py).
SHADOW_JUDGE_MODEL = env.str("SHADOW_JUDGE_MODEL", default="gpt-4o-mini")

# Prometheus metrics at /metrics (analytics/metrics.py) need `Authorization: Bearer <this>`; unset: off (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- Response cache (gateway/response_cache.py) ---------------------------------------------------------
# Identical requests of a user are answered from the cache when its key has `cache_ttl_seconds` or the
# request sends `x-neurometric-cache: true`. The TTL used when the header gives none and the key has none:
RESPONSE_CACHE_DEFAULT_TTL_SECONDS = env.int("RESPONSE_CACHE_DEFAULT_TTL_SECONDS", default=3600)
# No answer is kept longer than this, whatever the key or the x-neurometric-cache-ttl header asks.
RESPONSE_CACHE_MAX_TTL_SECONDS = env.int("RESPONSE_CACHE_MAX_TTL_SECONDS", default=86400)
if RESPONSE_CACHE_DEFAULT_TTL_SECONDS < 1 or RESPONSE_CACHE_MAX_TTL_SECONDS < 1:
    raise ImproperlyConfigured("RESPONSE_CACHE_*_TTL_SECONDS must be at least 1.")
