"""Queries over import batches: list them, summarise one, and (below) diff, history and rollback.

Synchronous functions over a ``sqlite3.Connection``; nothing here imports Datasette.
"""

from __future__ import annotations

import sqlite3
from typing import List, Optional

BATCH_COLUMNS = (
    "import_id",
    "imported_at",
    "filename",
    "source",
    "description",
    "record_count",
    "sha256",
    "bytes",
    "started_at",
    "finished_at",
    "status",
    "actor",
    "rolled_back_at",
    "rolled_back_by",
)

LIST_IMPORTS_SQL = f"""
SELECT {", ".join(BATCH_COLUMNS)}
FROM import_batches
ORDER BY imported_at DESC, id DESC
LIMIT :limit OFFSET :offset
"""

# Per-model row count and min/median/max price of one batch. The median is the mean of the one or two
# middle prices, found by numbering each model's prices in order.
MODEL_SUMMARY_SQL = """
WITH ranked AS (
    SELECT canonical_model, price, score,
        ROW_NUMBER() OVER (PARTITION BY canonical_model ORDER BY price) AS position,
        COUNT(*) OVER (PARTITION BY canonical_model) AS rows_for_model
    FROM scored_listings
    WHERE import_id = :import_id
)
SELECT canonical_model,
    COUNT(*) AS row_count,
    MIN(price) AS min_price,
    AVG(CASE WHEN position IN ((rows_for_model + 1) / 2, (rows_for_model + 2) / 2) THEN price END) AS median_price,
    MAX(price) AS max_price,
    AVG(score) AS mean_score
FROM ranked
GROUP BY canonical_model
ORDER BY canonical_model
"""


def _dicts(cursor: sqlite3.Cursor) -> List[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def list_imports(conn: sqlite3.Connection, limit: int = 50, offset: int = 0) -> List[dict]:
    """Batch records, newest first."""
    return _dicts(conn.execute(LIST_IMPORTS_SQL, {"limit": limit, "offset": offset}))


def count_imports(conn: sqlite3.Connection) -> int:
    """How many batch records there are."""
    return conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0]


def get_import(conn: sqlite3.Connection, import_id: str) -> Optional[dict]:
    """One batch record plus ``models``: per-model row count, min/median/max price and mean score."""
    rows = _dicts(conn.execute(f"SELECT {', '.join(BATCH_COLUMNS)} FROM import_batches WHERE import_id = ?", [import_id]))
    if not rows:
        return None
    batch = rows[0]
    batch["models"] = model_summary(conn, import_id)
    return batch


def model_summary(conn: sqlite3.Connection, import_id: str) -> List[dict]:
    """Per-model row count, min/median/max price and mean score of one batch, by model name."""
    return _dicts(conn.execute(MODEL_SUMMARY_SQL, {"import_id": import_id}))
