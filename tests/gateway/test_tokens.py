"""Token counts for when a provider reports no usage: tiktoken's encodings, offline, per model family."""

from __future__ import annotations

from gateway.tokens import count_prompt, count_text, estimate_usage


def test_counts_use_the_model_familys_encoding_and_work_offline():
    assert count_text("hello world", "gpt-4o") == 2  # o200k_base: [24912, 2375]
    assert count_text("hello world", "claude-3-5-sonnet") == 2  # cl100k_base, an estimate for others
    assert count_text("", "gpt-4o") == 0


def test_prompt_count_follows_openais_chat_recipe():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]
    # 3 priming + per message (3 framing + role + text): system 3+1+3, user 3+1+2
    assert count_prompt(messages, "gpt-4o") == 3 + (3 + 1 + 3) + (3 + 1 + 2)


def test_estimate_is_marked_estimated_and_counts_the_completion():
    usage = estimate_usage([{"role": "user", "content": "hello world"}], "hello world", "gpt-4o")
    assert usage.estimated and usage.completion_tokens == 2 and usage.prompt_tokens == 3 + 3 + 1 + 2


def test_encodings_still_encode_after_the_python_copy_of_the_ranks_is_released():
    # The release must not touch what encoding and decoding use (the Rust core).
    from gateway.tokens import encoding_for

    encoding = encoding_for("gpt-4o")
    assert encoding._mergeable_ranks == {}
    assert encoding.decode(encoding.encode("round trip ✓")) == "round trip ✓"
