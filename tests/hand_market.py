"""The tests' hand-made market: imports A and B from source "market", then C from "broker", and the diffs,
history points and checksums the lineage tests expect of them."""

import hashlib
import sqlite3

from datasette_glyph.engine import lineage

from .snapshots import insert_snapshot

A_ID = "aaaaaaaa-0000-4000-8000-000000000001"
B_ID = "bbbbbbbb-0000-4000-8000-000000000002"
C_ID = "cccccccc-0000-4000-8000-000000000003"
URL = "https://market.example/listing/"


def row(model, price, score, url=None):
    return {"canonical_model": model, "price": price, "score": score, "source_url": url and URL + url}


# Yesterday's and today's file from one source. u1 gets cheaper, u2 keeps its price (its score moves), u3 goes,
# u5 appears twice in A (the later row, 2100, counts) and costs 2200 in B, u6 is new; rows without a source_url
# are counted only.
A_ROWS = [
    row("H100_PCIE_80GB", 20000.0, 0.5, "u1"),
    row("H100_PCIE_80GB", 22000.0, 0.25, "u2"),
    row("RTX_4090", 1800.0, 0.75, "u3"),
    row("RTX_4090", 1600.0, 0.5),
    row("RTX_4090", 2000.0, 0.5, "u5"),
    row("RTX_4090", 2100.0, 0.5, "u5"),
]


B_ROWS = [
    row("H100_PCIE_80GB", 22000.0, 0.5, "u2"),
    row("H100_PCIE_80GB", 19000.0, 0.75, "u1"),
    row("RTX_4090", 2200.0, 0.5, "u5"),
    row("L40S", 8000.0, 0.5, "u6"),
    row("L40S", 7000.0, 0.5),
    row("L40S", 7500.0, 0.5),
]


# Another source, later than both.
C_ROWS = [row("RTX_4090", 1500.0, 1.0, "u1"), row("RTX_4090", 1700.0, 0.5, "u3")]


def batch(import_id, imported_at, source, filename, record_count, status="complete", **extra):
    record = dict.fromkeys(lineage.BATCH_COLUMNS)
    record.update(import_id=import_id, imported_at=imported_at, source=source, filename=filename)
    record.update(record_count=record_count, status=status, **extra)
    return record


BATCH_A = batch(A_ID, "2025-05-01 10:00:00", "market", "a.csv", 6)


BATCH_B = batch(B_ID, "2025-05-02 10:00:00", "market", "b.csv", 6)


BATCH_C = batch(C_ID, "2025-05-03 10:00:00", "broker", "c.csv", 2)


def insert_market(conn):
    """Store imports A and B from source "market", then C from source "broker" (the tests' hand-made market)."""
    insert_snapshot(conn, A_ROWS, A_ID, "market", "2025-05-01 10:00:00", "a.csv")
    insert_snapshot(conn, B_ROWS, B_ID, "market", "2025-05-02 10:00:00", "b.csv")
    insert_snapshot(conn, C_ROWS, C_ID, "broker", "2025-05-03 10:00:00", "c.csv")


def change(kind, url, model, old, new, delta, percent, old_score, new_score, old_index, new_index):
    return {
        "kind": kind,
        "source_url": URL + url,
        "canonical_model": model,
        "old_price": old,
        "new_price": new,
        "delta": delta,
        "percent": percent,
        "old_score": old_score,
        "new_score": new_score,
        "old_import_index": old_index,
        "new_import_index": new_index,
    }


CHANGED_U1 = change("changed", "u1", "H100_PCIE_80GB", 20000.0, 19000.0, -1000.0, -5.0, 0.5, 0.75, 1, 2)


CHANGED_U5 = change("changed", "u5", "RTX_4090", 2100.0, 2200.0, 100.0, 4.76, 0.5, 0.5, 6, 3)


ADDED_U6 = change("added", "u6", "L40S", None, 8000.0, None, None, None, 0.5, None, 4)


REMOVED_U3 = change("removed", "u3", "RTX_4090", 1800.0, None, None, None, 0.75, None, 3, None)


def point(batch_record, index, model, price, score, delta, rows_in_import=1):
    return {
        "import_id": batch_record["import_id"],
        "imported_at": batch_record["imported_at"],
        "source": batch_record["source"],
        "filename": batch_record["filename"],
        "status": batch_record["status"],
        "import_index": index,
        "canonical_model": model,
        "price": price,
        "score": score,
        "seen_at": None,
        "rows_in_import": rows_in_import,
        "delta": delta,
    }


DATA_TABLES = ("scored_listings", "listings", "quantized_listings", "models")


def table_checksum(conn, table, where="1", params=()):
    """SHA-256 of the rows of ``table`` that match ``where``, in id order."""
    digest = hashlib.sha256()
    for values in conn.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id", params):
        digest.update(repr(values).encode())
    return digest.hexdigest()


# The batch records as the API shows them: timestamps in ISO 8601 UTC with Z.
API_A = dict(BATCH_A, imported_at="2025-05-01T10:00:00Z")


API_B = dict(BATCH_B, imported_at="2025-05-02T10:00:00Z")


API_C = dict(BATCH_C, imported_at="2025-05-03T10:00:00Z")


DIFF_AB = {
    "ok": True,
    "a": API_A,
    "b": API_B,
    "same_source": True,
    "models": [
        {
            "canonical_model": "H100_PCIE_80GB",
            "a": {
                "row_count": 2,
                "min_price": 20000.0,
                "median_price": 21000.0,
                "max_price": 22000.0,
                "mean_score": 0.375,
            },
            "b": {
                "row_count": 2,
                "min_price": 19000.0,
                "median_price": 20500.0,
                "max_price": 22000.0,
                "mean_score": 0.625,
            },
            "change": {
                "row_count": 0,
                "min_price": -1000.0,
                "median_price": -500.0,
                "max_price": 0.0,
                "mean_score": 0.25,
            },
        },
        {
            "canonical_model": "L40S",
            "a": None,
            "b": {"row_count": 3, "min_price": 7000.0, "median_price": 7500.0, "max_price": 8000.0, "mean_score": 0.5},
            "change": {"row_count": 3, "min_price": None, "median_price": None, "max_price": None, "mean_score": None},
        },
        {
            "canonical_model": "RTX_4090",
            "a": {
                "row_count": 4,
                "min_price": 1600.0,
                "median_price": 1900.0,
                "max_price": 2100.0,
                "mean_score": 0.5625,
            },
            "b": {"row_count": 1, "min_price": 2200.0, "median_price": 2200.0, "max_price": 2200.0, "mean_score": 0.5},
            "change": {
                "row_count": -3,
                "min_price": 600.0,
                "median_price": 300.0,
                "max_price": 100.0,
                "mean_score": -0.0625,
            },
        },
    ],
    "listings": {
        "added": 1,
        "removed": 1,
        "changed": 2,
        "unchanged": 1,
        "without_source_url": {"a": 1, "b": 2},
        "duplicate_source_urls": {"a": 1, "b": 0},
    },
    "kind": None,
    "limit": 100,
    "offset": 0,
    "total": 4,
    "next_offset": None,
    "changes": [CHANGED_U1, CHANGED_U5, ADDED_U6, REMOVED_U3],
    "notes": [],
    "next": None,
}


def table_checksums(path, where="1", params=()):
    """``table_checksum`` of each table a batch writes, of the database at ``path``."""
    conn = sqlite3.connect(path)
    try:
        return {table: table_checksum(conn, table, where, params) for table in DATA_TABLES + ("import_batches",)}
    finally:
        conn.close()
