"""Shadow evaluation end to end: traffic logged with its bodies through the gateway, replayed on the
suggested model through the gateway's own providers (their HTTP mocked by `responses`), compared exactly,
field by field, or by an LLM judge asked twice with the order swapped."""

from __future__ import annotations

import re
from decimal import Decimal

import orjson
import pytest
import responses

from analytics.models import Recommendation, ShadowEvaluation
from analytics.shadow import JUDGE_SYSTEM, compare_fields, parse_verdict, wilson
from tests.gateway.openai_fixtures import UPSTREAM, completion

pytestmark = pytest.mark.django_db

REVIEWS = {
    "Classify the sentiment of this review as positive or negative: Great phone.": ("positive", "Positive."),
    "Classify the sentiment of this review as positive or negative: Broke in a day.": (
        "negative",
        "negative",
    ),
    "Classify the sentiment of this review as positive or negative: Love it.": ("positive", "positive"),
    "Classify the sentiment of this review as positive or negative: Meh, it works.": ("positive", "neutral"),
    "Classify the sentiment of this review as positive or negative: Waste of money.": (
        "negative",
        "Negative",
    ),
    "Classify the sentiment of this review as positive or negative: Five stars.": ("positive", "positive"),
}
REPLAY_COST = (10_000 * Decimal("0.15") + 10 * Decimal("0.6")) / 1_000_000  # gpt-4o-mini, per replay


class FakeUpstream:
    """One OpenAI upstream for every model: answers by model and last user message; judges by a rule."""

    def __init__(self, answers: dict[str, dict[str, str]], judge=None):
        self.answers, self.judge, self.bodies = answers, judge, []

    def __call__(self, request):
        body = orjson.loads(request.body)
        self.bodies.append(body)
        if body["messages"][0]["content"] == JUDGE_SYSTEM:
            text = body["messages"][1]["content"]
            first, second = re.findall(r"Answer [AB]:\n<<<\n(.*?)\n>>>", text, re.S)
            answer = completion(
                self.judge(first, second), model=body["model"], prompt=500, completion_tokens=1
            )
        else:
            content = self.answers[body["model"]][body["messages"][-1]["content"]]
            answer = completion(content, model=body["model"], prompt=10_000, completion_tokens=10)
        return 200, {"content-type": "application/json"}, orjson.dumps(answer)

    def judge_calls(self) -> list[dict]:
        return [b for b in self.bodies if b["messages"][0]["content"] == JUDGE_SYSTEM]


@pytest.fixture
def storing_key(owner_key):
    key, raw = owner_key
    key.store_bodies = True
    key.save(update_fields=["store_bodies"])
    return key, raw


def _recommendation(
    owner, key, *, task_type: str, suggested: str, kind: str = "cheaper_model"
) -> Recommendation:
    return Recommendation.objects.create(
        user=owner,
        kind=kind,
        fingerprint=f"{kind}{task_type}".ljust(64, "0"),
        title="t",
        detail="d",
        scope={"model": "gpt-4o", "task_type": task_type, "api_key_ids": [str(key.id)]},
        suggested_model=suggested,
        estimated_monthly_savings_usd="10",
        savings_arithmetic="a",
        confidence=0.5,
    )


def _traffic(api, prompts, **headers) -> None:
    for prompt in prompts:
        response = api.post(
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]},
            **headers,
        )
        assert response.status_code == 200


def _evaluate(api, rec, capture, body=None) -> tuple[dict, ShadowEvaluation]:
    with capture(execute=True):
        response = api.post(f"/v1/recommendations/{rec.id}/evaluate", body if body is not None else {})
    assert response.status_code == 202, response.content
    return response.json(), ShadowEvaluation.objects.get(pk=response.json()["id"])


@responses.activate
def test_classification_is_compared_exactly_on_the_suggested_model(
    api, owner, storing_key, django_capture_on_commit_callbacks
):
    upstream = FakeUpstream(
        {
            "gpt-4o": {p: a[0] for p, a in REVIEWS.items()},
            "gpt-4o-mini": {p: a[1] for p, a in REVIEWS.items()},
        }
    )
    responses.add_callback(responses.POST, UPSTREAM, callback=upstream)
    _traffic(api, REVIEWS)
    rec = _recommendation(owner, storing_key[0], task_type="classification", suggested="gpt-4o-mini")

    queued, evaluation = _evaluate(api, rec, django_capture_on_commit_callbacks, {"sample_size": 10})

    assert queued["status"] == "queued" and queued["sample_size"] == 10 and queued["budget_usd"] == "1.0000"
    replays = [b for b in upstream.bodies if b["model"] == "gpt-4o-mini"]
    assert len(replays) == 6 and all("stream" not in b or b["stream"] is False for b in replays)
    assert evaluation.status == "done" and evaluation.method == "exact" and evaluation.judge_model == ""
    assert (evaluation.compared, evaluation.agreed) == (6, 5)  # "Meh, it works": neutral ≠ positive
    assert evaluation.agreement == 5 / 6
    assert (evaluation.ci_low, evaluation.ci_high) == (0.4365, 0.9699)
    assert evaluation.spent_usd == 6 * REPLAY_COST
    assert len(evaluation.examples) == 5
    example = evaluation.examples[0]
    assert set(example) >= {"request_id", "prompt", "original", "suggested", "agreed"}

    listed = api.get("/v1/recommendations").json()["data"][0]
    assert listed["evaluation"]["id"] == str(evaluation.id)
    assert listed["evaluation"]["status"] == "done" and listed["evaluation"]["agreed"] == 5
    assert listed["evaluation"]["stopped_by_budget"] is False


@responses.activate
def test_the_evaluation_stops_once_the_budget_is_spent(
    api, owner, storing_key, django_capture_on_commit_callbacks
):
    upstream = FakeUpstream(
        {
            "gpt-4o": {p: a[0] for p, a in REVIEWS.items()},
            "gpt-4o-mini": {p: a[0] for p, a in REVIEWS.items()},
        }
    )
    responses.add_callback(responses.POST, UPSTREAM, callback=upstream)
    _traffic(api, REVIEWS)
    rec = _recommendation(owner, storing_key[0], task_type="classification", suggested="gpt-4o-mini")

    body, evaluation = _evaluate(api, rec, django_capture_on_commit_callbacks, {"budget_usd": "0.003"})

    # a replay costs $0.001506: after two, $0.003012 ≥ $0.003, and the third is not sent
    assert len([b for b in upstream.bodies if b["model"] == "gpt-4o-mini"]) == 2
    assert evaluation.status == "done" and evaluation.compared == 2
    assert evaluation.spent_usd == 2 * REPLAY_COST
    detail = api.get("/v1/recommendations").json()["data"][0]["evaluation"]
    assert detail["stopped_by_budget"] is True and detail["spent_usd"] == "0.003012"


@responses.activate
def test_extraction_is_compared_field_by_field(api, owner, storing_key, django_capture_on_commit_callbacks):
    prompts = [
        f"Extract the name and city as JSON: {n}" for n in ("Ada, London", "Alan, Wilmslow", "Grace, NYC")
    ]
    originals = [
        '{"name": "Ada", "city": "London"}',
        '{"name": "Alan", "city": "Wilmslow"}',
        '{"name": "Grace", "city": "New York"}',
    ]
    replays = [
        '```json\n{"city": "london", "name": "Ada"}\n```',
        '{"name": "Alan", "city": "Wilmslow"}',
        '{"name": "Grace", "city": "NYC"}',
    ]
    upstream = FakeUpstream(
        {
            "gpt-4o": dict(zip(prompts, originals, strict=True)),
            "gpt-4o-mini": dict(zip(prompts, replays, strict=True)),
        }
    )
    responses.add_callback(responses.POST, UPSTREAM, callback=upstream)
    _traffic(api, prompts, HTTP_X_NEUROMETRIC_TASK="extraction")
    rec = _recommendation(owner, storing_key[0], task_type="extraction", suggested="gpt-4o-mini")

    _, evaluation = _evaluate(api, rec, django_capture_on_commit_callbacks)

    assert evaluation.method == "fieldwise"
    assert (evaluation.compared, evaluation.agreed) == (3, 2)
    assert evaluation.field_agreement == {"city": round(2 / 3, 4), "name": 1.0}


@responses.activate
def test_open_text_is_judged_twice_with_the_order_swapped(
    api, owner, storing_key, django_capture_on_commit_callbacks
):
    prompts = [
        "Tell me about the sea.",
        "Tell me about rivers.",
        "Tell me about lakes.",
        "Tell me about rain.",
    ]
    originals = ["Salty and vast.", "They flow.", "A detailed answer about lakes.", "Water falls."]
    replays = ["Salty and vast.", "A detailed answer about rivers.", "Lakes are wet.", "Drops from clouds."]

    def judge(first: str, second: str) -> str:
        if first == second:
            return "SAME"
        if "detailed" in first or "detailed" in second:
            return "A" if "detailed" in first else "B"
        return "A"  # no idea: this judge favours the first answer it sees

    upstream = FakeUpstream(
        {
            "gpt-4o": dict(zip(prompts, originals, strict=True)),
            "gpt-4.1": dict(zip(prompts, replays, strict=True)),
        },
        judge,
    )
    responses.add_callback(responses.POST, UPSTREAM, callback=upstream)
    _traffic(api, prompts, HTTP_X_NEUROMETRIC_TASK="question_answering")
    rec = _recommendation(owner, storing_key[0], task_type="", suggested="gpt-4.1")

    _, evaluation = _evaluate(api, rec, django_capture_on_commit_callbacks)

    assert evaluation.method == "judge" and evaluation.judge_model == "gpt-4o-mini"
    judged = upstream.judge_calls()
    assert len(judged) == 8 and {b["model"] for b in judged} == {"gpt-4o-mini"}
    # each pair: the original first, then the suggested model's answer first
    for original_first, suggested_first in zip(judged[::2], judged[1::2], strict=True):
        a1, b1 = re.findall(r"Answer [AB]:\n<<<\n(.*?)\n>>>", original_first["messages"][1]["content"], re.S)
        a2, b2 = re.findall(r"Answer [AB]:\n<<<\n(.*?)\n>>>", suggested_first["messages"][1]["content"], re.S)
        assert (a1, b1) == (b2, a2) and a1 in originals
    # sea: same; rivers: the replay is better both ways; lakes: worse; rain: only the position bias
    assert (evaluation.compared, evaluation.agreed) == (4, 2)
    verdicts = {e["prompt"]: e["verdicts"] for e in evaluation.examples}
    assert verdicts["Tell me about rain."] == {"original_first": "A", "suggested_first": "A"}
    replay_cost = 4 * (10_000 * Decimal(2) + 10 * Decimal(8)) / 1_000_000
    judge_cost = 8 * (500 * Decimal("0.15") + 1 * Decimal("0.6")) / 1_000_000
    assert evaluation.spent_usd == (replay_cost + judge_cost).quantize(Decimal("0.000001"))


@responses.activate
def test_without_stored_bodies_the_evaluation_fails_saying_so(
    api, owner, owner_key, django_capture_on_commit_callbacks
):
    upstream = FakeUpstream({"gpt-4o": {p: a[0] for p, a in REVIEWS.items()}})
    responses.add_callback(responses.POST, UPSTREAM, callback=upstream)
    _traffic(api, REVIEWS)  # the key does not store bodies
    rec = _recommendation(owner, owner_key[0], task_type="classification", suggested="gpt-4o-mini")

    _, evaluation = _evaluate(api, rec, django_capture_on_commit_callbacks)

    assert evaluation.status == "failed" and evaluation.compared == 0
    assert "Turn on body storage for the API key (`store_bodies`" in evaluation.error
    assert len(upstream.bodies) == len(REVIEWS)  # nothing replayed
    detail = api.get("/v1/recommendations").json()["data"][0]["evaluation"]
    assert detail["status"] == "failed" and "store_bodies" in detail["error"]


def test_only_model_recommendations_can_be_evaluated(api, owner, owner_key):
    rec = _recommendation(owner, owner_key[0], task_type="", suggested="", kind="response_cache")
    response = api.post(f"/v1/recommendations/{rec.id}/evaluate", {})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "recommendation_not_evaluable"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"sample_size": 0}, "sample_size"),
        ({"budget_usd": "-1"}, "budget_usd"),
        ({"budget_usd": "1000"}, "budget_usd"),
    ],
)
def test_invalid_evaluation_parameters_name_the_parameter(api, owner, owner_key, body, param):
    rec = _recommendation(owner, owner_key[0], task_type="classification", suggested="gpt-4o-mini")
    response = api.post(f"/v1/recommendations/{rec.id}/evaluate", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert not ShadowEvaluation.objects.exists()


def test_a_claimed_evaluation_is_not_run_twice(owner, owner_key):
    from analytics.shadow import shadow_evaluation_run

    rec = _recommendation(owner, owner_key[0], task_type="classification", suggested="gpt-4o-mini")
    evaluation = ShadowEvaluation.objects.create(recommendation=rec, budget_usd=1, status="running")
    assert shadow_evaluation_run(evaluation_id=str(evaluation.id)) is None


def test_wilson_interval_and_helpers():
    assert wilson(0, 0) == (None, None)
    assert wilson(10, 10) == (0.7225, 1.0)
    assert wilson(0, 10) == (0.0, 0.2775)
    assert (
        parse_verdict(" Same.") == "SAME"
        and parse_verdict("B") == "B"
        and parse_verdict("maybe") == "UNCLEAR"
    )
    assert compare_fields({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}}) == {"a.b[0]": True, "a.b[1]": False}
    assert compare_fields({"n": 1}, "not json") == {"n": False}


@responses.activate
def test_a_failed_replay_is_skipped_and_reported(api, owner, storing_key, django_capture_on_commit_callbacks):
    answers = {p: a[0] for p, a in REVIEWS.items()}
    upstream = FakeUpstream({"gpt-4o": answers, "gpt-4o-mini": answers})
    broken = next(iter(REVIEWS))

    def callback(request):
        body = orjson.loads(request.body)
        if body["model"] == "gpt-4o-mini" and body["messages"][-1]["content"] == broken:
            error = {"error": {"message": "Bad request", "type": "invalid_request_error"}}
            return 400, {"content-type": "application/json"}, orjson.dumps(error)
        return upstream(request)

    responses.add_callback(responses.POST, UPSTREAM, callback=callback)
    _traffic(api, REVIEWS)
    rec = _recommendation(owner, storing_key[0], task_type="classification", suggested="gpt-4o-mini")

    _, evaluation = _evaluate(api, rec, django_capture_on_commit_callbacks)

    assert evaluation.status == "done" and (evaluation.compared, evaluation.agreed) == (5, 5)
    assert evaluation.error.startswith("1 of the replays failed and were skipped")


@responses.activate
def test_the_defaults_are_a_sample_of_50_a_dollar_and_the_configured_judge(
    api, owner, storing_key, django_capture_on_commit_callbacks, settings
):
    settings.SHADOW_JUDGE_MODEL = "gpt-4.1-mini"
    prompts = [f"Tell me about planet {n}." for n in range(60)]
    answers = {p: f"Planet {n} is far." for n, p in enumerate(prompts)}
    upstream = FakeUpstream({"gpt-4o": answers, "gpt-4o-mini": answers}, lambda first, second: "SAME")
    responses.add_callback(responses.POST, UPSTREAM, callback=upstream)
    _traffic(api, prompts, HTTP_X_NEUROMETRIC_TASK="question_answering")
    rec = _recommendation(owner, storing_key[0], task_type="", suggested="gpt-4o-mini")

    queued, evaluation = _evaluate(api, rec, django_capture_on_commit_callbacks)

    assert (queued["sample_size"], queued["budget_usd"]) == (50, "1.0000")
    assert evaluation.judge_model == "gpt-4.1-mini"
    assert {b["model"] for b in upstream.judge_calls()} == {"gpt-4.1-mini"}
    # 50 of the 60 stored requests, each judged twice, well within the budget
    assert (evaluation.compared, evaluation.agreed, len(upstream.judge_calls())) == (50, 50, 100)
    assert (evaluation.ci_low, evaluation.ci_high) == wilson(50, 50)
