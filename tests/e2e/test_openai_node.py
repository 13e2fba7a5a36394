"""The official `openai` npm package on Node.js against the real server (non-stream, stream, bad key)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_for_log

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).with_name("node")


def test_openai_npm_package_works_unchanged(server, e2e_key):
    node = shutil.which("node")
    assert node, "Node.js is required for this test (see README: make test installs the npm package)"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `npm ci` in tests/e2e/node (make test does)"
    env = {**os.environ, "NEUROMETRIC_BASE_URL": f"{server.url}/v1", "NEUROMETRIC_API_KEY": e2e_key}
    result = subprocess.run(
        [node, "chat.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["content"] == "Hello from the fake provider."
    assert seen["streamed"] == "Hello from the fake provider."
    assert (
        seen["usage"]["total_tokens"] == seen["usage"]["prompt_tokens"] + seen["usage"]["completion_tokens"]
    )
    assert seen["authError"] == {"name": "AuthenticationError", "status": 401, "code": "invalid_api_key"}
    assert wait_for_log(seen["requestId"]).status_code == 200
