"""Deltas kept at import time: each import compared once with the previous complete import from its source.

``record_deltas`` runs in the import's own transaction (and in a rollback's, for the import that followed the
one rolled back). It matches the two imports' listings by ``source_url`` as ``lineage.diff_imports`` does (the
last row of each import wins; rows without a source_url are counted, not matched) and keeps the result in
``import_deltas`` (one row per listing added, removed or changed in price) and ``import_delta_models`` (per
model: how many listings changed, were added, removed or stayed, and each import's rows and rows overridden by a
later row with the same source_url). A diff of two consecutive imports then reads a page of these
rows and a few counts instead of both imports' rows (``kept_counts``, ``kept_changes``).

Everything is set-based SQL: the latest row per source_url of each side goes to a temporary table keyed by
source_url (one grouped sort each), and one full outer join of the two classifies every listing.

Synchronous functions over a ``sqlite3.Connection``; nothing here imports Datasette.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional

from .sqlite import transaction

# Tables this module writes; migration 0006 creates them.
DELTAS_TABLE = "import_deltas"
MODELS_TABLE = "import_delta_models"

# The previous import of an import: the newest earlier complete import from the same source (imports without a
# source are one source). The one statement of that rule; ``columns`` names what to select of it (``p``).
PREVIOUS_IMPORT_SQL = """
SELECT {columns}
FROM import_batches p, import_batches this
WHERE this.import_id = :import_id
    AND p.status = 'complete'
    AND p.source IS this.source
    AND (p.imported_at < this.imported_at OR (p.imported_at = this.imported_at AND p.id < this.id))
ORDER BY p.imported_at DESC, p.id DESC
LIMIT 1
"""

# The latest row (highest import_index) of each source_url of one import, and how many rows of the import have
# that source_url. SQLite takes the bare columns of a query with a single MAX() from the row that holds the maximum.
LATEST_TABLE_SQL = """
CREATE TEMP TABLE {name} (
    source_url PRIMARY KEY,
    import_index,
    canonical_model,
    price,
    score,
    copies
) WITHOUT ROWID
"""
LATEST_ROWS_SQL = """
INSERT INTO temp.{name} (source_url, import_index, canonical_model, price, score, copies)
SELECT source_url, MAX(import_index), canonical_model, price, score, COUNT(*)
FROM scored_listings
WHERE import_id = :import_id AND source_url IS NOT NULL
GROUP BY source_url
"""

# Every listing of either side that was added, removed or changed price (the same price is no change, whatever
# the score did), in the diff's order so that the index is filled from left to right. Two passes, each looking
# the other side up by its key (faster than one FULL JOIN, which has to remember every matched row).
INSERT_DELTAS_SQL = """
INSERT INTO import_deltas (
    import_id, previous_import_id, change, source_url, canonical_model,
    old_price, new_price, old_score, new_score, old_import_index, new_import_index
)
SELECT :import_id, :previous_import_id, change, source_url, canonical_model,
    old_price, new_price, old_score, new_score, old_import_index, new_import_index
FROM (
    SELECT CASE WHEN a.source_url IS NULL THEN 'added' ELSE 'changed' END AS change, b.source_url,
        b.canonical_model, a.price AS old_price, b.price AS new_price, a.score AS old_score, b.score AS new_score,
        a.import_index AS old_import_index, b.import_index AS new_import_index
    FROM temp._glyph_delta_new AS b LEFT JOIN temp._glyph_delta_old AS a ON a.source_url = b.source_url
    WHERE a.source_url IS NULL OR a.price IS NOT b.price
    UNION ALL
    SELECT 'removed', a.source_url, a.canonical_model, a.price, NULL, a.score, NULL, a.import_index, NULL
    FROM temp._glyph_delta_old AS a
    WHERE NOT EXISTS (SELECT 1 FROM temp._glyph_delta_new AS b WHERE b.source_url = a.source_url)
)
ORDER BY change, new_import_index, old_import_index
"""

# Per model: the listings of each kind (a listing counts under B's model, A's for a removed one), each import's
# rows (from import_model_stats, which the import wrote just before) and its rows overridden by a later row with
# the same source_url (counted under the model of the row that wins). Only the two small temporary tables and the
# deltas are read, never the imports' rows again.
INSERT_MODELS_SQL = """
INSERT INTO import_delta_models (
    import_id, previous_import_id, canonical_model, changed, added, removed, unchanged,
    row_count, rows_overridden, previous_row_count, previous_rows_overridden
)
SELECT :import_id, :previous_import_id, canonical_model,
    SUM(changed), SUM(added), SUM(removed), SUM(latest) - SUM(changed) - SUM(added),
    SUM(n_rows), SUM(overridden), SUM(old_rows), SUM(old_overridden)
FROM (
    SELECT canonical_model, change = 'changed' AS changed, change = 'added' AS added, change = 'removed' AS removed,
        0 AS latest, 0 AS n_rows, 0 AS overridden, 0 AS old_rows, 0 AS old_overridden
    FROM import_deltas WHERE import_id = :import_id
    UNION ALL
    SELECT canonical_model, 0, 0, 0, COUNT(*), 0, SUM(copies) - COUNT(*), 0, 0
    FROM temp._glyph_delta_new GROUP BY canonical_model
    UNION ALL
    SELECT canonical_model, 0, 0, 0, 0, row_count, 0, 0, 0 FROM import_model_stats WHERE import_id = :import_id
    UNION ALL
    {previous}
)
GROUP BY canonical_model
ORDER BY canonical_model
"""
# A's side of the above, from A's latest rows and summary.
PREVIOUS_FROM_ROWS_SQL = """
    SELECT canonical_model, 0, 0, 0, 0, 0, 0, 0, SUM(copies) - COUNT(*)
    FROM temp._glyph_delta_old GROUP BY canonical_model
    UNION ALL
    SELECT canonical_model, 0, 0, 0, 0, 0, 0, row_count, 0 FROM import_model_stats WHERE import_id = :previous_import_id
"""
# A's side, when A was itself compared with an import before it: its own counts were kept then (they describe
# A alone), which spares grouping A's latest rows again.
PREVIOUS_KEPT_SQL = """
    SELECT canonical_model, 0, 0, 0, 0, 0, 0, row_count, rows_overridden
    FROM import_delta_models WHERE import_id = :previous_import_id
"""

FORGET_DELTAS_SQL = "DELETE FROM import_deltas WHERE import_id = :import_id"
FORGET_MODELS_SQL = "DELETE FROM import_delta_models WHERE import_id = :import_id"
# The imports whose kept deltas compare them with a given one (the import after it, from its source).
FOLLOWERS_SQL = "SELECT DISTINCT import_id FROM import_delta_models WHERE previous_import_id = :import_id"

# A kept comparison's counts. Rows with a source_url are the listings of the side plus its overridden rows.
KEPT_COUNTS_SQL = """
SELECT COUNT(*), SUM(changed), SUM(added), SUM(removed), SUM(unchanged),
    SUM(row_count) - SUM(changed + added + unchanged + rows_overridden), SUM(rows_overridden),
    SUM(previous_row_count) - SUM(changed + removed + unchanged + previous_rows_overridden),
    SUM(previous_rows_overridden)
FROM import_delta_models
WHERE import_id = :b AND previous_import_id = :a
"""
# One kind's changes in the diff's order (file order: B's import_index, or A's for removed listings), served by
# the (import_id, change, new_import_index, old_import_index) index.
KEPT_CHANGES_SQL = """
SELECT change, source_url, canonical_model, old_price, new_price, old_score, new_score,
    old_import_index, new_import_index
FROM import_deltas
WHERE import_id = :b AND change = :kind
ORDER BY new_import_index, old_import_index
LIMIT :limit OFFSET :offset
"""

# Every kept change of one import, or of one kind or one model, in no order (the caller orders them).
KEPT_CHANGE_ROWS_SQL = """
SELECT change, source_url, canonical_model, old_price, new_price, old_score, new_score,
    old_import_index, new_import_index
FROM import_deltas
WHERE import_id = :b AND (:kind IS NULL OR change = :kind) AND (:model IS NULL OR canonical_model = :model)
"""

CHANGE_KINDS = ("changed", "added", "removed")  # the kinds of change a diff lists


@dataclass
class KeptCounts:
    """A kept comparison's counts, as a diff reports them."""

    counts: Dict[str, int]  # changed, added, removed, unchanged
    without_source_url: Dict[str, int]  # "a" and "b"
    duplicate_source_urls: Dict[str, int]  # "a" and "b"


def has_tables(conn: sqlite3.Connection) -> bool:
    """Whether the database keeps deltas (migration 0006 is applied)."""
    return (
        conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)", [DELTAS_TABLE, MODELS_TABLE]
        ).fetchone()[0]
        == 2
    )


def previous_import_id(conn: sqlite3.Connection, import_id: str) -> Optional[str]:
    """The import ``import_id`` is compared with: the newest earlier complete import from the same source."""
    row = conn.execute(PREVIOUS_IMPORT_SQL.format(columns="p.import_id"), {"import_id": import_id}).fetchone()
    return row[0] if row else None


def record_deltas(conn: sqlite3.Connection, import_id: str) -> Optional[str]:
    """(Re)compute and keep what changed from the previous complete import of the same source to ``import_id``.

    Replaces whatever was kept for ``import_id``; keeps nothing for a source's first import, or in a database
    that has no deltas tables (below migration 0006). Returns the previous import's id, or None. Runs inside
    the caller's transaction when there is one.
    """
    if not has_tables(conn):
        return None
    if conn.in_transaction:  # the import's or the rollback's: a failure here is theirs, and undoes them whole
        return _record_deltas(conn, import_id)
    with transaction(conn, "glyph_deltas", "keeping the deltas"):
        return _record_deltas(conn, import_id)


def _record_deltas(conn: sqlite3.Connection, import_id: str) -> Optional[str]:
    params = {"import_id": import_id, "previous_import_id": previous_import_id(conn, import_id)}
    conn.execute(FORGET_DELTAS_SQL, params)
    conn.execute(FORGET_MODELS_SQL, params)
    if params["previous_import_id"] is None:
        return None
    sides = (("_glyph_delta_new", import_id), ("_glyph_delta_old", params["previous_import_id"]))
    try:
        for name, side in sides:
            conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
            conn.execute(LATEST_TABLE_SQL.format(name=name))
            conn.execute(LATEST_ROWS_SQL.format(name=name), {"import_id": side})
        conn.execute(INSERT_DELTAS_SQL, params)
        previous_kept = conn.execute(
            "SELECT 1 FROM import_delta_models WHERE import_id = :previous_import_id LIMIT 1", params
        ).fetchone()
        previous = PREVIOUS_KEPT_SQL if previous_kept else PREVIOUS_FROM_ROWS_SQL
        conn.execute(INSERT_MODELS_SQL.format(previous=previous), params)
    finally:
        for name, _ in sides:
            with contextlib.suppress(sqlite3.Error):  # never hide the error that brought us here
                conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    return params["previous_import_id"]


def forget_import(conn: sqlite3.Connection, import_id: str) -> List[str]:
    """For a rollback of ``import_id``: drop its kept deltas, and compare the imports that followed it with the
    import before it instead. Call it after the batch is marked rolled back, in the rollback's transaction.

    Returns the ids of the imports whose deltas were recomputed.
    """
    if not has_tables(conn):  # below migration 0006: nothing is kept
        return []
    params = {"import_id": import_id}
    followers = [row[0] for row in conn.execute(FOLLOWERS_SQL, params).fetchall()]
    conn.execute(FORGET_DELTAS_SQL, params)
    conn.execute(FORGET_MODELS_SQL, params)
    for follower in followers:
        record_deltas(conn, follower)
    return followers


# Every complete import with its previous complete import from the same source (or NULL): the rule of
# PREVIOUS_IMPORT_SQL for all imports at once (NULL sources are one partition, as `IS` matches them).
PREVIOUS_IMPORTS_SQL = """
SELECT import_id, imported_at, id,
    LAG(import_id) OVER (PARTITION BY source ORDER BY imported_at, id) AS previous_import_id
FROM import_batches
WHERE status = 'complete'
"""
# Complete imports that have a previous import and no kept comparison, oldest first. These are the imports made
# before migration 0006, which creates the tables empty.
MISSING_SQL = f"""
SELECT import_id
FROM ({PREVIOUS_IMPORTS_SQL}) AS b
WHERE previous_import_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM import_delta_models AS k WHERE k.import_id = b.import_id)
ORDER BY imported_at, id
"""
# Imports whose kept comparison is not with their previous complete import any more: kept aside by going below
# migration 0006 and put back after an import was rolled back in between (the rollback could not update them).
STALE_SQL = f"""
SELECT DISTINCT m.import_id
FROM import_delta_models AS m
LEFT JOIN ({PREVIOUS_IMPORTS_SQL}) AS b ON b.import_id = m.import_id
WHERE b.previous_import_id IS NOT m.previous_import_id
"""


STILL_MISSING_SQL = """
SELECT 1 FROM import_batches
WHERE import_id = :import_id AND status = 'complete'
    AND NOT EXISTS (SELECT 1 FROM import_delta_models WHERE import_id = :import_id)
"""


def missing(conn: sqlite3.Connection) -> List[str]:
    """The imports that could keep deltas and have none, oldest first; none below migration 0006."""
    if not has_tables(conn):
        return []
    return [row[0] for row in conn.execute(MISSING_SQL).fetchall()]


def drop_stale(conn: sqlite3.Connection) -> List[str]:
    """Forget the kept comparisons that no longer compare an import with its previous import (see STALE_SQL);
    glyph-deltas computes them again. Returns the imports concerned."""
    stale = [row[0] for row in conn.execute(STALE_SQL).fetchall()]
    for import_id in stale:
        conn.execute(FORGET_DELTAS_SQL, {"import_id": import_id})
        conn.execute(FORGET_MODELS_SQL, {"import_id": import_id})
    return stale


def keep_missing(conn: sqlite3.Connection, on_import: Optional[Callable[[str, Optional[str]], None]] = None) -> int:
    """Compare every import that has no kept deltas with its previous import, and keep the result.

    Oldest first, so that each can reuse the counts kept for the one before; one import per transaction, so
    that a server writing to the same file waits for one comparison at most, and an interrupted run keeps what
    it finished. ``on_import(import_id, previous_import_id)`` is called after each commit. Returns how many
    imports were compared.
    """
    done = 0
    for import_id in missing(conn):
        with transaction(conn, "glyph_deltas", "keeping the deltas"):
            # Read again under the write lock: a rollback or another run may have come first.
            if conn.execute(STILL_MISSING_SQL, {"import_id": import_id}).fetchone() is None:
                continue
            previous = _record_deltas(conn, import_id)
        done += 1
        if on_import is not None:
            on_import(import_id, previous)
    return done


def kept_counts(conn: sqlite3.Connection, a: str, b: str) -> Optional[KeptCounts]:
    """The counts of the kept comparison of ``a`` (before) with ``b`` (after), or None when none is kept."""
    if a == b or not has_tables(conn):
        return None
    pair, changed, added, removed, unchanged, b_without, b_overridden, a_without, a_overridden = conn.execute(
        KEPT_COUNTS_SQL, {"a": a, "b": b}
    ).fetchone()
    if not pair:
        return None
    return KeptCounts(
        counts={"changed": changed, "added": added, "removed": removed, "unchanged": unchanged},
        without_source_url={"a": a_without, "b": b_without},
        duplicate_source_urls={"a": a_overridden, "b": b_overridden},
    )


def kept_changes(
    conn: sqlite3.Connection, b: str, counts: Dict[str, int], kind: Optional[str], limit: Optional[int], offset: int
) -> List[tuple]:
    """A page of kept changes in the diff's order (by kind, then file order), each as lineage classifies one:
    (kind, source_url, model, old/new price, old/new score, old/new import_index)."""
    rows: List[tuple] = []
    for each in CHANGE_KINDS if kind is None else (kind,):
        if limit is not None and len(rows) >= limit:
            break
        if offset >= counts[each]:
            offset -= counts[each]
            continue
        wanted = -1 if limit is None else limit - len(rows)
        rows.extend(
            conn.execute(KEPT_CHANGES_SQL, {"b": b, "kind": each, "limit": wanted, "offset": offset}).fetchall()
        )
        offset = 0
    return rows


def kept_change_rows(conn: sqlite3.Connection, b: str, kind: Optional[str], model: Optional[str]) -> Iterator[tuple]:
    """Every kept change of ``b`` of ``kind`` and ``model`` (None: any), read one at a time, as ``kept_changes``
    gives them but in no particular order."""
    yield from conn.execute(KEPT_CHANGE_ROWS_SQL, {"b": b, "kind": kind, "model": model})
