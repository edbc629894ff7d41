"""Consecutive snapshots of one GPU market, for lineage tests and benchmarks.

A market is a list of listings, each a dict with the scored CSV's columns (typed values). The first snapshot
is made from a seed; each next one keeps most listings with the same ``source_url``, moves some prices, drops
some listings and adds new ones, and says exactly which (``Changes``), so that a diff can be checked against
what was done rather than against what the diff itself reports. Everything is deterministic for a seed.
"""

from __future__ import annotations

import csv
import random
import uuid
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from datasette_glyph import lineage
from datasette_glyph.db import transaction

COLUMNS = [
    "canonical_model", "vram_gb", "mig_support", "nvlink", "tdp_watts", "price", "score", "condition", "quantity",
    "min_order_qty", "seller", "region", "source_url", "source_type", "seen_at", "generation", "cuda_cores",
    "slot_width", "pcie_generation", "form_factor", "notes", "warnings", "title",
]  # fmt: skip

# canonical_model, vram_gb, mig_support, nvlink, tdp_watts, generation, cuda_cores, slot_width, pcie_generation,
# form_factor, base price in USD
MODELS = [
    ("H100_PCIE_80GB", 80, 7, True, 350, "Hopper", 14592, 2, 5, "PCIe", 25000),
    ("A100_80GB_PCIE", 80, 7, True, 300, "Ampere", 6912, 2, 4, "PCIe", 12000),
    ("L40S", 48, 0, False, 350, "Ada Lovelace", 18176, 2, 4, "PCIe", 8500),
    ("RTX_A5000", 24, 0, True, 230, "Ampere", 8192, 2, 4, "PCIe", 1900),
    ("RTX_4090", 24, 0, False, 450, "Ada Lovelace", 16384, 3, 4, "PCIe", 1800),
    ("RTX_3090", 24, 0, True, 350, "Ampere", 10496, 3, 4, "PCIe", 800),
]
CONDITIONS = [("new", 1.0), ("used", 0.7), ("refurbished", 0.82)]
REGIONS = ["US", "US", "EU", "APAC", "UK"]
SELLERS = ["Apex Compute", "Cobalt Systems", 'The "GPU" Barn', "Smith, Lee & Co", "Harbor Tech"]
URL_PREFIX = "https://market.example/listing/"


@dataclass
class Changes:
    """What ``next_snapshot`` did: prices moved (url -> (old, new)), listings gone and listings new."""

    moved: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    gone: List[str] = field(default_factory=list)
    added: List[str] = field(default_factory=list)


def listing(number: int, rng: random.Random, seen_at: str) -> dict:
    """One listing with ``source_url`` ending in ``number``."""
    model, vram, mig, nvlink, tdp, generation, cores, slot, pcie, form, base = rng.choice(MODELS)
    condition, factor = rng.choice(CONDITIONS)
    noise = (rng.random() + rng.random() - 1.0) * 0.15
    return {
        "canonical_model": model,
        "vram_gb": vram,
        "mig_support": mig,
        "nvlink": nvlink,
        "tdp_watts": tdp,
        "price": round(base * factor * (1 + noise), 2),
        "score": round(min(1.0, max(0.0, 0.5 - 2.5 * noise)), 4),
        "condition": condition,
        "quantity": rng.randint(1, 20),
        "min_order_qty": 1,
        "seller": rng.choice(SELLERS),
        "region": rng.choice(REGIONS),
        "source_url": f"{URL_PREFIX}{number}",
        "source_type": "marketplace",
        "seen_at": seen_at,
        "generation": generation,
        "cuda_cores": cores,
        "slot_width": slot,
        "pcie_generation": pcie,
        "form_factor": form,
        "notes": None,
        "warnings": None,
        "title": f"{model.replace('_', ' ')} - {condition}",
    }


def iter_first_snapshot(rows: int, seed: int = 1, seen_at: str = "2025-05-01T00:00:00Z") -> Iterator[dict]:
    """The listings of ``first_snapshot`` one at a time, for markets too big to hold in memory."""
    rng = random.Random(seed)
    for n in range(1, rows + 1):
        yield listing(n, rng, seen_at)


def first_snapshot(rows: int, seed: int = 1, seen_at: str = "2025-05-01T00:00:00Z") -> List[dict]:
    """A market of ``rows`` listings, source_urls numbered 1..rows."""
    return list(iter_first_snapshot(rows, seed, seen_at))


def next_snapshot(
    rows: List[dict],
    seed: int,
    moved: float = 0.1,
    gone: float = 0.05,
    new: float = 0.05,
    seen_at: str = "2025-05-02T00:00:00Z",
) -> Tuple[List[dict], Changes]:
    """The same market a little later: the given fractions of listings move price, go, or come new.

    Kept listings stay in their order; new ones (numbered after the highest number so far) go at the end.
    """
    rng = random.Random(seed)
    changes = Changes()
    result = []
    for row in rows:
        draw = rng.random()
        if draw < gone:
            changes.gone.append(row["source_url"])
            continue
        row = dict(row, seen_at=seen_at)
        if draw < gone + moved:
            old = row["price"]
            new_price = round(old * rng.choice([0.8, 0.9, 0.95, 1.05, 1.1, 1.25]), 2)
            row["price"] = new_price
            changes.moved[row["source_url"]] = (old, new_price)
        result.append(row)
    last = max((int(r["source_url"][len(URL_PREFIX) :]) for r in rows), default=0)
    for number in range(last + 1, last + 1 + round(len(rows) * new)):
        result.append(listing(number, rng, seen_at))
        changes.added.append(result[-1]["source_url"])
    return result, changes


def market_snapshots(count: int, rows: int, seed: int = 1, **rates) -> Tuple[List[List[dict]], List[Changes]]:
    """``count`` consecutive snapshots, and the ``Changes`` from each to the next (``count - 1`` of them)."""
    snapshots = [first_snapshot(rows, seed)]
    all_changes = []
    for i in range(1, count):
        day = f"2025-05-{i + 1:02d}T00:00:00Z"
        snapshot, changes = next_snapshot(snapshots[-1], seed * 1000 + i, seen_at=day, **rates)
        snapshots.append(snapshot)
        all_changes.append(changes)
    return snapshots, all_changes


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def write_csv(rows: Iterable[dict], path) -> None:
    """Write a snapshot (a list, or any iterable of listings) as a scored listings CSV file."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in COLUMNS])


MODEL_COLUMNS = ["model", "vram_gb", "tdp_watts", "mig_support", "nvlink", "generation", "cuda_cores", "slot_width",
                 "pcie_generation"]  # fmt: skip
SCORED_COLUMNS = COLUMNS + ["import_id", "import_index"]
# Required columns for hand-made rows that leave them out.
REQUIRED_DEFAULTS = {"vram_gb": 24, "mig_support": 0, "nvlink": False, "tdp_watts": 300}


def insert_snapshot(
    conn,
    rows: List[dict],
    import_id: Optional[str] = None,
    source: Optional[str] = "market",
    imported_at: Optional[str] = None,
    filename: Optional[str] = None,
    status: str = "complete",
) -> str:
    """Store a snapshot as one batch with plain SQL, as the store keeps it; return its import_id.

    Rows may give only some columns (at least canonical_model, price and score). Models not yet in ``models``
    are added as rows of this batch, in order of first appearance, with the specs of their first row.
    """
    import_id = import_id or str(uuid.uuid4())
    rows = [{**REQUIRED_DEFAULTS, **row} for row in rows]
    with transaction(conn):
        conn.execute(
            "INSERT INTO import_batches (import_id, imported_at, source, record_count, filename, status) "
            "VALUES (?, COALESCE(?, CURRENT_TIMESTAMP), ?, ?, ?, ?)",
            [import_id, imported_at, source, len(rows), filename, status],
        )
        known = {m for (m,) in conn.execute("SELECT model FROM models")}
        first_rows = {}
        for row in rows:
            if row["canonical_model"] not in known:
                first_rows.setdefault(row["canonical_model"], row)
        conn.executemany(
            f"INSERT INTO models ({', '.join(MODEL_COLUMNS)}, import_id, import_index) "
            f"VALUES ({', '.join('?' * (len(MODEL_COLUMNS) + 2))})",
            [
                [model] + [row.get(c) for c in MODEL_COLUMNS[1:]] + [import_id, i]
                for i, (model, row) in enumerate(first_rows.items(), 1)
            ],
        )
        conn.executemany(
            f"INSERT INTO scored_listings ({', '.join(SCORED_COLUMNS)}) VALUES ({', '.join('?' * len(SCORED_COLUMNS))})",
            [[row.get(c) for c in COLUMNS] + [import_id, i] for i, row in enumerate(rows, 1)],
        )
        lineage.summarise_import(conn, import_id)
    return import_id
