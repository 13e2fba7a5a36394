"""Shadow evaluation: replay a sample of a recommendation's real traffic on the suggested model and measure
how often its answers agree with the ones the user got — the quality check behind a model switch.

The replay goes through the gateway's own providers (`gateway.routing.resolve`, then the adapter's
`build_request` / `send` / `parse_response`), not over HTTP to ourselves, and leaves no request-log row: its
spend is recorded on the evaluation and capped by the evaluation's budget. The prompts are the stored
request bodies (redacted): they exist only for keys with `store_bodies` (or with STORE_REQUEST_BODIES on);
without them the evaluation fails saying so.

Comparison, by the scope's task type:
- **exact** (classification): the two answers are equal once trimmed, lower-cased and stripped of quotes and
  a final full stop;
- **fieldwise** (extraction, and requests that asked for JSON): both answers parsed as JSON and flattened
  to fields (`a.b`, `items[0]`); an answer agrees when every field agrees, and the agreement of each field
  is reported (`field_agreement`); an original that is not JSON is compared exactly;
- **judge** (open text): SHADOW_JUDGE_MODEL is asked which answer is better, twice, with the order swapped
  (original first, then the suggested model's first); an answer agrees only when both verdicts say it is
  equivalent or better, which cancels the judge's bias for the first (or second) position.

The agreement rate comes with its 95 % Wilson score interval (`wilson`), honest at small samples.
Sampling is random but reproducible (seeded with the evaluation id), from the scope's newest SAMPLE_POOL
successful requests with stored bodies. Before each replay the spend is checked, and the evaluation stops
once it has spent its budget: it can go past it by one replay (and its two judge calls) at most.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.models import Recommendation, RequestLog, ShadowEvaluation
from analytics.pricing import cost_usd, prices_of
from analytics.recommendations.services import APPLICABLE, RecommendationStateError
from gateway.errors import GatewayError
from gateway.routing import Route, resolve
from gateway.tokens import estimate_usage
from gateway.validation import ChatRequest, validate_chat_request

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_SIZE = 50
MAX_SAMPLE_SIZE = 500
DEFAULT_BUDGET_USD = Decimal("1.00")
MAX_BUDGET_USD = Decimal("100")
SAMPLE_POOL = 5000  # sample from the scope's newest requests with bodies
EXAMPLES = 5
WINDOW_DAYS = 30
Z95 = 1.959963984540054

NO_BODIES = (
    "There are no stored request bodies for this recommendation's traffic, so there is nothing to replay. "
    "Turn on body storage for the API key (`store_bodies`, or STORE_REQUEST_BODIES for every key), wait for "
    "new requests to be logged, then evaluate again."
)

JUDGE_SYSTEM = (
    "You compare two answers to the same request. Judge correctness, completeness and how well each follows "
    "the request's instructions; ignore differences of wording, style or length that do not matter. Reply "
    "with one word: A if answer A is better, B if answer B is better, SAME if they are equally good."
)


class ShadowError(Exception):
    """The evaluation cannot run; its message says why, for the user."""


# --- create and run -------------------------------------------------------------------------------------


def shadow_evaluation_create(
    *,
    recommendation: Recommendation,
    sample_size: int | None = None,
    budget_usd: Decimal | None = None,
) -> ShadowEvaluation:
    """A queued evaluation; the task that runs it is enqueued once the transaction commits."""
    if recommendation.kind not in APPLICABLE or not recommendation.suggested_model:
        raise RecommendationStateError(
            "Only cheaper_model and newer_snapshot recommendations suggest a model to evaluate.",
            "recommendation_not_evaluable",
        )
    evaluation = ShadowEvaluation.objects.create(
        recommendation=recommendation,
        sample_size=sample_size or DEFAULT_SAMPLE_SIZE,
        budget_usd=DEFAULT_BUDGET_USD if budget_usd is None else budget_usd,
    )
    from analytics.tasks import run_shadow_evaluation

    evaluation_id = str(evaluation.id)
    transaction.on_commit(lambda: run_shadow_evaluation.delay(evaluation_id))
    return evaluation


def shadow_evaluation_run(*, evaluation_id: str) -> ShadowEvaluation | None:
    """Run a queued evaluation; None if another worker claimed it (or it is not queued)."""
    if (
        ShadowEvaluation.objects.filter(pk=evaluation_id, status=ShadowEvaluation.Status.QUEUED).update(
            status=ShadowEvaluation.Status.RUNNING
        )
        != 1
    ):
        return None
    evaluation = ShadowEvaluation.objects.select_related("recommendation").get(pk=evaluation_id)
    try:
        _evaluate(evaluation)
        evaluation.status = ShadowEvaluation.Status.DONE
    except ShadowError as exc:
        evaluation.status, evaluation.error = ShadowEvaluation.Status.FAILED, str(exc)
    except Exception:
        log.exception("Shadow evaluation %s failed", evaluation_id)
        evaluation.status = ShadowEvaluation.Status.FAILED
        evaluation.error = "The evaluation failed unexpectedly; it has been logged. Try again later."
    evaluation.finished_at = timezone.now()
    evaluation.save()
    return evaluation


# --- the replay -----------------------------------------------------------------------------------------


def _scope_rows(rec: Recommendation):
    rows = RequestLog.objects.filter(
        user_id=rec.user_id,
        endpoint="chat.completions",
        model=rec.scope.get("model", ""),
        status_code=200,
        routing_rule_id=None,
        created_at__gte=timezone.now() - timedelta(days=WINDOW_DAYS),
    )
    if rec.scope.get("task_type"):
        rows = rows.filter(task_type=rec.scope["task_type"])
    return rows


def _route(model_id: str, what: str) -> tuple[Route, dict]:
    try:
        route = resolve(model_id)
    except GatewayError as exc:
        raise ShadowError(f"The {what} {model_id} cannot be used: {exc.message}") from None
    prices = prices_of(route.model)
    if prices is None:
        raise ShadowError(
            f"The {what} {model_id} has no price in the catalogue, so its spend cannot be capped."
        )
    return route, prices


def _sample(evaluation: ShadowEvaluation) -> list[RequestLog]:
    rows = _scope_rows(evaluation.recommendation).filter(
        request_body__isnull=False, response_body__isnull=False
    )
    pool = list(rows.order_by("-created_at").values_list("id", flat=True)[:SAMPLE_POOL])
    if not pool:
        raise ShadowError(NO_BODIES)
    chosen = random.Random(str(evaluation.id)).sample(pool, min(evaluation.sample_size, len(pool)))
    by_id = RequestLog.objects.in_bulk(chosen)
    return [by_id[pk] for pk in chosen]


def _method(task_type: str, sample: list[RequestLog]) -> str:
    if task_type == "classification":
        return "exact"
    if task_type == "extraction":
        return "fieldwise"
    wants_json = sum(_asks_for_json(row.request_body) for row in sample)
    return "fieldwise" if wants_json * 2 > len(sample) else "judge"


def _asks_for_json(body: Any) -> bool:
    fmt = body.get("response_format") if isinstance(body, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def _evaluate(evaluation: ShadowEvaluation) -> None:
    rec = evaluation.recommendation
    sample = _sample(evaluation)
    route, prices = _route(rec.suggested_model, "suggested model")
    method = _method(rec.scope.get("task_type") or "", sample)
    judge = _route(settings.SHADOW_JUDGE_MODEL, "judge model") if method == "judge" else None
    evaluation.method = method
    evaluation.judge_model = settings.SHADOW_JUDGE_MODEL if judge else ""
    budget, spent = evaluation.budget_usd, Decimal(0)
    compared = agreed = failures = 0
    fields: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    examples: list[dict] = []
    last_error = ""
    for row in sample:
        if spent >= budget:
            break
        try:
            chat = _chat(row.request_body, route.requested_model)
            body, usage_cost = _complete(route, prices, chat)
        except GatewayError as exc:
            failures, last_error = failures + 1, exc.message
            continue
        spent += usage_cost
        original, candidate = answer_text(row.response_body), answer_text(body)
        example = {"request_id": row.request_id, "prompt": _last_user_text(chat.body)[:500]}
        if method == "judge":
            verdicts = []
            try:  # original first, then the suggested model's answer first
                for first, second in ((original, candidate), (candidate, original)):
                    verdict, judge_cost = _judge(judge, chat.body, first, second)
                    spent += judge_cost
                    verdicts.append(verdict)
            except GatewayError as exc:  # the judge failed: this answer is not compared
                failures, last_error = failures + 1, f"the judge: {exc.message}"
                continue
            ok = verdicts[0] in ("B", "SAME") and verdicts[1] in ("A", "SAME")
            example["verdicts"] = {"original_first": verdicts[0], "suggested_first": verdicts[1]}
        elif method == "fieldwise" and (pair := _json_pair(original, candidate)) is not None:
            per_field = compare_fields(*pair)
            for name, same in per_field.items():
                fields[name][0] += same
                fields[name][1] += 1
            ok = bool(per_field) and all(per_field.values())
            example["fields"] = per_field
        else:
            ok = normalise(original) == normalise(candidate)
        compared += 1
        agreed += ok
        if len(examples) < EXAMPLES:
            examples.append(
                {**example, "original": original[:1000], "suggested": candidate[:1000], "agreed": ok}
            )
    if not compared:
        if failures:
            raise ShadowError(f"No answer could be compared ({failures} failed): {last_error}")
        raise ShadowError(f"The budget of ${budget} allowed no replay on {rec.suggested_model}.")
    evaluation.compared, evaluation.agreed, evaluation.spent_usd = compared, agreed, spent
    evaluation.agreement = agreed / compared
    evaluation.ci_low, evaluation.ci_high = wilson(agreed, compared)
    evaluation.examples = examples
    evaluation.field_agreement = {
        name: round(same / seen, 4) for name, (same, seen) in sorted(fields.items())
    }
    if failures:
        evaluation.error = f"{failures} of the replays failed and were skipped: {last_error}"


def _chat(stored: dict, model: str) -> ChatRequest:
    body = {key: value for key, value in stored.items() if key not in ("stream", "stream_options")}
    body["model"] = model
    return validate_chat_request(body)


def _cost(prices: dict, prompt: int, cached: int, write: int, completion: int) -> Decimal:
    return cost_usd(
        prices,
        prompt_tokens=prompt,
        cached_tokens=cached,
        cache_write_tokens=write,
        completion_tokens=completion,
    ) or Decimal(0)


def _complete(route: Route, prices: dict, chat: ChatRequest) -> tuple[dict, Decimal]:
    provider = route.provider
    response = provider.send(provider.build_request(chat, route.target), stream=False)
    completion = provider.parse_response(provider.read_json(response), chat)
    usage = completion.usage or estimate_usage(
        chat.body["messages"], answer_text(completion.body), route.upstream_model
    )
    cost = _cost(
        prices, usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens, usage.completion_tokens
    )
    return completion.body, cost


# --- comparisons ----------------------------------------------------------------------------------------


def answer_text(body: Any) -> str:
    """The first choice's text (and tool calls, as name + arguments) of an OpenAI completion body."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message") or {}
    pieces = [message["content"]] if isinstance(message.get("content"), str) else []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        pieces.append(f"{function.get('name', '')}{function.get('arguments', '')}")
    return "".join(pieces)


def normalise(text: str) -> str:
    return text.strip().strip("\"'`").rstrip(".").strip().casefold()


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_json(text: str) -> Any:
    match = _FENCE.match(text.strip())
    try:
        return orjson.loads(match.group(1) if match else text)
    except orjson.JSONDecodeError:
        return None


def _json_pair(original: str, candidate: str) -> tuple[Any, Any] | None:
    parsed = parse_json(original)
    if not isinstance(parsed, dict | list):
        return None
    return parsed, parse_json(candidate)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list):
        flat = {}
        for i, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}[{i}]"))
        return flat or {prefix: []}
    return {prefix: value}


def compare_fields(original: Any, candidate: Any) -> dict[str, bool]:
    """Field → do the two answers agree on it (every field of either; strings compared normalised)."""
    a, b = flatten(original), flatten(candidate) if isinstance(candidate, dict | list) else {}
    missing = object()
    return {name: _same(a.get(name, missing), b.get(name, missing)) for name in sorted(a.keys() | b.keys())}


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, str) and isinstance(y, str):
        return normalise(x) == normalise(y)
    return x == y and type(x) is type(y) or (_number(x) and _number(y) and float(x) == float(y))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _render(messages: list[dict]) -> str:
    lines = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        lines.append(f"{message.get('role', 'user')}: {content or ''}")
    return "\n".join(lines)[-8000:]


def _last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or ()):
        if message.get("role") == "user":
            return _render([message]).removeprefix("user: ")
    return ""


def _judge(judge: tuple[Route, dict], request: dict, first: str, second: str) -> tuple[str, Decimal]:
    """The judge's verdict on answers A (`first`) and B (`second`) to the request, and what it cost."""
    route, prices = judge
    prompt = (
        f"Request:\n<<<\n{_render(request.get('messages') or [])}\n>>>\n\n"
        f"Answer A:\n<<<\n{first}\n>>>\n\nAnswer B:\n<<<\n{second}\n>>>"
    )
    chat = validate_chat_request(
        {
            "model": route.requested_model,
            "messages": [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": 5,
        }
    )
    body, cost = _complete(route, prices, chat)
    return parse_verdict(answer_text(body)), cost


def parse_verdict(text: str) -> str:
    word = re.sub(r"[^A-Za-z]", "", (text.strip().split() or [""])[0]).upper()
    if word in ("SAME", "EQUAL", "EQUIVALENT", "TIE"):
        return "SAME"
    return word if word in ("A", "B") else "UNCLEAR"


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (95 % by default)."""
    if n == 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return round(max(0.0, centre - margin), 4), round(min(1.0, centre + margin), 4)
