"""A mergeable latency histogram: logarithmic buckets with 1 % relative accuracy (DDSketch's mapping).

A value v > 0 ms falls in bucket ceil(log(v) / log(GAMMA)); a bucket is reported as its midpoint, so any
quantile is within 1 % of a true sample value. Sketches are sparse dicts {bucket index: count} that merge by
adding counts — minute buckets add up into hours and days, and any set of buckets combines exactly.
Values ≤ MIN_MS share one bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_MS = 0.001
_MIN_INDEX = math.ceil(math.log(MIN_MS) / _LOG_GAMMA)


def index_of(value_ms: float) -> int:
    if value_ms <= MIN_MS:
        return _MIN_INDEX
    return math.ceil(math.log(value_ms) / _LOG_GAMMA)


def value_of(index: int) -> float:
    """The bucket's representative value: within ALPHA of every value in it."""
    return 2 * GAMMA**index / (GAMMA + 1)


def build(values: Iterable[float | None]) -> dict[str, int]:
    sketch: dict[str, int] = {}
    for value in values:
        if value is None:
            continue
        key = str(index_of(value))
        sketch[key] = sketch.get(key, 0) + 1
    return sketch


def merge(sketches: Iterable[dict[str, int] | None]) -> dict[str, int]:
    total: dict[str, int] = {}
    get = total.get  # bound once: this loop is the whole cost of merging
    for sketch in sketches:
        for key, count in (sketch or {}).items():
            total[key] = get(key, 0) + count
    return total


def count(sketch: dict[str, int]) -> int:
    return sum(sketch.values())


def quantile(sketch: dict[str, int], q: float) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) by the nearest-rank rule, or None for an empty sketch."""
    n = count(sketch)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for index in sorted(int(key) for key in sketch):
        seen += sketch[str(index)]
        if seen >= rank:
            return value_of(index)
    return value_of(max(int(key) for key in sketch))
