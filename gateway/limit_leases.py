"""Leases: a busy key is admitted inside the process, without a round trip to Redis, while its limits are far.

With Redis, every admission is a script call (gateway/limits.py): exact, shared by every process, and one
round trip on the request's path, plus one more to settle it. For a key that is busy and far from all its
limits, a process instead takes a lease — a small share of each limit, taken from the shared state in one
atomic step — and admits that key's requests from it locally. A background thread renews it every
`SYNC_SECONDS`: one script call gives back what the lease left, adds what its requests cost, and grants a
new one.

- A lease is `SHARE` (1 %) of each limit the key has: requests and tokens are taken from the buckets, the
  parallel slots and the budget are held (counted against the key by every process's checks).
- It is granted only while the key has used less than half of every limit, counting every live lease; so
  near a limit every request goes through the exact check, and 60 requests against an rpm of 20 still give
  exactly 20. Leases never let a key exceed a limit: what they admit was taken from the shared state first.
  A key may be refused while other processes' leases hold some of its headroom: at most 1 % of a limit per
  process, for at most `SYNC_SECONDS`, when they give it back.
- Only a key this process has seen at least `MIN_REQUESTS` times in a second is leased, and only when every
  limit it has is wide enough for a share to be worth it (`MIN_SHARE` requests or slots); others keep the
  exact check.
- A lease is valid for `VALID_SECONDS` after it was granted and only for the policy it was granted under:
  a changed limit takes effect at once, in the process that sees the new policy. A process that dies
  leaves its slots and budget hold to expire with its lease record, after `HOLD_SECONDS`.
- Budgets: a lease's hold (1 % of the budget) counts as spent for every check, and the lease admits
  requests while the settled cost of its own stays under it. The renewal adds their cost to the month's
  spend and sends the budget alerts it crossed. Leases are granted while the spend is under half the
  budget; a key that spends the other half within one renewal period (0.25 s) may have each process admit
  from its lease until that renewal, on top of the requests in flight when the budget ran out.
- The x-ratelimit-remaining-* headers of a leased request count the shared bucket at the last renewal
  plus what the lease still holds: they lag by at most one renewal.

If Redis cannot be reached, renewals fail, leases run out and the exact check's fail-open rule applies.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from gateway.policies import Policy

log = logging.getLogger(__name__)

SHARE = 0.01  # a lease is this share of each limit
MIN_SHARE = 2  # ... of at least this many requests and parallel slots
MIN_REQUESTS = 5  # requests of a key in one second, on one process, before it takes leases
SYNC_SECONDS = 0.25  # renewals
VALID_SECONDS = 1.0  # a lease admits requests this long after it was granted
HOLD_SECONDS = 10  # a lease's slots and budget hold outlive a process that died by this much
IDLE_SECONDS = 2.0  # a key not asked for this long gives its lease back
MAX_TRACKED = 1000  # keys counted towards MIN_REQUESTS before idle ones are forgotten


class Lease:
    """One process's lease on one key under one policy, and the requests it admitted that are in flight."""

    __slots__ = (
        "key_id",
        "policy",
        "lease_id",
        "grant",
        "expires",
        "requests",
        "tokens",
        "hold",
        "in_flight",
        "slots",
        "cost",
        "requests_left",
        "tokens_left",
        "seen",
        "window",
        "count",
    )

    def __init__(self, key_id: str, policy: Policy, grant: tuple[int, int, int, int]):
        self.key_id, self.policy, self.grant = key_id, policy, grant
        self.lease_id = uuid.uuid4().hex
        self.expires = 0.0  # monotonic; 0: nothing granted
        self.requests = self.tokens = self.hold = 0  # what is left of the grant (tokens may be owed: < 0)
        self.in_flight = 0  # requests admitted from leases, not yet settled
        self.slots = 0  # parallel slots held: in flight + free
        self.cost = 0  # nano-USD settled since the last renewal
        self.requests_left = self.tokens_left = 0.0  # the shared buckets at the last renewal
        self.seen = 0.0  # when a request last asked for this key (monotonic)
        self.window, self.count = 0.0, 0  # requests asked in the current one-second window

    def take(self, tokens: int, now: float) -> bool:
        policy = self.policy
        if (
            now >= self.expires
            or (policy.rpm and self.requests < 1)
            or (policy.tpm and self.tokens < tokens)
            or (policy.max_parallel and self.in_flight >= self.slots)
            or (policy.monthly_budget_usd is not None and self.hold <= self.cost)
        ):
            return False
        if policy.rpm:
            self.requests -= 1
        if policy.tpm:
            self.tokens -= tokens
        self.in_flight += 1
        return True

    def settled(self) -> bool:
        """Nothing granted, held, in flight or left to give back: forgetting it loses nothing."""
        return not (self.expires or self.slots or self.in_flight or self.requests or self.tokens or self.cost)

    def remaining(self) -> tuple[float, float]:
        """The key's requests and tokens left, as the x-ratelimit-remaining-* headers count them."""
        return self.requests_left + max(self.requests, 0), self.tokens_left + max(self.tokens, 0)


def grant_of(policy: Policy, budget_nano: int) -> tuple[int, int, int, int] | None:
    """The lease a policy's key may take (requests, tokens, slots, budget hold), or None: too narrow."""
    requests = int(policy.rpm * SHARE) if policy.rpm else 0
    slots = int(policy.max_parallel * SHARE) if policy.max_parallel else 0
    if (policy.rpm and requests < MIN_SHARE) or (policy.max_parallel and slots < MIN_SHARE):
        return None
    tokens = int(policy.tpm * SHARE) if policy.tpm else 0
    hold = int(budget_nano * SHARE) if budget_nano >= 0 else 0
    if (policy.tpm and tokens < 1) or (budget_nano >= 0 and hold < 1):
        return None
    return requests, tokens, slots, hold


class Leases:
    """A process's leases, by (key, policy), and the thread that renews them. `renew` is called with the
    lease and what to send (see `renew_all`); it returns the script's reply or None when Redis failed."""

    def __init__(self, renew, alert):
        self._renew, self._alert = renew, alert
        self._lock = threading.Lock()
        self._leases: dict[tuple[str, Policy], Lease] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def take(self, key_id: str, policy: Policy, tokens: int) -> Lease | None:
        """A lease that admits this request (taken from it), or None: check it exactly."""
        now = time.monotonic()
        with self._lock:
            if self._pid != os.getpid():  # a forked child inherits no leases and no thread
                self._leases, self._thread, self._pid = {}, None, os.getpid()
            lease = self._leases.get((key_id, policy))
            if lease is not None:
                lease.seen = now
                if lease.take(tokens, now):
                    return lease
            return None

    def asked(self, key_id: str, policy: Policy, budget_nano: int) -> None:
        """A request of this key went through the exact check: lease the key once it is busy enough."""
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get((key_id, policy))
            if lease is None:
                if len(self._leases) >= MAX_TRACKED:
                    self._forget_idle(now)
                grant = grant_of(policy, budget_nano)
                if grant is None:
                    return
                lease = self._leases[(key_id, policy)] = Lease(key_id, policy, grant)
            lease.seen = now
            if now - lease.window >= 1.0:
                lease.window, lease.count = now, 0
            lease.count += 1
            if lease.count >= MIN_REQUESTS and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="limit-leases", daemon=True)
                self._thread.start()

    def _forget_idle(self, now: float) -> None:
        for index, lease in list(self._leases.items()):
            if now - lease.seen >= IDLE_SECONDS and lease.settled():
                self._leases.pop(index)

    def settle(self, lease: Lease, delta: int, cost_nano: int) -> None:
        """A leased request ended: free its slot, settle its tokens, count its cost."""
        with self._lock:
            lease.in_flight -= 1
            lease.tokens -= delta
            lease.cost += cost_nano

    def _run(self) -> None:
        """The renewal thread: at once (the key just became busy), then every SYNC_SECONDS."""
        try:
            while True:
                try:
                    if not self.renew_all():
                        return
                except Exception:  # never let the thread die with leases still to give back
                    log.exception("Could not renew the rate-limit leases")
                time.sleep(SYNC_SECONDS)
        finally:  # however it ends, the next busy key starts another
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def renew_all(self) -> bool:
        """Renew every lease once; forget those of keys no longer asked for. False when none is left (the
        thread ends, and starts again with the next busy key)."""
        now = time.monotonic()
        with self._lock:
            leases = list(self._leases.values())
        for lease in leases:
            with self._lock:
                busy = now - lease.seen < IDLE_SECONDS and (lease.count >= MIN_REQUESTS or lease.expires > 0)
                if not busy and lease.settled():
                    self._leases.pop((lease.key_id, lease.policy), None)  # holds nothing: no call needed
                    continue
                returned = (lease.requests, lease.tokens, lease.cost, lease.in_flight, busy)
                lease.expires = 0.0  # nothing is taken from it while it is being renewed
                lease.requests = lease.tokens = lease.cost = lease.hold = 0
            try:
                reply = self._renew(lease, *returned)
            except Exception:
                log.exception("Could not renew the rate-limit lease of key %s", lease.key_id)
                reply = None
            with self._lock:
                crossed = self._renewed(lease, returned, reply)
            if crossed is not None:  # outside the lock: sending the alert may take a while
                self._alert(lease.key_id, lease.policy, *crossed)
        with self._lock:
            return bool(self._leases)

    def _renewed(self, lease: Lease, returned: tuple, reply) -> tuple[int, int] | None:
        """Apply a renewal's reply; returns the month's spend before and after its cost (nano-USD)."""
        requests, tokens, cost, in_flight, busy = returned
        if reply is None:  # Redis failed: give it back with the next renewal
            lease.requests += requests
            lease.tokens += tokens
            lease.cost += cost
            return None
        granted, requests_left, tokens_left, spent = int(reply[0]), *(float(value) for value in reply[1:])
        lease.requests_left, lease.tokens_left = requests_left, tokens_left
        grant_requests, grant_tokens, grant_slots, grant_hold = lease.grant if granted else (0, 0, 0, 0)
        lease.requests = grant_requests
        lease.tokens += grant_tokens  # what requests settled meanwhile stays owed (or due)
        lease.slots, lease.hold = in_flight + grant_slots, grant_hold
        lease.expires = time.monotonic() + VALID_SECONDS if granted else 0.0
        if not busy and lease.settled():
            self._leases.pop((lease.key_id, lease.policy), None)
        return (int(spent) - cost, int(spent)) if cost and spent >= 0 else None
