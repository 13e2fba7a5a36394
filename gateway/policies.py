"""Key policies: what a key may do, its own settings merged over its owner's defaults.

A key field left blank inherits the user's default; a policy with nothing set costs the hot path nothing.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from decimal import Decimal

POLICY_FIELDS = ("rpm", "tpm", "max_parallel", "monthly_budget_usd", "allowed_models")


@dataclass(frozen=True, slots=True)
class Policy:
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    monthly_budget_usd: Decimal | None = None
    allowed_models: tuple[str, ...] = ()

    @property
    def limits_traffic(self) -> bool:
        """Does admitting a request need the shared limiter (Redis or the database)?"""
        return bool(self.rpm or self.tpm or self.max_parallel or self.monthly_budget_usd is not None)

    def allows_model(self, model_id: str) -> bool:
        if not self.allowed_models:
            return True
        return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in self.allowed_models)


def merge(key_values: dict, user_values: dict) -> Policy:
    """The key's own values, or the user's where the key has none."""
    values = {}
    for name in POLICY_FIELDS:
        value = key_values.get(name)
        values[name] = user_values.get(name) if value in (None, []) else value
    values["allowed_models"] = tuple(str(m) for m in values["allowed_models"] or () if m)
    return Policy(**values)
