"""Per-key rate limits, parallel limits and monthly budgets, shared by every process and machine.

The model: token buckets. A key with `rpm` has a bucket of `rpm` requests that refills at rpm/60 per second;
with `tpm`, a bucket of `tpm` tokens refilling at tpm/60 per second. A request is admitted only if, in one
atomic step, the parallel slots, the month's spend, the request bucket and the token bucket all allow it;
then it takes one request, its estimated prompt tokens and a parallel slot together. When it ends it gives
the slot back, the token bucket is settled with the real usage (more or fewer tokens than estimated), and
its cost is added to the month's spend.

Backends: with REDIS_URL, Lua scripts in Redis (one round trip each, atomic across every process and
machine, clocked by Redis' own TIME); without it, the database in one short transaction (SQLite serialises
writers, PostgreSQL locks the rows), correct for the processes of one machine.

Budgets are per calendar month in UTC. Admission checks spend < budget, so a budget is overspent by at most
the cost of the requests already in flight when it ran out (at most `max_parallel` requests, when set), plus
requests that ended in the moment the month's counter was being rebuilt from the request log.

Round trips: a finished request's settlement is sent to Redis as soon as its usage is known — before the
client has the last byte of the answer — and its reply is read after the answer was sent (`settle_begin`,
then `Settlement.end`). So the settlement always reaches Redis before anything the client sends next, and
its round trip overlaps the write of the answer instead of delaying the next request on the connection.

Leases (gateway/limit_leases.py): with Redis, a process admits a busy key that is far from all its limits
from a lease — a 1 % share of each limit taken from the shared state in one renewal — with no round trip
per request. Near a limit (more than half used), every request goes through the exact check above.

If Redis cannot be reached, limits fail OPEN: the request is served and the failure logged — an outage of
the limiter must not become an outage of the gateway. Budgets are rebuilt from the request log afterwards.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connection, transaction
from django.db.models import Sum

from gateway.db import released
from gateway.durations import format_duration
from gateway.errors import GatewayError
from gateway.limit_leases import HOLD_SECONDS, Lease, Leases
from gateway.policies import Policy
from gateway.redis_scripts import ScriptCalls

log = logging.getLogger(__name__)

NANO = Decimal(1_000_000_000)  # spend is counted in nano-dollars: integers, exact to 1e-9 USD
SLOT_TTL_SECONDS = 900  # a slot whose process died frees itself after this
SPEND_TTL_SECONDS = 600  # the month's counter is rebuilt from the log after this long unused
_LUA = Path(__file__).with_name("limits.lua")
_REDIS_RETRY_SECONDS = 5.0


class RateLimited(GatewayError):
    status = 429
    code = "rate_limit_exceeded"


class Pending:
    """A limiter call's answer, read when first asked for: the call may still be on its way to Redis."""

    __slots__ = ("_read", "_value")

    def __init__(self, value=None, read=None):
        self._value, self._read = value, read

    def result(self):
        if self._read is not None:
            read, self._read = self._read, None
            self._value = read()
        return self._value


@dataclass(slots=True)
class Admission:
    """What a request took from its key's limits, and the x-ratelimit-* headers it answers with."""

    key_id: str
    policy: Policy
    request_id: str
    reserved_tokens: int
    headers: dict[str, str]
    lease: Lease | None = None  # admitted from this process's lease (gateway/limit_leases.py)


_month: tuple[float, float, str] = (0.0, 0.0, "")  # this month's first second, next month's, and "YYYY-MM"


def period(now: datetime | None = None) -> str:
    """The budget's calendar month in UTC, "YYYY-MM" (kept while the clock stays in it: the hot path asks
    twice per request)."""
    global _month
    if now is not None:
        return now.strftime("%Y-%m")
    start, end, month = _month
    if not start <= time.time() < end:
        now = datetime.now(UTC)
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else first.replace(month=first.month + 1)
        )
        month = now.strftime("%Y-%m")
        _month = (first.timestamp(), following.timestamp(), month)
    return month


def _headers(policy: Policy, requests_left: float, tokens_left: float) -> dict[str, str]:
    headers = {}
    if policy.rpm:
        headers.update(
            {
                "x-ratelimit-limit-requests": str(policy.rpm),
                "x-ratelimit-remaining-requests": str(max(int(requests_left), 0)),
                "x-ratelimit-reset-requests": format_duration((policy.rpm - requests_left) * 60 / policy.rpm),
            }
        )
    if policy.tpm:
        headers.update(
            {
                "x-ratelimit-limit-tokens": str(policy.tpm),
                "x-ratelimit-remaining-tokens": str(max(int(tokens_left), 0)),
                "x-ratelimit-reset-tokens": format_duration((policy.tpm - tokens_left) * 60 / policy.tpm),
            }
        )
    return headers


def _refused(verdict: str, policy: Policy, wait: float, headers: dict[str, str]) -> GatewayError:
    if verdict == "budget":
        return GatewayError(
            f"You exceeded this key's monthly budget of ${policy.monthly_budget_usd} (calendar month, UTC).",
            status=429,
            type="insufficient_quota",
            code="insufficient_quota",
            headers={**headers, "x-should-retry": "false"},
        )
    if verdict == "too_large":
        return RateLimited(
            f"Request too large: its prompt exceeds this key's limit of {policy.tpm} tokens per minute.",
            type="tokens",
            headers={**headers, "x-should-retry": "false"},
        )
    wait = max(wait, 0.001)
    retry = {"retry-after": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
    if verdict == "parallel":
        return RateLimited(
            f"Too many parallel requests: this key allows {policy.max_parallel} at a time.",
            type="requests",
            headers={**headers, **retry},
        )
    unit, limit = ("tokens", policy.tpm) if verdict == "tokens" else ("requests", policy.rpm)
    return RateLimited(
        f"Rate limit reached on {unit} per minute: limit {limit}. "
        f"Please try again in {format_duration(wait)}.",
        type=unit,
        headers={**headers, **retry},
    )


def _spent_in_log(key_id: str, month: str) -> int:
    """The month's spend of a key according to the request log, in nano-dollars."""
    from analytics.models import RequestLog

    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    total = RequestLog.objects.filter(api_key_id=key_id, created_at__gte=start, created_at__lt=end).aggregate(
        total=Sum("cost_usd")
    )["total"]
    return int((total or 0) * NANO)


def _budget_nano(policy: Policy) -> int:
    return int(policy.monthly_budget_usd * NANO) if policy.monthly_budget_usd is not None else -1


class Limiter:
    """The checks and the arithmetic; backends store the state."""

    leases: Leases | None = None  # RedisLimiter's

    def admit(self, *, key_id: str, policy: Policy, request_id: str, tokens: int) -> Admission:
        budget = _budget_nano(policy)
        verdict, requests_left, tokens_left, wait = self._admit(
            key_id, policy, request_id, max(tokens, 0) if policy.tpm else 0, budget
        )
        headers = _headers(policy, requests_left, tokens_left)
        if verdict != "ok":
            raise _refused(verdict, policy, wait, headers)
        return Admission(key_id, policy, request_id, tokens if policy.tpm else 0, headers)

    def settle(self, admission: Admission, *, used_tokens: int, cost: Decimal | None) -> int | None:
        """Give back the slot, settle tokens and add the cost; returns the month's new spend (nano-USD)."""
        return self.settle_send(admission, used_tokens=used_tokens, cost=cost).result()

    def settle_send(self, admission: Admission, *, used_tokens: int, cost: Decimal | None) -> Pending:
        """`settle`, with the answer read later (Pending.result): the round trip overlaps other work."""
        delta = used_tokens - admission.reserved_tokens if admission.policy.tpm else 0
        cost_nano = int(cost * NANO) if cost and admission.policy.monthly_budget_usd is not None else 0
        if admission.lease is not None:  # settled in the process; its renewal reports it (and alerts)
            self.leases.settle(admission.lease, delta, cost_nano)
            return Pending()
        if not admission.policy.max_parallel and not delta and not cost_nano:
            return Pending()  # nothing to give back or add (e.g. a key with only `rpm`): no round trip
        return self._settle_send(admission, delta, cost_nano)

    def _admit(self, key_id, policy, request_id, tokens, budget) -> tuple[str, float, float, float]:
        raise NotImplementedError

    def _settle_send(self, admission: Admission, delta: int, cost_nano: int) -> Pending:
        raise NotImplementedError


def _level(state: tuple[float, float] | None, capacity: int, now: float) -> float:
    if state is None:
        return float(capacity)
    level, updated = state
    return min(float(capacity), level + (now - updated) * capacity / 60)


class DatabaseLimiter(Limiter):
    """The embedded default: state in the `LimitState` table, one transaction per check."""

    def _admit(self, key_id, policy, request_id, tokens, budget):
        from gateway.models import LimitState

        now = time.time()
        names = {"req": f"{key_id}:req", "tok": f"{key_id}:tok", "spend": f"{key_id}:spend:{period()}"}
        with released(), transaction.atomic():
            _lock_key(key_id)
            rows = {
                row.key: row for row in LimitState.objects.select_for_update().filter(key__in=names.values())
            }
            slots = LimitState.objects.select_for_update().filter(key__startswith=f"{key_id}:slot:")
            if policy.max_parallel:
                slots.filter(updated__lt=now).delete()
                if slots.count() >= policy.max_parallel:
                    return "parallel", 0.0, 0.0, 1.0
            if budget >= 0:
                spend = rows.get(names["spend"])
                if spend is None or spend.updated < now:
                    spent = _spent_in_log(key_id, period())
                    spend, _ = LimitState.objects.update_or_create(
                        key=names["spend"], defaults={"level": spent, "updated": now + SPEND_TTL_SECONDS}
                    )
                if spend.level >= budget:
                    return "budget", 0.0, 0.0, 0.0
            requests_left = _level(_state(rows.get(names["req"])), policy.rpm, now) if policy.rpm else 0.0
            tokens_left = _level(_state(rows.get(names["tok"])), policy.tpm, now) if policy.tpm else 0.0
            if policy.rpm and requests_left < 1:
                return "requests", requests_left, tokens_left, (1 - requests_left) * 60 / policy.rpm
            if policy.tpm and tokens > policy.tpm:
                return "too_large", requests_left, tokens_left, 0.0
            if policy.tpm and tokens_left < tokens:
                return "tokens", requests_left, tokens_left, (tokens - tokens_left) * 60 / policy.tpm
            if policy.rpm:
                requests_left -= 1
                LimitState.objects.update_or_create(
                    key=names["req"], defaults={"level": requests_left, "updated": now}
                )
            if policy.tpm:
                tokens_left -= tokens
                LimitState.objects.update_or_create(
                    key=names["tok"], defaults={"level": tokens_left, "updated": now}
                )
            if policy.max_parallel:
                LimitState.objects.create(
                    key=f"{key_id}:slot:{request_id}", level=1, updated=now + SLOT_TTL_SECONDS
                )
        return "ok", requests_left, tokens_left, 0.0

    def _settle_send(self, admission, delta, cost_nano):
        return Pending(self._settle(admission, delta, cost_nano))

    def _settle(self, admission, delta, cost_nano):
        from gateway.models import LimitState

        key_id, policy, now = admission.key_id, admission.policy, time.time()
        spent = None
        with released(), transaction.atomic():
            _lock_key(key_id)
            if policy.max_parallel:
                LimitState.objects.filter(key=f"{key_id}:slot:{admission.request_id}").delete()
            if delta:
                row = LimitState.objects.select_for_update().filter(key=f"{key_id}:tok").first()
                level = _level(_state(row), policy.tpm, now) - delta
                LimitState.objects.update_or_create(
                    key=f"{key_id}:tok", defaults={"level": level, "updated": now}
                )
            if cost_nano:
                row = LimitState.objects.select_for_update().filter(key=f"{key_id}:spend:{period()}").first()
                if row is not None:
                    row.level += cost_nano
                    row.save(update_fields=["level"])
                    spent = int(row.level)
        return spent


def _lock_key(key_id: str) -> None:
    """Serialise a key's checks. SQLite's write transactions already do; on PostgreSQL, row locks alone
    would not cover state rows that do not exist yet, so take a transaction-scoped advisory lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"nm-limit:{key_id}"])


def _state(row) -> tuple[float, float] | None:
    return None if row is None else (row.level, row.updated)


class RedisLimiter(Limiter):
    """Shared by every process and machine: one Lua script call to admit, one to settle; a busy key far
    from its limits is admitted from a lease instead (gateway/limit_leases.py)."""

    def __init__(self, url: str):
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        scripts = _scripts(_LUA.read_text())
        self._admit_script = self.redis.register_script(scripts["ADMIT"])
        self._settle_script = self.redis.register_script(scripts["SETTLE"])
        self._lease_script = self.redis.register_script(scripts["LEASE"])
        self._init_spend_script = self.redis.register_script(
            "redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])"
        )
        self._scripts = ScriptCalls(self.redis)
        self._down_until = 0.0
        self.leases = Leases(self._renew, _budget_alerts) if settings.LIMIT_LEASES else None

    def admit(self, *, key_id: str, policy: Policy, request_id: str, tokens: int) -> Admission:
        leases = self.leases
        if leases is None:
            return super().admit(key_id=key_id, policy=policy, request_id=request_id, tokens=tokens)
        tokens = max(tokens, 0) if policy.tpm else 0
        lease = leases.take(key_id, policy, tokens)
        if lease is not None:
            headers = _headers(policy, *lease.remaining())
            return Admission(key_id, policy, request_id, tokens, headers, lease)
        admission = super().admit(key_id=key_id, policy=policy, request_id=request_id, tokens=tokens)
        leases.asked(key_id, policy, _budget_nano(policy))
        return admission

    def _renew(self, lease: Lease, requests: int, tokens: int, cost: int, in_flight: int, want: bool):
        """One lease's renewal (Leases.renew_all): the LEASE script's reply, or None if Redis failed."""
        policy = lease.policy
        args = [
            *(policy.rpm or 0, policy.tpm or 0, policy.max_parallel or 0, _budget_nano(policy)),
            *(lease.lease_id, requests, tokens, cost, in_flight, 1 if want else 0),
            *lease.grant,
            *(HOLD_SECONDS, SPEND_TTL_SECONDS),
        ]
        return self._send(self._lease_script, self._keys(lease.key_id), args).result()

    def _keys(self, key_id: str) -> list[str]:
        base = f"nm:limit:{{{key_id}}}"  # one hash slot per key, for Redis Cluster
        return [f"{base}:req", f"{base}:tok", f"{base}:slots", f"{base}:spend:{period()}", f"{base}:leases"]

    def _send(self, script, keys, args) -> Pending:
        """The script call sent now, its reply read when asked for (None when Redis is down)."""
        import redis

        if time.monotonic() < self._down_until:
            return Pending()
        try:
            read = self._scripts.send(script, keys, args)
        except redis.RedisError:
            self._went_down()
            return Pending()

        def receive():
            try:
                return read()
            except redis.RedisError:
                self._went_down()
                return None

        return Pending(read=receive)

    def _went_down(self) -> None:
        self._down_until = time.monotonic() + _REDIS_RETRY_SECONDS
        log.exception("Redis is unreachable: rate limits and budgets are not enforced (fail open)")

    def _admit(self, key_id, policy, request_id, tokens, budget):
        keys = self._keys(key_id)
        args = [
            policy.rpm or 0,
            policy.tpm or 0,
            tokens,
            policy.max_parallel or 0,
            budget,
            request_id,
            SLOT_TTL_SECONDS,
            SPEND_TTL_SECONDS,
        ]
        result = self._send(self._admit_script, keys, args).result()
        if result is not None and result[0] == b"spend_unknown":
            spent = _spent_in_log(key_id, period())
            self._send(self._init_spend_script, [keys[3]], [spent, SPEND_TTL_SECONDS]).result()
            result = self._send(self._admit_script, keys, args).result()
        if result is None:
            return "ok", float(policy.rpm or 0), float(policy.tpm or 0), 0.0
        verdict, requests_left, tokens_left, wait = result
        return verdict.decode(), float(requests_left), float(tokens_left), float(wait)

    def _settle_send(self, admission, delta, cost_nano):
        policy = admission.policy
        sent = self._send(
            self._settle_script,
            self._keys(admission.key_id),
            [admission.request_id, policy.tpm or 0, delta, cost_nano, SPEND_TTL_SECONDS],
        )

        def spent() -> int | None:
            result = sent.result()
            return int(result) if result is not None and result >= 0 else None

        return Pending(read=spent)


_limiter: Limiter | None = None


def get_limiter() -> Limiter:
    global _limiter
    if _limiter is None:
        _limiter = RedisLimiter(settings.REDIS_URL) if settings.REDIS_URL else DatabaseLimiter()
    return _limiter


def reset_limiter(**kwargs) -> None:
    global _limiter
    _limiter = None


BUDGET_THRESHOLDS = (80, 100)


class Settlement:
    """A finished request's settlement: sent by `settle_begin`, its answer read (and alerts sent) by `end`."""

    __slots__ = ("admission", "cost", "_spent")

    def __init__(self, admission: Admission, cost: Decimal | None, spent: Pending):
        self.admission, self.cost, self._spent = admission, cost, spent

    def end(self) -> None:
        """Read the month's new spend and send the budget alerts the cost crossed. Never raises."""
        admission, cost = self.admission, self.cost
        try:
            spent = self._spent.result()
        except Exception:
            log.exception("Could not settle the limits of request %s", admission.request_id)
            return
        if spent is not None and cost:
            _budget_alerts(admission.key_id, admission.policy, spent - int(cost * NANO), spent)


def _budget_alerts(key_id: str, policy: Policy, before: int, after: int) -> None:
    """Email the key's owner about each budget threshold the spend crossed, from `before` to `after`
    (nano-USD). A threshold is crossed by one request's cost or one lease renewal's, so once."""
    budget = policy.monthly_budget_usd
    if not budget:
        return
    for threshold in BUDGET_THRESHOLDS:
        line = budget * threshold / 100 * NANO
        if before < line <= after:
            from accounts.tasks import budget_alert_send

            budget_alert_send.delay(key_id, period(), threshold)


def settle_begin(admission: Admission, usage, prices: dict | None) -> Settlement:
    """Send a finished request's settlement (slot, tokens, cost); `end()` the result. Never raises."""
    from analytics.pricing import cost_usd

    cost = None
    if admission.policy.monthly_budget_usd is not None:
        cost = cost_usd(
            prices,
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            completion_tokens=usage.completion_tokens,
        )
    try:
        spent = get_limiter().settle_send(admission, used_tokens=usage.total_tokens, cost=cost)
    except Exception:
        log.exception("Could not settle the limits of request %s", admission.request_id)
        spent = Pending()
    return Settlement(admission, cost, spent)


def _scripts(source: str) -> dict[str, str]:
    """limits.lua's scripts by name: its COMMON part followed by each `-- NAME --` section."""
    parts = re.split(r"^-- ([A-Z]+) --$", source, flags=re.MULTILINE)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    common = sections.pop("COMMON")
    return {name: common + body for name, body in sections.items()}


setting_changed.connect(reset_limiter)
