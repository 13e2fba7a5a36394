"""Settings for the test suite: the product's settings, with what tests need to be deterministic."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("REQUEST_LOG_MODE", "inline")
os.environ.setdefault("OPENAI_API_KEY", "sk-test-provider-key")
os.environ.setdefault("OPENAI_BASE_URL", "http://openai.test/v1")

from neurometric.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
API_KEY_CACHE_SECONDS = 0.0

# One SQLite test database per test process, so that concurrent runs never share a file.
if "sqlite" in DATABASES["default"]["ENGINE"]:  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-neurometric-{os.getpid()}.sqlite3")}  # noqa: F405

# Celery tasks run in the test process even when REDIS_URL points the broker at Redis.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
