"""Exact cost of a request, in USD as Decimal, from the catalogue price in force.

cost = uncached input × input price + cached input × cached price + cache writes × cache-write price
       + output (reasoning included) × output price, all per 1M tokens.
A cached token is billed once, at the cached price; with no cached price listed, at the input price.
An unknown price gives None — flagged on the row, never a silent zero.
"""

from __future__ import annotations

from decimal import Decimal

MILLION = Decimal(1_000_000)
PRICE_KEYS = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok")


def prices_of(model) -> dict[str, str | None] | None:
    """The prices a catalogue model carries, as strings (what the row records), or None if unpriced."""
    if model is None or not model.has_price:
        return None
    prices = {key: _str(getattr(model, key)) for key in PRICE_KEYS}
    prices["price_date"] = model.price_date.isoformat() if model.price_date else None
    return prices


def cost_usd(
    prices: dict | None,
    *,
    prompt_tokens: int,
    cached_tokens: int,
    cache_write_tokens: int,
    completion_tokens: int,
) -> Decimal | None:
    if not prices:
        return None
    input_price = Decimal(prices["input_per_mtok"])
    cached_price = _price(prices.get("cached_input_per_mtok"), input_price)
    write_price = _price(prices.get("cache_write_per_mtok"), input_price)
    output_price = Decimal(prices["output_per_mtok"])
    uncached = max(prompt_tokens - cached_tokens - cache_write_tokens, 0)
    total = (
        uncached * input_price
        + cached_tokens * cached_price
        + cache_write_tokens * write_price
        + completion_tokens * output_price
    )
    return total / MILLION


def _price(value: str | None, default: Decimal) -> Decimal:
    return default if value is None else Decimal(value)


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
