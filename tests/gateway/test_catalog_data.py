"""Checks on the data in gateway/catalog.json (plain pytest, no Django).

Seed ids and where they point (chosen from the reference prices of 2026-11-27):
- `gemini-pro` is an alias of `gemini-2.5-pro`, the newest Pro the reference lists without "preview"
  (Gemini 3.1 Pro is only there as `gemini-3.1-pro-preview`).
- `gemini-flash` is an alias of `gemini-3.8-flash`, the newest Flash the reference lists without "preview".
- `claude-3-5-sonnet` is an alias of `claude-3-5-sonnet-20241022`, and `claude-3-opus` of
  `claude-3-opus-20240229`.
  The reference no longer has Anthropic's own rows for these two; their prices come from the Bedrock rows
  of the same snapshots, which carry the same list prices.
- `mistral-large` is an alias of `mistral-large-latest`; `mistral-7b` of `mistral-tiny`, the original name of
  the Mistral 7B endpoint (the reference has no `open-mistral-7b` row).
- `llama-3-70b` and `llama-3-8b` are entries of their own. The reference has no Groq Llama rows, so they carry
  Together's Llama 3 upstream ids and prices.
"""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

CATALOG_PATH = Path(__file__).resolve().parents[2] / "gateway" / "catalog.json"
PROVIDERS = {"openai", "anthropic", "gemini", "mistral", "groq", "together", "ollama"}
PRICE_FIELDS = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok")
FIELDS = {
    "id",
    "provider",
    "upstream",
    "aliases",
    "family",
    "context_window",
    "max_output_tokens",
    "price_date",
    "created",
    *PRICE_FIELDS,
}

# public id -> (provider, id of the entry it resolves to)
SEEDS = {
    "gpt-4o": ("openai", "gpt-4o"),
    "gpt-4-turbo": ("openai", "gpt-4-turbo"),
    "gpt-3.5-turbo": ("openai", "gpt-3.5-turbo"),
    "claude-3-5-sonnet": ("anthropic", "claude-3-5-sonnet-20241022"),
    "claude-3-opus": ("anthropic", "claude-3-opus-20240229"),
    "gemini-pro": ("gemini", "gemini-2.5-pro"),
    "gemini-flash": ("gemini", "gemini-3.8-flash"),
    "llama-3-70b": ("together", "llama-3-70b"),
    "llama-3-8b": ("together", "llama-3-8b"),
    "mistral-large": ("mistral", "mistral-large-latest"),
    "mistral-7b": ("mistral", "mistral-tiny"),
}


@pytest.fixture(scope="module")
def catalog() -> dict:
    return json.loads(CATALOG_PATH.read_text())


@pytest.fixture(scope="module")
def models(catalog) -> list[dict]:
    return catalog["models"]


@pytest.fixture(scope="module")
def by_public_id(models) -> dict[str, dict]:
    return {public_id: m for m in models for public_id in (m["id"], *m["aliases"])}


def test_file_declares_schema_version_and_source(catalog):
    assert catalog["schema_version"] == 1
    assert "LiteLLM" in catalog["source"]


def test_catalogue_has_at_least_100_models(models):
    assert len(models) >= 100


HOST_FIELDS = {"provider", "upstream", "context_window", *PRICE_FIELDS}


def test_every_model_has_exactly_the_schema_fields(models):
    for m in models:
        assert set(m) - {"hosts"} == FIELDS, m["id"]
        for host in m.get("hosts", ()):
            assert {"provider", "upstream"} <= set(host) <= HOST_FIELDS, m["id"]
            assert host["provider"] in PROVIDERS


def test_every_id_and_alias_is_unique_across_the_file(models):
    public_ids = [public_id for m in models for public_id in (m["id"], *m["aliases"])]
    duplicates = sorted({p for p in public_ids if public_ids.count(p) > 1})
    assert not duplicates


def test_every_seed_id_routes_to_its_provider(by_public_id):
    for public_id, (provider, entry_id) in SEEDS.items():
        assert public_id in by_public_id, public_id
        assert by_public_id[public_id]["provider"] == provider, public_id
        assert by_public_id[public_id]["id"] == entry_id, public_id


def test_undated_openai_ids_are_their_own_entries(by_public_id):
    assert by_public_id["gpt-4o"]["upstream"] == "gpt-4o"
    assert by_public_id["gpt-4o-2024-05-13"]["id"] == "gpt-4o-2024-05-13"
    assert by_public_id["gpt-4o-2024-05-13"]["input_per_mtok"] != by_public_id["gpt-4o"]["input_per_mtok"]


def test_providers_are_within_the_allowed_set(models):
    assert {m["provider"] for m in models} <= PROVIDERS


def test_models_are_sorted_by_provider_then_id(models):
    keys = [(m["provider"], m["id"]) for m in models]
    assert keys == sorted(keys)


def test_ids_upstreams_and_families_are_non_empty_strings(models):
    for m in models:
        for name in ("id", "upstream", "family"):
            assert isinstance(m[name], str) and m[name].strip() == m[name] != "", (m["id"], name)
        assert isinstance(m["aliases"], list) and all(isinstance(a, str) and a for a in m["aliases"])


def test_gemini_upstreams_have_no_models_prefix(models):
    for m in models:
        if m["provider"] == "gemini":
            assert not m["upstream"].startswith(("models/", "gemini/")), m["id"]


def test_every_price_is_an_exact_non_negative_decimal_string(models):
    for m in models:
        for name in PRICE_FIELDS:
            raw = m[name]
            if raw is None:
                assert name in ("cached_input_per_mtok", "cache_write_per_mtok"), (m["id"], name)
                continue
            assert isinstance(raw, str), (m["id"], name)
            assert re.fullmatch(r"\d+(\.\d+)?", raw), (m["id"], name, raw)
            value = Decimal(raw)
            assert value >= 0, (m["id"], name)
            decimals = max(0, -value.normalize().as_tuple().exponent)
            assert decimals <= 6, (m["id"], name, raw)


def test_cached_input_never_costs_more_than_input(models):
    for m in models:
        if m["cached_input_per_mtok"] is not None:
            assert Decimal(m["cached_input_per_mtok"]) <= Decimal(m["input_per_mtok"]), m["id"]


def test_ollama_models_are_free(models):
    for m in models:
        if m["provider"] == "ollama":
            assert Decimal(m["input_per_mtok"]) == 0 and Decimal(m["output_per_mtok"]) == 0, m["id"]


def test_price_date_is_an_iso_date(models):
    for m in models:
        assert date.fromisoformat(m["price_date"]).isoformat() == m["price_date"], m["id"]


def test_context_window_is_a_positive_int(models):
    for m in models:
        assert type(m["context_window"]) is int and m["context_window"] > 0, m["id"]


def test_max_output_tokens_is_a_positive_int_or_null(models):
    for m in models:
        value = m["max_output_tokens"]
        assert value is None or (type(value) is int and value > 0), m["id"]


def test_created_is_a_plausible_unix_timestamp(models):
    not_before = 1672531200  # 2023-01-01
    not_after = 1798761600  # 2027-01-01
    for m in models:
        assert type(m["created"]) is int and not_before <= m["created"] < not_after, m["id"]
