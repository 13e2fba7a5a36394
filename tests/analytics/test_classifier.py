"""analytics.classify: the task type of a request, measured on the labelled set tests/data/task_prompts.jsonl.

The set is split into "dev" (the rules were tuned on it) and a held-out "test" split (measured once, after
tuning); the accuracy floor is asserted on the test split only. No database needed.
"""

from __future__ import annotations

import collections
import copy
import json
import time
from pathlib import Path

import pytest

from analytics.classify import TASK_TYPES, classify, normalise_task

DATA = Path(__file__).resolve().parent.parent / "data" / "task_prompts.jsonl"

# Measured on the held-out test split when the rules were frozen: 121 of 131. The floor is 2 points lower.
MEASURED_TEST_ACCURACY = 121 / 131
TEST_FLOOR = MEASURED_TEST_ACCURACY - 0.02


def _rows() -> list[dict]:
    with DATA.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


ROWS = _rows()


def _predict(row: dict) -> str:
    return classify(row["request"], completion_tokens=row["completion_tokens"])


def _report(rows: list[dict]) -> tuple[float, dict[str, tuple[int, int]], collections.Counter]:
    """(accuracy, label → (correct, total), Counter of (label, predicted) confusions)."""
    per_label: dict[str, list[int]] = {label: [0, 0] for label in TASK_TYPES}
    confusions: collections.Counter = collections.Counter()
    for row in rows:
        predicted = _predict(row)
        per_label[row["label"]][1] += 1
        if predicted == row["label"]:
            per_label[row["label"]][0] += 1
        else:
            confusions[(row["label"], predicted)] += 1
    correct = sum(c for c, _ in per_label.values())
    return correct / len(rows), {k: (c, t) for k, (c, t) in per_label.items()}, confusions


# ------------------------------------------------------------------------------------------- the data set
def test_labelled_set_is_well_formed():
    assert len(ROWS) >= 360
    labels = collections.Counter(row["label"] for row in ROWS)
    assert set(labels) == set(TASK_TYPES)
    assert min(labels.values()) >= 30
    for row in ROWS:
        assert row["split"] in ("dev", "test")
        assert isinstance(row["request"].get("messages"), list) and row["request"]["messages"]
        assert row["completion_tokens"] is None or isinstance(row["completion_tokens"], int)
    # Stratified: about a third of every label is held out.
    for label in TASK_TYPES:
        rows = [row for row in ROWS if row["label"] == label]
        held_out = sum(row["split"] == "test" for row in rows)
        assert abs(held_out - len(rows) / 3) <= 1, label


# ------------------------------------------------------------------------------------------- accuracy
def test_accuracy_on_held_out_test_split(capsys):
    test_rows = [row for row in ROWS if row["split"] == "test"]
    accuracy, per_label, confusions = _report(test_rows)
    with capsys.disabled():
        print(f"\ntask classifier, test split: {accuracy:.3f} ({len(test_rows)} requests)")
        print("  confusions (label -> predicted):", dict(confusions.most_common()))
    assert accuracy >= TEST_FLOOR


def test_accuracy_on_whole_set_and_per_label_recall(capsys):
    accuracy, per_label, confusions = _report(ROWS)
    dev_accuracy, _, _ = _report([row for row in ROWS if row["split"] == "dev"])
    with capsys.disabled():
        print(f"\ntask classifier, whole set: {accuracy:.3f} ({len(ROWS)} requests)")
        print(f"task classifier, dev split: {dev_accuracy:.3f}")
        for label, (correct, total) in per_label.items():
            print(f"  recall {label:<20} {correct:>3}/{total:<3} {correct / total:.2f}")
        print("  confusions (label -> predicted):", dict(confusions.most_common()))
    assert accuracy > 0.5  # the real floor is on the held-out split; this only guards against a broken run


# ------------------------------------------------------------------------------------------- obvious cases
def user(text, system=None, **body):
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    return {"model": "gpt-4o-mini", "messages": messages, **body}


def tool(name, description):
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": {"type": "object"}},
    }


ARTICLE = "The city council approved a new budget for public transport on Monday. " * 30

OBVIOUS = [
    ("chat", user("hey, how's it going?")),
    ("chat", user("good evening :)")),
    ("chat", user("how was your weekend?")),
    ("chat", user("hi", tools=[tool("get_weather", "Get the weather for a city")])),
    ("question_answering", user("Who painted the Mona Lisa?")),
    ("question_answering", user("Why do cats purr?")),
    ("question_answering", user("What is Kubernetes?")),
    ("question_answering", user("What is the difference between a list and a tuple in Python?")),
    ("summarization", user(f"Please summarise the text below in 3 bullets.\n\n{ARTICLE}")),
    ("summarization", user(f"Summarize this in Spanish:\n\n{ARTICLE}")),
    ("summarization", user(f"TL;DR\n\n{ARTICLE}")),
    (
        "classification",
        user("Classify this support ticket: billing, bug, or feature request.\n\nI was charged twice."),
    ),
    ("classification", user("Is this review positive or negative? 'Terrible service, never again.'")),
    (
        "classification",
        user(
            "I love it!",
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "s",
                    "schema": {
                        "type": "object",
                        "properties": {"sentiment": {"type": "string", "enum": ["pos", "neg", "neu"]}},
                    },
                },
            },
        ),
    ),
    ("extraction", user("Extract every date from this paragraph: We met on 3 May and again on 9 June.")),
    ("extraction", user("List all the email addresses mentioned here: ann@x.io, bob@y.org, and ops@z.com")),
    ("code_generation", user("Write a Go function that reverses a slice in place.")),
    (
        "code_generation",
        user("```python\nprint(1/0)\n```\nZeroDivisionError: division by zero — how do I fix it?"),
    ),
    ("code_generation", user("How do I read a file line by line in Python?")),
    ("translation", user("Translate 'good luck with your exam' into German.")),
    ("translation", user("¿Cómo se dice 'butterfly' en francés?")),
    ("translation", user("Übersetze ins Englische: Ich komme morgen später.")),
    ("rewriting", user("Please rewrite this so it sounds friendlier: 'Send me the file now.'")),
    ("rewriting", user("Proofread this: 'Their going too the park tomorow.'")),
    ("creative_writing", user("Write a short poem about the moon for my daughter.")),
    ("creative_writing", user("Write a story about a dragon who loves tea.")),
    ("creative_writing", user("Give me 5 slogans for a coffee shop.")),
    ("reasoning", user("If 3 pencils cost $1.50, how much do 12 pencils cost?")),
    ("reasoning", user("Solve 2x - 4 = 10 and show your steps.")),
    ("reasoning", user("Prove that there are infinitely many primes.")),
    ("tool_use", user("Send a text to Alice saying I'm late", tools=[tool("send_sms", "Send an SMS")])),
    (
        "tool_use",
        user("What's the weather in Rome?", tools=[tool("get_weather", "Get the weather for a city")]),
    ),
    (
        "tool_use",
        {
            "messages": [
                {"role": "user", "content": "Weather in Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
            ]
        },
    ),
    ("other", user("Generate 5 sample addresses in Germany for test data")),
    ("other", user("a")),
    ("other", user("...")),
    ("other", user("   ")),
    ("other", {"messages": []}),
    (
        "other",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
            ]
        },
    ),
]


@pytest.mark.parametrize(
    ("expected", "request_body"), OBVIOUS, ids=[f"{e}-{i}" for i, (e, _) in enumerate(OBVIOUS)]
)
def test_obvious_cases(expected, request_body):
    assert classify(request_body) == expected


def test_content_as_parts_is_read_like_a_string():
    text = "Translate to French: where is the station?"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
    assert classify(parts) == classify(user(text)) == "translation"


def test_small_answer_supports_classification():
    body = user("Is the following headline clickbait? 'Ten tricks doctors hate'")
    assert classify(body, completion_tokens=1) == "classification"


def test_forced_extraction_function_is_extraction_not_tool_use():
    body = user(
        "I'm Maria from Finch Labs, maria@finchlabs.io",
        tools=[tool("extract_contact", "Record a contact")],
        tool_choice={"type": "function", "function": {"name": "extract_contact"}},
    )
    assert classify(body) == "extraction"


@pytest.mark.parametrize(
    "body",
    [
        None,
        "not a dict",
        {},
        {"messages": None},
        {"messages": "hi"},
        {"messages": [None, 3, {"role": "user"}, {"role": "user", "content": {"odd": True}}]},
        {"messages": [{"role": "user", "content": [None, {"type": "text", "text": 5}]}]},
        {"messages": [{"role": "user", "content": "hi"}], "tools": {"not": "a list"}, "tool_choice": {}},
        {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema"}},
        {"messages": [{"role": "user", "content": "x" * 200_000}]},
    ],
)
def test_malformed_requests_never_raise(body):
    assert classify(body) in TASK_TYPES


def test_request_is_not_mutated():
    row = ROWS[0]
    before = copy.deepcopy(row["request"])
    classify(row["request"], completion_tokens=row["completion_tokens"])
    assert row["request"] == before


# ------------------------------------------------------------------------------------------- normalise_task
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("chat", "chat"),
        ("Code-Generation", "code_generation"),
        ("question answering", "question_answering"),
        ("  TOOL_USE ", "tool_use"),
        ("Creative Writing", "creative_writing"),
        ("other", "other"),
        ("coding", None),
        ("", None),
        ("chat; drop table", None),
        (None, None),
    ],
)
def test_normalise_task(value, expected):
    assert normalise_task(value) == expected


def test_every_task_type_normalises_to_itself():
    for task in TASK_TYPES:
        assert normalise_task(task.upper().replace("_", "-")) == task


# --------------------------------------------------------------------------------------- speed, determinism
def test_speed_mean_under_one_millisecond(capsys):
    for row in ROWS[:20]:  # warm up
        _predict(row)
    rounds = 3
    start = time.perf_counter()
    for _ in range(rounds):
        for row in ROWS:
            _predict(row)
    mean_us = (time.perf_counter() - start) / (rounds * len(ROWS)) * 1e6
    with capsys.disabled():
        print(f"\ntask classifier: mean {mean_us:.0f} µs per request over {len(ROWS)} requests")
    assert mean_us < 1000


def test_deterministic():
    first = [_predict(row) for row in ROWS]
    again = [_predict(copy.deepcopy(row)) for row in reversed(ROWS)][::-1]
    assert first == again
    assert all(label in TASK_TYPES for label in first)
