"""The listings query behind ``GET /api/listings``: filter scored listings by model, price and import.

Synchronous functions over a ``sqlite3.Connection``; nothing here imports Datasette. ``ListingQuery.from_params``
turns request parameters into a checked query (raising ``InvalidParameter`` or ``ConflictingParameters``),
``find_listings`` runs it.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import List, Mapping, Optional

REQUIRED_FIELDS = ("canonical_model", "vram_gb", "mig_support", "nvlink", "tdp_watts", "price", "score")
OPTIONAL_FIELDS = (
    "title",
    "condition",
    "quantity",
    "min_order_qty",
    "seller",
    "region",
    "source_url",
    "source_type",
    "seen_at",
    "generation",
    "cuda_cores",
    "slot_width",
    "pcie_generation",
    "form_factor",
    "notes",
    "warnings",
)
LINEAGE_FIELDS = ("import_id", "import_index")
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS + LINEAGE_FIELDS

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


# SQLite's integers (LIMIT, OFFSET, bound values) are signed 64-bit; a larger one cannot even be bound.
INT64_MAX = 2**63 - 1


class InvalidParameter(ValueError):
    """A parameter's value is not acceptable (the API answers 422)."""

    def __init__(self, parameter: str, value: str, message: str):
        super().__init__(f"{parameter}: {message} (got {value!r})")
        self.parameter = parameter
        self.value = value


class ConflictingParameters(ValueError):
    """Parameters are each fine but contradict each other (the API answers 400)."""


def _number(params: Mapping[str, str], name: str) -> Optional[float]:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidParameter(name, raw, "must be a number") from None
    if not math.isfinite(value):
        raise InvalidParameter(name, raw, "must be a finite number")
    if value < 0:
        raise InvalidParameter(name, raw, "must be >= 0")
    return value


def parse_int(params: Mapping[str, str], name: str, default: int, minimum: int, maximum: Optional[int] = None) -> int:
    """An integer parameter in ``minimum..maximum``; InvalidParameter otherwise; ``default`` when absent or empty."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(name, raw, "must be an integer") from None
    if maximum is not None:
        if not minimum <= value <= maximum:
            raise InvalidParameter(name, raw, f"must be between {minimum} and {maximum}")
    elif value < minimum:
        raise InvalidParameter(name, raw, f"must be >= {minimum}")
    elif value > INT64_MAX:
        raise InvalidParameter(name, raw, f"must be at most {INT64_MAX}")
    return value


@dataclass(frozen=True)
class ListingQuery:
    model: Optional[str] = None  # exact canonical_model, else a case-insensitive part of one
    min_price: Optional[float] = None
    max_price: Optional[float] = None
    import_id: Optional[str] = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "ListingQuery":
        """Check request parameters; an empty value counts as not given."""
        min_price = _number(params, "min_price")
        max_price = _number(params, "max_price")
        if min_price is not None and max_price is not None and min_price > max_price:
            raise ConflictingParameters(f"min_price ({min_price:g}) is greater than max_price ({max_price:g})")
        return cls(
            model=_model(params),
            min_price=min_price,
            max_price=max_price,
            import_id=params.get("import_id") or None,
            limit=parse_int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            offset=parse_int(params, "offset", 0, 0),
        )


def _model(params: Mapping[str, str]) -> Optional[str]:
    raw = params.get("model") or None
    # SQLite's LIKE stops reading a pattern at a NUL, so "%00" would match every model
    if raw is not None and "\x00" in raw:
        raise InvalidParameter("model", raw, "must not contain a NUL character")
    return raw


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matching_models(conn: sqlite3.Connection, term: str) -> List[str]:
    """The canonical_model values ``term`` stands for: itself if any listing has exactly that model, else every
    model whose name contains it, ignoring case (``H100`` finds ``H100_PCIE_80GB`` and ``H100_SXM5_80GB``).

    Candidates come from ``models``, which holds every model a listing names (``scored_listings.canonical_model``
    references ``models.model``), so no scan of the listings is needed.
    """
    exact = conn.execute("SELECT 1 FROM scored_listings WHERE canonical_model = ? LIMIT 1", [term]).fetchone()
    if exact:
        return [term]
    rows = conn.execute(
        "SELECT model FROM models WHERE model LIKE ? ESCAPE '\\' ORDER BY model", [_like_pattern(term)]
    ).fetchall()
    return [r[0] for r in rows]


def listing_sql(query: ListingQuery, models: Optional[List[str]] = None) -> tuple:
    """(sql, params) for ``query``; ``models`` is what ``matching_models`` found for ``query.model``."""
    where, params = [], {}
    if query.import_id is not None:
        where.append("import_id = :import_id")
        params["import_id"] = query.import_id
    if models is not None:
        names = []
        for i, model in enumerate(models):
            params[f"model_{i}"] = model
            names.append(f":model_{i}")
        where.append(f"canonical_model IN ({', '.join(names)})")
    if query.min_price is not None:
        where.append("price >= :min_price")
        params["min_price"] = query.min_price
    if query.max_price is not None:
        where.append("price <= :max_price")
        params["max_price"] = query.max_price
    # Rows are listed by import, then by position in the file. Each import is written in one transaction, in file
    # order, so its rows take consecutive rowids and ``id`` order is exactly that order (tests/test_api_listings.py
    # checks it after concurrent imports). Within one import, ``import_index`` is the same order and lets the
    # (import_id, import_index) index return rows already sorted.
    order = "import_index" if query.import_id is not None else "id"
    sql = (
        f"SELECT {', '.join(FIELDS)} FROM scored_listings"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {order} LIMIT :limit OFFSET :offset"
    )
    params.update(limit=query.limit, offset=query.offset)
    return sql, params


def _listing(row: tuple) -> dict:
    listing = {}
    for name, value in zip(FIELDS, row):
        if value is None:
            continue
        if name == "nvlink":
            value = bool(value)
        listing[name] = value
    return listing


def find_listings(conn: sqlite3.Connection, query: ListingQuery) -> List[dict]:
    """Listings matching ``query``, each with the required fields, import_id, import_index and the optional
    fields that are not null (nvlink as true/false)."""
    models = None
    if query.model is not None:
        models = matching_models(conn, query.model)
        if not models:
            return []
    sql, params = listing_sql(query, models)
    return [_listing(row) for row in conn.execute(sql, params)]
