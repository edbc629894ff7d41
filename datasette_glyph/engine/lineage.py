"""Queries over import batches: list them, summarise one, and (below) diff, history and rollback.

Synchronous functions over a ``sqlite3.Connection``; nothing here imports Datasette.
"""

from __future__ import annotations

import datetime
import heapq
import math
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from . import deltas, schema
from .sqlite import transaction

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
WHERE :source IS NULL OR source = :source
ORDER BY imported_at DESC, id DESC
LIMIT :limit OFFSET :offset
"""

# Import ids starting with a prefix, in the order list_imports uses (a few more than can be shown, to count).
IMPORT_ID_PREFIX_SQL = """
SELECT import_id FROM import_batches
WHERE substr(import_id, 1, length(:prefix)) = :prefix
ORDER BY imported_at DESC, id DESC
LIMIT :limit
"""
# Fewer characters than this are never taken as an import id prefix: git's rule for abbreviated hashes.
MIN_PREFIX = 8
# How many matching ids an ambiguous prefix's message names.
AMBIGUOUS_SHOWN = 10

# Per-model row count, min/median/max price and mean score of one batch, as the import recorded them.
MODEL_SUMMARY_SQL = """
SELECT canonical_model, row_count, min_price, median_price, max_price, mean_score
FROM import_model_stats
WHERE import_id = :import_id
ORDER BY canonical_model
"""

# A batch's per-model summary computed from its rows (summarise_import): counts, extremes and mean score by
# grouping, then the median picked from the batch's prices streamed in order, faster than window functions
# (docs/benchmarks.md, "Tuned constants")
SUMMARY_TOTALS_SQL = """
SELECT canonical_model, COUNT(*), MIN(price), MAX(price), AVG(score)
FROM scored_listings
WHERE import_id = :import_id
GROUP BY canonical_model
"""
SUMMARY_PRICES_SQL = """
SELECT canonical_model, price
FROM scored_listings
WHERE import_id = :import_id
ORDER BY canonical_model, price
"""
INSERT_SUMMARY_SQL = """
INSERT INTO import_model_stats (import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


def _dicts(cursor: sqlite3.Cursor) -> List[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def list_imports(
    conn: sqlite3.Connection, limit: int = 50, offset: int = 0, source: Optional[str] = None
) -> List[dict]:
    """Batch records, newest first; only those from ``source`` when it is given."""
    return _dicts(conn.execute(LIST_IMPORTS_SQL, {"limit": limit, "offset": offset, "source": source}))


def count_imports(conn: sqlite3.Connection, source: Optional[str] = None) -> int:
    """How many batch records there are (from ``source``, when it is given)."""
    return conn.execute(
        "SELECT COUNT(*) FROM import_batches WHERE :source IS NULL OR source = :source", {"source": source}
    ).fetchone()[0]


def resolve_import_id(conn: sqlite3.Connection, text: str) -> str:
    """The whole import id that ``text`` names: the id itself, or a unique prefix of at least 8 characters.

    Raises ``UnknownImport`` when nothing matches (or the prefix is shorter than 8 characters) and
    ``AmbiguousImport``, naming the matches, when a prefix fits more than one import.
    """
    text = text.strip()
    if conn.execute("SELECT 1 FROM import_batches WHERE import_id = ?", [text]).fetchone():
        return text
    if len(text) < MIN_PREFIX:
        raise UnknownImport(text, hint=f"give the whole id or at least {MIN_PREFIX} of its first characters")
    matches = [
        row[0] for row in conn.execute(IMPORT_ID_PREFIX_SQL, {"prefix": text.lower(), "limit": AMBIGUOUS_SHOWN + 1})
    ]
    if not matches:
        raise UnknownImport(text)
    if len(matches) > 1:
        count = conn.execute(
            "SELECT COUNT(*) FROM import_batches WHERE substr(import_id, 1, length(:prefix)) = :prefix",
            {"prefix": text.lower()},
        ).fetchone()[0]
        raise AmbiguousImport(text, matches[:AMBIGUOUS_SHOWN], count)
    return matches[0]


def get_import(conn: sqlite3.Connection, import_id: str) -> Optional[dict]:
    """One batch record plus ``models``: per-model row count, min/median/max price and mean score."""
    rows = _dicts(
        conn.execute(f"SELECT {', '.join(BATCH_COLUMNS)} FROM import_batches WHERE import_id = ?", [import_id])
    )
    if not rows:
        return None
    batch = rows[0]
    batch["models"] = model_summary(conn, import_id)
    return batch


def summarise_import(conn: sqlite3.Connection, import_id: str) -> None:
    """(Re)compute a batch's per-model summary in ``import_model_stats`` from its rows.

    The importer calls it inside the import's transaction. Memory stays flat: the sorts are SQLite's, which
    spill to disk beyond the connection's page cache, and only one model's two middle prices are held.
    """
    params = {"import_id": import_id}
    totals = {row[0]: row[1:] for row in conn.execute(SUMMARY_TOTALS_SQL, params)}
    medians: Dict[str, float] = {}
    model, position, middle, lower = None, 0, (0, 0), 0.0
    for row_model, price in conn.execute(SUMMARY_PRICES_SQL, params):
        if row_model != model:
            model, position = row_model, 0
            count = totals[model][0]
            middle = ((count - 1) // 2, count // 2)  # the same position twice for an odd count
        if position == middle[0]:
            lower = price
        if position == middle[1]:
            medians[model] = (lower + price) / 2
        position += 1
    with transaction(conn, "glyph_summarise"):
        conn.execute("DELETE FROM import_model_stats WHERE import_id = :import_id", params)
        conn.executemany(
            INSERT_SUMMARY_SQL,
            [
                (import_id, model, count, low, medians[model], high, mean_score)
                for model, (count, low, high, mean_score) in totals.items()
            ],
        )


def model_summary(conn: sqlite3.Connection, import_id: str) -> List[dict]:
    """Per-model row count, min/median/max price and mean score of one batch, by model name."""
    return _dicts(conn.execute(MODEL_SUMMARY_SQL, {"import_id": import_id}))


# ---------------------------------------------------------------------------------------------------------------------
# Diffs between imports, listing history, rollback


class LineageError(Exception):
    """A lineage request cannot be carried out; the message says which import and why."""


class UnknownImport(LineageError, LookupError):
    """No batch record has this import_id."""

    def __init__(self, import_id: str, hint: Optional[str] = None):
        self.import_id, self.hint = import_id, hint
        super().__init__(f"No import with import_id {import_id!r}" + (f"; {hint}" if hint else ""))

    def where(self, place: str) -> str:
        """The message, saying where the import was looked for."""
        return f"No import with import_id {self.import_id!r} in {place}" + (f"; {self.hint}" if self.hint else "")


class AmbiguousImport(LineageError, LookupError):
    """An import id prefix that fits more than one import."""

    def __init__(self, prefix: str, matches: List[str], count: int):
        self.prefix, self.matches, self.count = prefix, matches, count
        more = f" (and {count - len(matches)} more)" if count > len(matches) else ""
        super().__init__(
            f"Import id prefix {prefix!r} is ambiguous: it matches {count} imports: {', '.join(matches)}{more}; "
            "give more characters"
        )


class AlreadyRolledBack(LineageError):
    """The batch was rolled back before; a rollback happens once."""

    def __init__(self, import_id: str, rolled_back_at: Optional[str], rolled_back_by: Optional[str]):
        self.import_id = import_id
        self.rolled_back_at, self.rolled_back_by = rolled_back_at, rolled_back_by
        by = f" by {rolled_back_by}" if rolled_back_by else ""
        super().__init__(f"Import {import_id} was already rolled back at {rolled_back_at}{by}")


# Listing changes in the order a diff lists them.
CHANGE_KINDS = deltas.CHANGE_KINDS
# Listing changes on one page of a diff when no limit is given: the API, the diff page and glyph-diff alike.
DIFF_PAGE_SIZE = 100

# The rows of A and B that have a source_url, grouped by source_url; within a group A's rows come before B's,
# each in file order. One sort, then one pass in Python matches them; when a file repeats a source_url, the
# last row (the highest import_index) wins, as it would if the file were applied to a store row by row.
# (When A and B are the same import, every row is B's and stands for both.)
MATCH_ROWS_SQL = """
SELECT source_url, import_id = :b AS in_b, import_index, canonical_model, price, score
FROM scored_listings
WHERE import_id IN (:a, :b) AND source_url IS NOT NULL
ORDER BY source_url, in_b, import_index
"""

# Rows in all, and rows with a source_url, of one import (no sort needed, unlike COUNT(DISTINCT)).
ROW_COUNTS_SQL = "SELECT COUNT(*), COUNT(source_url) FROM scored_listings WHERE import_id = ?"

# The newest earlier complete batch from the same source, in the order list_imports uses (imported_at, then id).
PREVIOUS_IMPORT_SQL = deltas.PREVIOUS_IMPORT_SQL.format(columns=", ".join("p." + c for c in BATCH_COLUMNS))

# One point per import that has the listing (the import's last row with that source_url), oldest first.
LISTING_HISTORY_SQL = """
SELECT b.import_id, b.imported_at, b.source, b.filename, b.status, s.import_index, s.canonical_model, s.price, s.score,
    s.seen_at, s.rows_in_import
FROM (
    SELECT import_id, MAX(import_index) AS import_index, canonical_model, price, score, seen_at,
        COUNT(*) AS rows_in_import
    FROM scored_listings
    WHERE source_url = :source_url
    GROUP BY import_id
) s
JOIN import_batches b ON b.import_id = s.import_id
ORDER BY b.imported_at, b.id
"""

# Rollback, one statement per table; each finds the batch's rows through the (import_id, import_index) index.
# Quantized rows go first, both those the batch wrote and those hanging off the batch's scored listings.
ROLLBACK_QUANTIZED_SQL = """
DELETE FROM quantized_listings
WHERE import_id = :import_id OR scored_listing_id IN (SELECT id FROM scored_listings WHERE import_id = :import_id)
"""
ROLLBACK_SCORED_SQL = "DELETE FROM scored_listings WHERE import_id = :import_id"
ROLLBACK_WHOLE_TABLE_SQL = "DELETE FROM scored_listings"  # when the batch is every row of it
ROLLBACK_LISTINGS_SQL = "DELETE FROM listings WHERE import_id = :import_id"
ROLLBACK_MODEL_STATS_SQL = "DELETE FROM import_model_stats WHERE import_id = :import_id"
# A model row the batch introduced goes only when no remaining listing names the model; otherwise it stays,
# still naming this batch, whose record stays too.
ROLLBACK_MODELS_SQL = """
DELETE FROM models
WHERE import_id = :import_id
    AND NOT EXISTS (SELECT 1 FROM scored_listings WHERE scored_listings.canonical_model = models.model)
    AND NOT EXISTS (SELECT 1 FROM listings WHERE listings.canonical_model = models.model)
"""
# Page cache while a rollback runs (KiB), as for an import: index maintenance is what costs. Restored afterwards.
ROLLBACK_CACHE_KIB = 64 * 1024
# Below this many rows a batch is deleted row by row whatever share of the table it is.
REBUILD_INDEXES_MIN_ROWS = 10_000
ROLLBACK_RECORD_SQL = """
UPDATE import_batches SET status = 'rolled_back', rolled_back_at = :rolled_back_at, rolled_back_by = :rolled_back_by
WHERE import_id = :import_id
"""


@dataclass
class ListingChange:
    """One source_url that was added, removed or changed price between import A and import B."""

    kind: str  # changed, added or removed
    source_url: str
    canonical_model: str  # B's, or A's for a removed listing
    old_price: Optional[float]
    new_price: Optional[float]
    delta: Optional[float]  # new - old, rounded to cents
    percent: Optional[float]  # delta as a percentage of the old price, two decimals; None when old is 0
    old_score: Optional[float]
    new_score: Optional[float]
    old_import_index: Optional[int]
    new_import_index: Optional[int]


@dataclass
class ImportDiff:
    """What changed from import A to import B: per model, and per listing matched by source_url."""

    a: dict  # batch record
    b: dict
    models: List[dict]  # canonical_model, a, b (summary or None), change
    added: int
    removed: int
    changed: int
    unchanged: int
    without_source_url: Dict[str, int]  # rows counted but not matched, for "a" and "b"
    duplicate_source_urls: Dict[str, int]  # rows overridden by a later row with the same source_url
    kind: Optional[str]  # the filter applied to ``changes``; None for every kind
    limit: Optional[int]
    offset: int
    total: int  # changes matching ``kind``, before limit/offset
    changes: List[ListingChange] = field(default_factory=list)

    @property
    def next_offset(self) -> Optional[int]:
        end = self.offset + len(self.changes)
        return end if end < self.total else None

    @property
    def notes(self) -> List[str]:
        """What a reader must know to read the counts right: a side rolled back, or both sides alike."""
        return diff_notes(self.a, self.b)

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "same_source": self.a["source"] == self.b["source"],
            "models": self.models,
            "listings": {
                "added": self.added,
                "removed": self.removed,
                "changed": self.changed,
                "unchanged": self.unchanged,
                "without_source_url": self.without_source_url,
                "duplicate_source_urls": self.duplicate_source_urls,
            },
            "kind": self.kind,
            "limit": self.limit,
            "offset": self.offset,
            "total": self.total,
            "next_offset": self.next_offset,
            "changes": [asdict(c) for c in self.changes],
            "notes": self.notes,
        }


@dataclass
class RollbackResult:
    """What a rollback removed, per table, and the batch record as it now stands."""

    import_id: str
    scored_listings: int
    listings: int
    quantized_listings: int
    models: int
    rolled_back_at: str
    rolled_back_by: Optional[str]


def diff_notes(a: dict, b: dict) -> List[str]:
    """Sentences about batch records ``a`` and ``b`` that change what their diff means (empty when none do)."""
    notes = []
    for side, batch, effect in (("A", a, "added"), ("B", b, "removed")):
        if batch["status"] == "rolled_back":
            notes.append(
                f"{side} ({batch['import_id']}) was rolled back at {batch['rolled_back_at']}: its rows are gone, "
                f"so every listing of the other side counts as {effect}."
            )
    if a["import_id"] == b["import_id"]:
        notes.append("A and B are the same import.")
    elif a["sha256"] is not None and a["sha256"] == b["sha256"]:
        notes.append(f"A and B have the same content (SHA-256 {a['sha256']}): the same file imported twice.")
    return notes


def _batch(conn: sqlite3.Connection, import_id: str) -> dict:
    rows = _dicts(
        conn.execute(f"SELECT {', '.join(BATCH_COLUMNS)} FROM import_batches WHERE import_id = ?", [import_id])
    )
    if not rows:
        raise UnknownImport(import_id)
    return rows[0]


def _change(before: Optional[float], after: Optional[float], places: int) -> Optional[float]:
    if before is None or after is None:
        return None
    change = after - before
    return round(change, places) if math.isfinite(change) else None  # infinities in an adopted file


SUMMARY_FIELDS = (("row_count", 0), ("min_price", 2), ("median_price", 2), ("max_price", 2), ("mean_score", 6))


def _model_changes(a_models: List[dict], b_models: List[dict]) -> List[dict]:
    a_by = {m.pop("canonical_model"): m for m in a_models}
    b_by = {m.pop("canonical_model"): m for m in b_models}
    result = []
    for model in sorted(set(a_by) | set(b_by)):
        a, b = a_by.get(model), b_by.get(model)
        change = {name: _change((a or {}).get(name), (b or {}).get(name), places) for name, places in SUMMARY_FIELDS}
        change["row_count"] = (b or {}).get("row_count", 0) - (a or {}).get("row_count", 0)
        result.append({"canonical_model": model, "a": a, "b": b, "change": change})
    return result


def _classify(url: str, old: Optional[tuple], new: Optional[tuple]) -> tuple:
    """(kind, source_url, model, old/new price, old/new score, old/new import_index) from A's and B's row."""
    if old is None:
        return ("added", url, new[3], None, new[4], None, new[5], None, new[2])
    if new is None:
        return ("removed", url, old[3], old[4], None, old[5], None, old[2], None)
    kind = "unchanged" if old[4] == new[4] else "changed"
    return (kind, url, new[3], old[4], new[4], old[5], new[5], old[2], new[2])


def _match_listings(rows: Iterable[tuple], same: bool) -> Iterator[tuple]:
    """One classified tuple per source_url from the rows of MATCH_ROWS_SQL; the last row of each side wins."""
    url = old = new = None
    for row in rows:
        if row[0] != url:
            if url is not None:
                yield _classify(url, old, new)
            url, old, new = row[0], None, None
        if row[1]:
            new = row
            if same:
                old = row
        else:
            old = row
    if url is not None:
        yield _classify(url, old, new)


def _listing_change(
    kind, url, model, old_price, new_price, old_score, new_score, old_index, new_index
) -> ListingChange:
    delta = _change(old_price, new_price, 2)
    percent = round((new_price - old_price) / old_price * 100, 2) if delta is not None and old_price else None
    return ListingChange(
        kind, url, model, old_price, new_price, delta, percent, old_score, new_score, old_index, new_index
    )


# How a diff can list its changes: by kind, then file order (B's for changed and added listings, A's for removed
# ones); or largest price change first (in percent of the old price, either way; an old price of 0 first of all,
# by dollars), then additions and removals, ties in file order.
CHANGE_ORDERS = ("file", "change")


def _file_order(change: tuple) -> tuple:
    return CHANGE_KINDS.index(change[0]), change[8] if change[8] is not None else change[7]


def _price_change_order(change: tuple) -> tuple:
    old, new = change[3], change[4]
    delta = _change(old, new, 2)
    if delta is None:  # added or removed
        size = (1, 0.0, 0.0)
    elif old:
        size = (0, -abs(round((new - old) / old * 100, 2)), -abs(delta))
    else:
        size = (0, float("-inf"), -abs(delta))
    return size, _file_order(change)


def _page(changes: Iterable[tuple], key, limit: Optional[int], offset: int) -> Tuple[List[tuple], int]:
    """(the page of ``changes`` in ``key`` order, how many changes there were). Only the changes up to the end of
    the page are kept while the rest are counted, so memory follows the page, not the diff."""
    seen = 0

    def counted():
        nonlocal seen
        for change in changes:
            seen += 1
            yield change

    if limit is None:
        page = sorted(counted(), key=key)[offset:]
    else:
        page = heapq.nsmallest(offset + limit, counted(), key=key)[offset:]
    return page, seen


def diff_imports(
    conn: sqlite3.Connection,
    a: str,
    b: str,
    kind: Optional[str] = None,
    limit: Optional[int] = 100,
    offset: int = 0,
    model: Optional[str] = None,
    order: str = "file",
) -> ImportDiff:
    """Compare import ``a`` (before) with import ``b`` (after): per-model summaries, and listings by source_url.

    Listings are matched by ``source_url``; within one import the last row with a given source_url wins.
    Rows without a source_url are counted, not matched. ``kind`` (changed, added or removed) and ``model`` (a
    canonical_model) filter the listed changes, ``order`` (CHANGE_ORDERS) orders them, ``limit``/``offset`` page
    them (``limit=None`` lists them all); the counts are always whole, ``total`` counts what the filters keep.
    """
    if kind is not None and kind not in CHANGE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CHANGE_KINDS)}, not {kind!r}")
    if order not in CHANGE_ORDERS:
        raise ValueError(f"order must be one of {', '.join(CHANGE_ORDERS)}, not {order!r}")
    key = _price_change_order if order == "change" else _file_order
    batch_a, batch_b = _batch(conn, a), _batch(conn, b)
    kept = deltas.kept_counts(conn, a, b)
    if kept is not None:  # b was compared with a when it was imported: read what was kept
        counts = kept.counts
        total = counts[kind] if kind else sum(counts[k] for k in CHANGE_KINDS)
        if model is None and order == "file":  # a page in the index's order
            page = deltas.kept_changes(conn, b, counts, kind, limit, offset)
        else:
            page, total = _page(deltas.kept_change_rows(conn, b, kind, model), key, limit, offset)
        without_source_url, duplicate_source_urls = kept.without_source_url, kept.duplicate_source_urls
    else:
        counts, page, total, without_source_url, duplicate_source_urls = computed_changes(
            conn, a, b, kind, limit, offset, model=model, key=key
        )
    return ImportDiff(
        a=batch_a,
        b=batch_b,
        models=_model_changes(model_summary(conn, a), model_summary(conn, b)),
        added=counts["added"],
        removed=counts["removed"],
        changed=counts["changed"],
        unchanged=counts["unchanged"],
        without_source_url=without_source_url,
        duplicate_source_urls=duplicate_source_urls,
        kind=kind,
        limit=limit,
        offset=offset,
        total=total,
        changes=[_listing_change(*row) for row in page],
    )


def computed_changes(
    conn: sqlite3.Connection,
    a: str,
    b: str,
    kind: Optional[str],
    limit: Optional[int],
    offset: int,
    model: Optional[str] = None,
    key=_file_order,
) -> tuple:
    """(counts by kind, the page of classified changes, how many changes the filters keep, rows without
    source_url, overridden rows) of a diff, from both imports' rows."""
    counts = dict.fromkeys(CHANGE_KINDS + ("unchanged",), 0)

    def wanted():
        for change in _match_listings(conn.execute(MATCH_ROWS_SQL, {"a": a, "b": b}), same=a == b):
            counts[change[0]] += 1
            if (
                change[0] != "unchanged"
                and (kind is None or change[0] == kind)
                and (model is None or change[2] == model)
            ):
                yield change

    page, total = _page(wanted(), key, limit, offset)
    rows = {"a": conn.execute(ROW_COUNTS_SQL, [a]).fetchone(), "b": conn.execute(ROW_COUNTS_SQL, [b]).fetchone()}
    urls = {
        "a": counts["changed"] + counts["removed"] + counts["unchanged"],
        "b": counts["changed"] + counts["added"] + counts["unchanged"],
    }
    without_source_url = {side: total_rows - with_url for side, (total_rows, with_url) in rows.items()}
    duplicate_source_urls = {side: rows[side][1] - urls[side] for side in rows}
    return counts, page, total, without_source_url, duplicate_source_urls


def previous_import(conn: sqlite3.Connection, import_id: str) -> Optional[dict]:
    """The newest complete import from the same source that came before ``import_id``, or None.

    Batches with no source match each other. Raises ``UnknownImport`` for an unknown ``import_id``.
    """
    _batch(conn, import_id)
    rows = _dicts(conn.execute(PREVIOUS_IMPORT_SQL, {"import_id": import_id}))
    return rows[0] if rows else None


def listing_history(
    conn: sqlite3.Connection, source_url: str, limit: Optional[int] = None, offset: int = 0
) -> List[dict]:
    """Price and score of one listing in every import that has it, oldest import first; ``limit`` points from
    ``offset`` (all of them by default).

    Each point also carries ``delta``: the price change from the point before (None for the very first).
    """
    start = max(0, offset - 1)  # the point before the page, for the first delta
    count = -1 if limit is None else limit + (offset - start)
    sql = LISTING_HISTORY_SQL + "LIMIT :limit OFFSET :offset"
    points = _dicts(conn.execute(sql, {"source_url": source_url, "limit": count, "offset": start}))
    previous = None
    for point in points:
        point["delta"] = _change(previous, point["price"], 2)
        previous = point["price"]
    return points[offset - start :]


def _delete_scored_listings(conn: sqlite3.Connection, params: dict) -> int:
    """Delete a batch's scored listings, the cheapest of three ways, and return how many were deleted.

    Deleting a row costs a b-tree delete in every index; building an index costs a sort of the rows that
    remain. For a batch that is more than half of the table, the secondary indexes are dropped first and
    created again afterwards, from their own SQL, inside the transaction (a million-row batch goes in about half
    the time); the (import_id, import_index) index stays: it finds the rows. A batch that is the whole table is
    deleted without a WHERE clause, which SQLite carries out by freeing the table's and its indexes' pages
    (the truncate optimization): the rollback of a million-row first load took 1.3 s, against 2.0 s dropping
    the indexes, deleting and building them again (benchmarks/bench_import.py's store, a quiet machine). SQLite
    deletes row by row instead when the table has triggers, so that they fire.
    """
    import_id = params["import_id"]
    batch_rows = conn.execute("SELECT COUNT(*) FROM scored_listings WHERE import_id = ?", [import_id]).fetchone()[0]
    rebuild = []
    if batch_rows >= REBUILD_INDEXES_MIN_ROWS:
        table_rows = conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone()[0]
        if batch_rows == table_rows:
            conn.execute(ROLLBACK_WHOLE_TABLE_SQL)
            return batch_rows
        if batch_rows * 2 > table_rows:
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'scored_listings' "
                "AND sql IS NOT NULL ORDER BY name"
            ).fetchall():
                first_column = conn.execute("SELECT name FROM pragma_index_info(?) WHERE seqno = 0", [name]).fetchone()[
                    0
                ]
                if first_column != "import_id":
                    rebuild.append((name, sql))
    statistics = schema.index_statistics(conn, [name for name, _ in rebuild])  # DROP INDEX deletes them
    for name, _ in rebuild:
        conn.execute(f'DROP INDEX "{name}"')
    deleted = conn.execute(ROLLBACK_SCORED_SQL, params).rowcount
    for _, sql in rebuild:
        conn.execute(sql)
    schema.put_back_statistics(conn, statistics)
    return deleted


# What a rollback would remove, counted with the rollback's own conditions (see above).
ROLLBACK_PREVIEW_SQL = """
SELECT
    (SELECT COUNT(*) FROM scored_listings WHERE import_id = :import_id),
    (SELECT COUNT(*) FROM listings WHERE import_id = :import_id),
    (SELECT COUNT(*) FROM quantized_listings WHERE import_id = :import_id
        OR scored_listing_id IN (SELECT id FROM scored_listings WHERE import_id = :import_id)),
    (SELECT COUNT(*) FROM models WHERE import_id = :import_id
        AND NOT EXISTS (SELECT 1 FROM scored_listings s WHERE s.canonical_model = models.model
            AND s.import_id IS NOT :import_id)
        AND NOT EXISTS (SELECT 1 FROM listings l WHERE l.canonical_model = models.model
            AND l.import_id IS NOT :import_id))
"""


@dataclass
class RollbackPlan:
    """What rolling an import back would remove, per table, and the batch record as it stands."""

    batch: dict
    scored_listings: int
    listings: int
    quantized_listings: int
    models: int


def plan_rollback(conn: sqlite3.Connection, import_id: str) -> RollbackPlan:
    """Count what ``rollback_import`` would remove, changing nothing.

    Raises ``UnknownImport`` or ``AlreadyRolledBack`` as the rollback would.
    """
    batch = _batch(conn, import_id)
    if batch["status"] == "rolled_back":
        raise AlreadyRolledBack(import_id, batch["rolled_back_at"], batch["rolled_back_by"])
    counts = conn.execute(ROLLBACK_PREVIEW_SQL, {"import_id": import_id}).fetchone()
    return RollbackPlan(batch, *counts)


def rollback_import(
    conn: sqlite3.Connection, import_id: str, actor: Optional[str] = None, now: Optional[str] = None
) -> RollbackResult:
    """Remove every row an import wrote, in one transaction, and mark its batch record ``rolled_back``.

    Removes the batch's scored_listings, listings and quantized_listings (with quantized rows of its scored
    listings written by other batches), and the models rows it introduced that no remaining listing names.
    Other batches are not touched. Raises ``UnknownImport`` or ``AlreadyRolledBack``, changing nothing.
    """
    # UTC, in the shape of the table's other timestamps (CURRENT_TIMESTAMP plus microseconds), so they sort together
    now = now or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    params = {"import_id": import_id, "rolled_back_at": now, "rolled_back_by": actor}
    # The rollback deletes dependent rows itself. With enforcement on, SQLite would also look for children
    # of every deleted scored listing in quantized_listings, which has no index on scored_listing_id: one
    # scan per row. The pragma only takes effect outside a transaction, where it is switched off meanwhile.
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    if foreign_keys and not conn.in_transaction:
        conn.execute("PRAGMA foreign_keys = OFF")
    cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size = -{ROLLBACK_CACHE_KIB}")
    try:
        with transaction(conn, "glyph_rollback"):
            row = conn.execute(
                "SELECT status, rolled_back_at, rolled_back_by FROM import_batches WHERE import_id = ?", [import_id]
            ).fetchone()
            if row is None:
                raise UnknownImport(import_id)
            if row[0] == "rolled_back":
                raise AlreadyRolledBack(import_id, row[1], row[2])
            quantized = 0
            # The store's own imports write no quantized rows; looking up each of a large batch's ids in an
            # empty table still cost 0.2-0.35 s at a million rows.
            if conn.execute("SELECT 1 FROM quantized_listings LIMIT 1").fetchone():
                quantized = conn.execute(ROLLBACK_QUANTIZED_SQL, params).rowcount
            scored = _delete_scored_listings(conn, params)
            listings = conn.execute(ROLLBACK_LISTINGS_SQL, params).rowcount
            conn.execute(ROLLBACK_MODEL_STATS_SQL, params)
            models = conn.execute(ROLLBACK_MODELS_SQL, params).rowcount
            conn.execute(ROLLBACK_RECORD_SQL, params)
            # The import that followed this one from its source is now compared with the one before it.
            deltas.forget_import(conn, import_id)
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
        if foreign_keys and not conn.in_transaction:
            conn.execute("PRAGMA foreign_keys = ON")
    return RollbackResult(import_id, scored, listings, quantized, models, now, actor)
