"""`manage.py seed_demo --days 30 --seed 1`: a demo account with realistic traffic, rolled up, ready to view.

The traffic is a set of workloads (a product's support bot, ticket triage, a docs FAQ, nightly summaries
...) across OpenAI, Anthropic, Gemini, Mistral and Groq, with the patterns the recommendation rules look
for: an expensive model answering one-word classifications, identical requests repeated, a long system
prompt shared by every request and never cached, answers cut off by max_tokens, an old and pricier model
snapshot, rate limits, server errors with fallbacks, cancelled streams.

Rows go through the log writer's own batch insert (`analytics.services.request_log_write_batch`), so they
are priced, fingerprinted and stored exactly as the gateway's rows are; then the rollups run
(`analytics.rollups.rollup_pending`). The same seed gives the same rows (ids, sizes, timings, relative
times); times are laid out back from the current minute.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from analytics import rollups
from analytics.models import Recommendation, RequestLog, Rollup
from analytics.pricing import prices_of
from analytics.services import request_log_write_batch
from gateway.catalog import get_catalog

DEMO_EMAIL = "demo@example.com"
BATCH = 2000

SUPPORT_PROMPT = (
    "You are Aria, the customer support assistant of Lumen, a project-management SaaS. "
    "Answer in a friendly, concise tone. Follow the policies below exactly.\n\n"
    + "\n".join(
        f"Policy {n}: "
        + " ".join(
            [
                "When a customer asks about billing, plans, refunds, seats, invoices or taxes, explain the",
                "relevant rule, link the help-centre article, and never promise a refund yourself; offer to",
                "open a ticket for the billing team instead. Keep personal data out of the answer, confirm",
                "the workspace name before discussing an account, and escalate security reports at once.",
            ]
        )
        for n in range(1, 19)
    )
)
TRIAGE_PROMPT = (
    "Classify the support ticket into exactly one label: billing, bug, feature_request, account, "
    "security, other. Answer with the label only."
)
TICKETS = [
    "I was charged twice for March, can you check?",
    "The Gantt view crashes when I drag a task across months.",
    "Please add dark mode to the mobile app!",
    "I can't log in since I changed my email address.",
    "Someone from an unknown IP accessed our workspace.",
    "How do I export all my boards to CSV?",
    "Our invoice shows the wrong VAT number.",
    "Notifications arrive two hours late on Android.",
    "Could you support SSO with Okta?",
    "The API returns 500 when I create a task with a due date.",
    "I want to downgrade to the Starter plan next month.",
    "Two-factor codes are not accepted.",
]
FAQ = [
    "How do I reset my password?",
    "What is the difference between the Team and Business plans?",
    "How do I invite a guest to a board?",
    "Can I use Lumen offline?",
    "How do I connect Lumen to Slack?",
    "Where can I download my invoices?",
    "How do I change the owner of a workspace?",
    "Does Lumen support recurring tasks?",
    "How do I delete my account?",
    "What are the API rate limits?",
    "How do I import from Trello?",
    "Is my data encrypted at rest?",
    "How do I add a custom field?",
    "Can I restore a deleted board?",
    "How many seats does the Team plan include?",
    "How do I set up two-factor authentication?",
    "What time zone are due dates in?",
    "How do I archive a project?",
    "Can I change my billing currency?",
    "How do I contact support by phone?",
]
QUESTIONS = [
    "How do the webhooks retry when my endpoint is down?",
    "Which fields does the task object return in the v2 API?",
    "What happens to automations when a board is archived?",
    "How are permissions inherited from a workspace to its projects?",
    "Can a guest see the activity log of a board?",
]
PHRASES = [
    "Thanks for the quick reply!",
    "Our launch is scheduled for next Tuesday.",
    "Please translate the release notes for the German team.",
    "The quarterly report is attached below.",
    "Meeting moved to 3 pm, same room.",
]


@dataclass
class Workload:
    name: str
    key: str
    model: str
    task_type: str
    per_day: float
    prompt: tuple[int, int]
    completion: tuple[int, int]
    stream: float = 0.0
    ttft_ms: float = 400.0
    tokens_per_s: float = 80.0
    rate_limited: float = 0.002
    server_errors: float = 0.002
    client_errors: float = 0.002
    cancelled: float = 0.0
    truncated: float = 0.0
    max_tokens: int | None = None
    hours: tuple[int, int] | None = None  # UTC hours of the day it runs in (a nightly batch)
    weekend: float = 0.45  # weekend volume relative to weekdays
    provider: str | None = None
    fallback: str | None = None  # model a server error falls back to
    cache_hits: float = 0.0  # share answered by the response cache in the last days
    bodies: float = 1.0  # share of rows that keep their bodies
    burst: float = 4.0  # requests arrive in bursts (a conversation, a queue worker's batch) of this mean size
    body: str = "plain"
    tags: list[str] = field(default_factory=list)


WORKLOADS = [
    Workload(
        "support chat",
        "support",
        "gpt-4o",
        "chat",
        820,
        (1750, 2900),
        (90, 420),
        stream=0.9,
        ttft_ms=520,
        tokens_per_s=70,
        cancelled=0.015,
        rate_limited=0.004,
        server_errors=0.003,
        body="support",
        bodies=0.05,
        tags=["support", "prod"],
        burst=10,
    ),
    Workload(
        "ticket triage",
        "triage",
        "gpt-4o",
        "classification",
        760,
        (180, 420),
        (1, 4),
        max_tokens=5,
        ttft_ms=380,
        tokens_per_s=60,
        body="triage",
        tags=["triage"],
        burst=25,
    ),
    Workload(
        "docs FAQ",
        "docs",
        "gpt-4o-mini",
        "question_answering",
        520,
        (40, 70),
        (90, 220),
        ttft_ms=300,
        tokens_per_s=110,
        body="faq",
        cache_hits=0.25,
        tags=["docs"],
        burst=8,
    ),
    Workload(
        "docs RAG",
        "docs",
        "claude-3-5-sonnet-20241022",
        "question_answering",
        300,
        (3000, 6200),
        (180, 520),
        stream=0.5,
        ttft_ms=900,
        tokens_per_s=55,
        server_errors=0.006,
        body="rag",
        bodies=0.1,
        tags=["docs", "rag"],
        burst=6,
    ),
    Workload(
        "nightly summaries",
        "batch",
        "claude-3-5-sonnet-20241022",
        "summarization",
        340,
        (3800, 9000),
        (220, 300),
        max_tokens=300,
        truncated=0.14,
        hours=(1, 5),
        weekend=1.0,
        ttft_ms=1100,
        tokens_per_s=50,
        body="summary",
        bodies=0.1,
        tags=["batch"],
        burst=40,
    ),
    Workload(
        "invoice extraction",
        "triage",
        "gpt-4o-2024-05-13",
        "extraction",
        170,
        (600, 1300),
        (80, 220),
        ttft_ms=480,
        tokens_per_s=65,
        body="extract",
        burst=12,
    ),
    Workload(
        "release notes",
        "support",
        "gemini-2.5-flash",
        "translation",
        190,
        (300, 900),
        (300, 900),
        ttft_ms=350,
        tokens_per_s=160,
        body="translate",
        burst=15,
    ),
    Workload(
        "community bot",
        "support",
        "llama-3-70b",
        "chat",
        160,
        (200, 900),
        (60, 300),
        stream=0.7,
        provider="groq",
        ttft_ms=180,
        tokens_per_s=300,
        rate_limited=0.05,
        body="plain",
        burst=6,
    ),
    Workload(
        "copy rewriting",
        "support",
        "mistral-large-latest",
        "rewriting",
        110,
        (150, 600),
        (100, 400),
        ttft_ms=450,
        tokens_per_s=90,
        server_errors=0.03,
        fallback="gpt-4o-mini",
        body="plain",
        burst=5,
    ),
    Workload(
        "code review",
        "staging",
        "claude-sonnet-4-5-20250929",
        "code_generation",
        90,
        (900, 4000),
        (200, 1200),
        stream=0.8,
        ttft_ms=800,
        tokens_per_s=65,
        weekend=0.1,
        client_errors=0.02,
        body="code",
        burst=4,
    ),
]
KEYS = {
    "support": {"name": "Support assistant (prod)", "monthly_budget_usd": Decimal("900.00"), "rpm": 1200},
    "triage": {"name": "Ticket triage", "monthly_budget_usd": Decimal("250.00"), "rpm": 600},
    "docs": {"name": "Docs search", "fallbacks": ["gpt-4o-mini"]},
    "batch": {"name": "Nightly summaries", "max_parallel": 8},
    "staging": {"name": "Staging", "rpm": 60, "allowed_models": ["claude-*", "gpt-4o-mini*"]},
}


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _diurnal(hour: int) -> float:
    """Traffic by UTC hour: Europe's and America's working days, quiet at night."""
    return 0.25 + math.exp(-((hour - 10) ** 2) / 18) + 1.1 * math.exp(-((hour - 16) ** 2) / 14)


_DIURNAL_MEAN = sum(_diurnal(h) for h in range(24)) / 24


class Generator:
    def __init__(self, *, seed: int, days: int, user: User, keys: dict[str, ApiKey], now: datetime):
        self.rng = random.Random(seed)
        self.days = days
        self.user = user
        self.keys = keys
        self.now = now.replace(second=0, microsecond=0)
        catalog = get_catalog()
        self.prices = {w.model: prices_of(catalog.get(w.model)) for w in WORKLOADS}
        for w in WORKLOADS:
            if w.fallback:
                self.prices[w.fallback] = prices_of(catalog.get(w.fallback))
        self.providers = {w.model: w.provider or catalog.get(w.model).provider for w in WORKLOADS}
        self.upstream = {w.model: catalog.get(w.model).upstream for w in WORKLOADS}

    def rows(self):
        start = self.now - timedelta(days=self.days) + timedelta(minutes=15)  # inside the raw-log retention
        hours = int((self.now - start).total_seconds() // 3600)
        for hour_index in range(hours + 1):
            slot = start + timedelta(hours=hour_index)
            day_index = (slot - start).days
            growth = 0.8 + 0.4 * day_index / max(self.days, 1)  # traffic grows over the month
            weekend = slot.weekday() >= 5
            for workload in WORKLOADS:
                if workload.hours and not workload.hours[0] <= slot.hour < workload.hours[1]:
                    continue
                per_hour = workload.per_day / (
                    (workload.hours[1] - workload.hours[0]) if workload.hours else 24 * _DIURNAL_MEAN
                )
                shape = 1.0 if workload.hours else _diurnal(slot.hour)
                lam = per_hour * shape * growth * (workload.weekend if weekend else 1.0)
                for _ in range(_poisson(self.rng, lam / workload.burst)):
                    minute = slot + timedelta(minutes=self.rng.randrange(60))
                    for _ in range(1 + _poisson(self.rng, workload.burst - 1)):
                        created = minute + timedelta(seconds=self.rng.uniform(0, 60))
                        if created < self.now:
                            yield self.row(workload, created)

    def row(self, w: Workload, created: datetime) -> dict:
        rng = self.rng
        prompt = rng.randint(*w.prompt)
        completion = rng.randint(*w.completion)
        stream = rng.random() < w.stream
        model, provider = w.model, self.providers[w.model]
        status, error_type, error_code, message, finish = 200, "", "", "", "stop"
        attempts, fallback_used = None, False
        roll = rng.random()
        ttft = rng.lognormvariate(math.log(w.ttft_ms), 0.35)
        generation_ms = completion / (w.tokens_per_s * rng.uniform(0.75, 1.25)) * 1000
        latency = ttft + generation_ms
        if roll < w.rate_limited:
            status, error_type, error_code = 429, "rate_limit_error", "rate_limit_exceeded"
            message, completion, latency, ttft = (
                f"Rate limit reached for {model}.",
                0,
                rng.uniform(80, 300),
                None,
            )
        elif roll < w.rate_limited + w.server_errors:
            if w.fallback:
                fallback_used = True
                first_ms = rng.uniform(400, 2500)
                attempts = [
                    {
                        "model": model,
                        "provider": provider,
                        "status": 503,
                        "error_code": "overloaded",
                        "ms": round(first_ms, 3),
                    },
                    {
                        "model": w.fallback,
                        "provider": self.providers.get(w.fallback, "openai"),
                        "status": 200,
                        "error_code": None,
                        "ms": round(latency, 3),
                    },
                ]
                model, provider = w.fallback, "openai"
                latency += first_ms
            else:
                status, error_type, error_code = 502, "api_error", "upstream_error"
                message, completion, ttft = "The provider returned an error.", 0, None
                latency = rng.uniform(300, 4000)
        elif roll < w.rate_limited + w.server_errors + w.client_errors:
            status, error_type, error_code = 400, "invalid_request_error", "context_length_exceeded"
            message, completion, ttft = "This model's maximum context length was exceeded.", 0, None
            prompt, latency = 0, rng.uniform(20, 90)
        elif stream and roll < w.rate_limited + w.server_errors + w.client_errors + w.cancelled:
            status, error_type, error_code = 499, "client_disconnected", "client_closed_request"
            completion = rng.randint(0, completion // 2)
            latency = ttft + completion / w.tokens_per_s * 1000
            finish = ""
        elif w.truncated and rng.random() < w.truncated:
            completion, finish = w.max_tokens or completion, "length"
            latency = ttft + completion / w.tokens_per_s * 1000
        if status != 200:
            finish = "" if status != 499 else finish
        overhead = rng.uniform(1.5, 6.0)
        body = self.body(w, stream)
        recent = created >= self.now - timedelta(days=3)
        cache_hit = status == 200 and recent and w.cache_hits and rng.random() < w.cache_hits
        if cache_hit:
            latency, ttft, provider = rng.uniform(3, 12), None, "cache"
        keep_body = rng.random() < w.bodies
        row = {
            "request_id": f"req_{rng.getrandbits(96):024x}",
            "user_id": self.user.id,
            "api_key_id": str(self.keys[w.key].id),
            "created_ts": created.timestamp(),
            "endpoint": "chat.completions",
            "requested_model": w.model,
            "model": model,
            "served_model": self.upstream.get(model, model),
            "provider": provider,
            "stream": stream,
            "status_code": status,
            "error_type": error_type,
            "error_code": error_code,
            "error_message": message,
            "finish_reason": finish if status == 200 else "",
            "prompt_tokens": prompt if status in (200, 499) else 0,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "completion_tokens": completion if status in (200, 499) else 0,
            "reasoning_tokens": 0,
            "usage_estimated": status == 499,
            "pricing": self.prices.get(model),
            "latency_ms": round(latency + overhead, 3),
            "ttft_ms": round(ttft, 3) if stream and ttft is not None and status in (200, 499) else None,
            "upstream_ms": round(latency, 3),
            "overhead_ms": round(overhead, 3),
            "max_tokens": w.max_tokens,
            "end_user": f"user-{rng.randint(1, 400)}" if w.key == "support" else "",
            "tags": w.tags or None,
            "task_type": w.task_type,
            "attempts": attempts,
            "fallback_used": fallback_used,
            "_classify": body,
        }
        if cache_hit:
            row["cache_hit"] = True
        if keep_body:
            row["request_body"] = body
            if status == 200:
                row["response_body"] = {
                    "object": "chat.completion",
                    "model": row["served_model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": self.answer(w)},
                            "finish_reason": row["finish_reason"],
                        }
                    ],
                    "usage": {
                        "prompt_tokens": row["prompt_tokens"],
                        "completion_tokens": row["completion_tokens"],
                        "total_tokens": row["prompt_tokens"] + row["completion_tokens"],
                    },
                }
        return row

    def body(self, w: Workload, stream: bool) -> dict:
        rng = self.rng
        if w.body == "support":
            messages = [
                {"role": "system", "content": SUPPORT_PROMPT},
                {"role": "user", "content": rng.choice(TICKETS)},
            ]
        elif w.body == "triage":
            messages = [
                {"role": "system", "content": TRIAGE_PROMPT},
                {"role": "user", "content": f"Ticket #{rng.randint(10000, 99999)}: {rng.choice(TICKETS)}"},
            ]
        elif w.body == "faq":
            # a few questions make most of the traffic: identical requests a response cache would answer
            index = min(int(rng.paretovariate(1.3)) - 1, len(FAQ) - 1)
            messages = [
                {"role": "system", "content": "Answer questions about Lumen from the help centre."},
                {"role": "user", "content": FAQ[index]},
            ]
        elif w.body == "rag":
            messages = [
                {"role": "system", "content": "Answer from the documentation excerpts only; cite them."},
                {
                    "role": "user",
                    "content": f"Excerpts: [{rng.randint(1, 9999)}] ...\n\n{rng.choice(QUESTIONS)}",
                },
            ]
        elif w.body == "summary":
            messages = [
                {
                    "role": "user",
                    "content": f"Summarise the customer call transcript #{rng.randint(1, 10**6)}.",
                }
            ]
        elif w.body == "extract":
            messages = [
                {"role": "system", "content": "Extract vendor, date, total and VAT number as JSON."},
                {"role": "user", "content": f"Invoice INV-{rng.randint(1000, 9999)} ..."},
            ]
        elif w.body == "translate":
            messages = [{"role": "user", "content": f"Translate into German: {rng.choice(PHRASES)}"}]
        elif w.body == "code":
            messages = [
                {"role": "user", "content": "Review this diff and point out bugs:\n```diff\n...\n```"}
            ]
        else:
            messages = [{"role": "user", "content": rng.choice(PHRASES + TICKETS)}]
        body = {"model": w.model, "messages": messages}
        if w.max_tokens:
            body["max_tokens"] = w.max_tokens
        if stream:
            body["stream"] = True
        return body

    def answer(self, w: Workload) -> str:
        if w.task_type == "classification":
            return self.rng.choice(["billing", "bug", "feature_request", "account", "security", "other"])
        return "Sure — here is what you need to know. " + self.rng.choice(PHRASES)


class Command(BaseCommand):
    help = (
        "Fill a demo account (demo@example.com) with realistic request-log rows over the last N days, then "
        "run the rollups so the dashboard shows them at once. Replaces the demo account's earlier data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=30, help="days of traffic (at most the retention)")
        parser.add_argument("--seed", type=int, default=1, help="the same seed gives the same traffic")
        parser.add_argument("--email", default=DEMO_EMAIL)
        parser.add_argument("--password", help="the demo account's password (default: a new random one)")
        parser.add_argument("--no-rollup", action="store_true", help="leave the rollups to the beat task")

    def handle(self, *args, days: int, seed: int, email: str, password: str | None, no_rollup: bool, **_):
        if not 1 <= days <= settings.REQUEST_LOG_RETENTION_DAYS:
            raise CommandError(
                f"--days must be between 1 and the raw-log retention ({settings.REQUEST_LOG_RETENTION_DAYS})."
            )
        started = time.monotonic()
        password = password or secrets.token_urlsafe(12)
        user, keys = self.reset_account(email=email, password=password)
        generator = Generator(seed=seed, days=days, user=user, keys=keys, now=datetime.now(UTC))
        written, batch = 0, []
        for row in generator.rows():
            batch.append(row)
            if len(batch) >= BATCH:
                request_log_write_batch(batch)
                written += len(batch)
                batch = []
        if batch:
            request_log_write_batch(batch)
            written += len(batch)
        self.stdout.write(f"Wrote {written:,} request-log rows over {days} days for {user.email}.")
        if not no_rollup:
            with transaction.atomic():  # one commit for the thousands of buckets: many times faster
                summary = rollups.rollup_pending()
            buckets = summary["buckets"]
            self.stdout.write(
                f"Rolled up: {buckets['minute']:,} minute, {buckets['hour']:,} hour and "
                f"{buckets['day']:,} day buckets in {summary['seconds']:.1f} s."
            )
            self.recommend(user)
        self.stdout.write(f"Done in {time.monotonic() - started:.1f} s. Log in at /login/ as:")
        self.stdout.write(f"  email:    {user.email}")
        self.stdout.write(f"  password: {password}")

    def recommend(self, user: User) -> None:
        """The recommendation rules (analytics.recommendations), when this build has them."""
        try:
            from analytics.recommendations import generate_for_user
        except ImportError:
            return
        found = generate_for_user(user_id=user.id)
        self.stdout.write(f"Found {len(found)} recommendation(s).")

    @transaction.atomic
    def reset_account(self, *, email: str, password: str) -> tuple[User, dict[str, ApiKey]]:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=password)
        else:
            RequestLog.objects.filter(user=user).delete()
            Rollup.objects.filter(user=user).delete()
            Recommendation.objects.filter(user=user).delete()
            # its own keys only: a key made by `make demo-key` (printed once) keeps working
            ApiKey.objects.filter(user=user, name__in=[fields["name"] for fields in KEYS.values()]).delete()
            user.set_password(password)
            user.save(update_fields=["password"])
        keys = {}
        for slug, fields in KEYS.items():
            api_key, _ = api_key_create(user=user, **fields)
            keys[slug] = api_key
        ApiKey.objects.filter(id__in=[key.id for key in keys.values()]).update(
            created_at=timezone.now() - timedelta(days=settings.REQUEST_LOG_RETENTION_DAYS)
        )
        return user, keys
