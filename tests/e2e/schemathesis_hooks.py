"""A schemathesis check of our own, loaded with SCHEMATHESIS_HOOKS: every 4xx is OpenAI's envelope."""

from __future__ import annotations

import schemathesis


@schemathesis.check
def openai_error_envelope(ctx, response, case):
    if response.status_code < 400:
        return None
    error = response.json().get("error")
    if not isinstance(error, dict) or not {"message", "type", "param", "code"} <= set(error):
        raise AssertionError(f"not OpenAI's error envelope: {response.text[:200]}")
    return None
