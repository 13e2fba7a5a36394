"""The model catalogue: public model ids (and aliases) → provider, upstream name, context window, prices.

The file `gateway/catalog.json` is the base; `CatalogModel` rows that staff keep in Django admin win over
it (blank fields of a row keep the file's values). Each process re-reads the rows every
CATALOG_REFRESH_SECONDS; a lookup itself is a dict access.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import orjson
from django.conf import settings
from django.db import DatabaseError

from gateway.db import released

log = logging.getLogger(__name__)

CATALOG_FILE = Path(__file__).with_name("catalog.json")
_PRICE_FIELDS = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    provider: str
    upstream: str
    family: str = ""
    aliases: tuple[str, ...] = ()
    context_window: int | None = None
    max_output_tokens: int | None = None
    input_per_mtok: Decimal | None = None
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    output_per_mtok: Decimal | None = None
    price_date: date | None = None
    created: int = 0
    hosts: tuple[ModelInfo, ...] = ()  # the same model at other providers (e.g. Llama on Groq, Ollama)

    @property
    def has_price(self) -> bool:
        return self.input_per_mtok is not None and self.output_per_mtok is not None


def _decimal(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def model_from_dict(raw: dict) -> ModelInfo:
    return ModelInfo(
        id=raw["id"],
        provider=raw["provider"],
        upstream=raw.get("upstream") or raw["id"],
        family=raw.get("family") or "",
        aliases=tuple(raw.get("aliases") or ()),
        context_window=raw.get("context_window"),
        max_output_tokens=raw.get("max_output_tokens"),
        price_date=date.fromisoformat(raw["price_date"]) if raw.get("price_date") else None,
        created=int(raw.get("created") or 0),
        hosts=tuple(
            model_from_dict(
                {
                    "id": raw["id"],
                    "family": raw.get("family"),
                    "created": raw.get("created"),
                    "price_date": raw.get("price_date"),
                    **host,
                }
            )
            for host in raw.get("hosts") or ()
        ),
        **{name: _decimal(raw.get(name)) for name in _PRICE_FIELDS},
    )


def load_file(path: Path = CATALOG_FILE) -> list[ModelInfo]:
    return [model_from_dict(raw) for raw in orjson.loads(path.read_bytes())["models"]]


def apply_row(base: ModelInfo | None, row) -> ModelInfo | None:
    """Merge a `CatalogModel` row over the file's entry of the same id (None: the model is withdrawn)."""
    if not row.is_active:
        return None
    changes = {
        name: getattr(row, name)
        for name in (
            "provider",
            "upstream",
            "family",
            "context_window",
            "max_output_tokens",
            "price_date",
            *_PRICE_FIELDS,
        )
        if getattr(row, name) not in (None, "")
    }
    if row.aliases:
        changes["aliases"] = tuple(a.strip() for a in row.aliases.split(",") if a.strip())
    if base is None:
        if not changes.get("provider"):
            return None
        changes.setdefault("upstream", row.id)
        changes.setdefault("created", int(row.created_at.timestamp()))
        return ModelInfo(id=row.id, **changes)
    return replace(base, **changes)


class Catalog:
    def __init__(self, models: Iterable[ModelInfo]):
        self.models: list[ModelInfo] = list(models)
        self._by_id: dict[str, ModelInfo] = {}
        self._by_upstream: dict[tuple[str, str], ModelInfo] = {}
        for model in self.models:
            self._by_upstream.setdefault((model.provider, model.upstream), model)
            for public_id in (model.id, *model.aliases):
                self._by_id.setdefault(public_id, model)

    def get(self, model_id: str) -> ModelInfo | None:
        return self._by_id.get(model_id)

    def by_upstream(self, provider: str, upstream: str) -> ModelInfo | None:
        return self._by_upstream.get((provider, upstream))

    def public_ids(self) -> list[tuple[str, ModelInfo]]:
        return sorted(self._by_id.items())


def build_catalog(file_models: list[ModelInfo], rows: Iterable) -> Catalog:
    by_id = {model.id: model for model in file_models}
    for row in rows:
        merged = apply_row(by_id.get(row.id), row)
        if merged is None:
            by_id.pop(row.id, None)
        else:
            by_id[row.id] = merged
    return Catalog(by_id.values())


class _CatalogHolder:
    def __init__(self):
        self._file_models: list[ModelInfo] | None = None
        self._catalog: Catalog | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self) -> Catalog:
        if self._catalog is not None and time.monotonic() < self._expires:
            return self._catalog
        with self._lock:
            if self._catalog is None or time.monotonic() >= self._expires:
                self._reload()
        return self._catalog

    def _reload(self) -> None:
        from gateway.models import CatalogModel

        if self._file_models is None:
            self._file_models = load_file()
        try:
            with released():
                rows = list(CatalogModel.objects.all())
        except DatabaseError:
            log.warning("Could not read catalogue overrides; serving the last known catalogue", exc_info=True)
            rows = None
        if rows is not None or self._catalog is None:
            self._catalog = build_catalog(self._file_models, rows or [])
        self._expires = time.monotonic() + settings.CATALOG_REFRESH_SECONDS

    def invalidate(self) -> None:
        self._expires = 0.0


_holder = _CatalogHolder()
get_catalog = _holder.get
invalidate_catalog = _holder.invalidate
