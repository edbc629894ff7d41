"""Consecutive snapshots of one GPU market stored as batches, for lineage tests and benchmarks.

The market itself (listings, snapshots and the ``Changes`` between them, CSV files) is the package's own
generator, ``datasette_glyph.engine.sample``; this module adds ``insert_snapshot``, which stores a snapshot with plain
SQL as the store keeps it, so that lineage queries can be tested without going through the importer.
"""

from __future__ import annotations

import uuid
from typing import List, Optional

from datasette_glyph.engine import deltas, lineage
from datasette_glyph.engine.sample import (  # noqa: F401  (re-exported for the tests and benchmarks)
    COLUMNS,
    Changes,
    first_snapshot,
    iter_market,
    market_snapshots,
    next_snapshot,
    write_csv,
)
from datasette_glyph.engine.sqlite import transaction

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

    Like the importer, keeps what changed since the previous complete import from the same source (a complete
    batch's deltas). Rows may give only some columns (at least canonical_model, price and score). Models not yet in
    ``models`` are added as rows of this batch, in order of first appearance, with the specs of their first row.
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
            f"INSERT INTO scored_listings ({', '.join(SCORED_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(SCORED_COLUMNS))})",
            [[row.get(c) for c in COLUMNS] + [import_id, i] for i, row in enumerate(rows, 1)],
        )
        lineage.summarise_import(conn, import_id)
        if status == "complete":
            deltas.record_deltas(conn, import_id)
    return import_id
