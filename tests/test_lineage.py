import datetime
import sqlite3
import statistics
from pathlib import Path

import pytest

from datasette_glyph.engine import lineage
from datasette_glyph.engine.importer import import_csv

from .hand_market import (
    A_ID,
    ADDED_U6,
    B_ID,
    BATCH_A,
    BATCH_B,
    BATCH_C,
    C_ID,
    CHANGED_U1,
    CHANGED_U5,
    DATA_TABLES,
    REMOVED_U3,
    URL,
    change,
    insert_market,
    point,
    row,
    table_checksum,
)
from .snapshots import insert_snapshot, iter_market, market_snapshots, write_csv
from .support import database_checksum


@pytest.fixture
def market(conn):
    """Imports A and B from source "market", then C from source "broker"."""
    insert_market(conn)
    return conn


def summary(rows, low, median, high, score):
    return {"row_count": rows, "min_price": low, "median_price": median, "max_price": high, "mean_score": score}


def test_diff_between_consecutive_imports(market):
    assert lineage.diff_imports(market, A_ID, B_ID).to_dict() == {
        "a": BATCH_A,
        "b": BATCH_B,
        "same_source": True,
        "models": [
            {
                "canonical_model": "H100_PCIE_80GB",
                "a": summary(2, 20000.0, 21000.0, 22000.0, 0.375),
                "b": summary(2, 19000.0, 20500.0, 22000.0, 0.625),
                "change": summary(0, -1000.0, -500.0, 0.0, 0.25),
            },
            {
                "canonical_model": "L40S",
                "a": None,
                "b": summary(3, 7000.0, 7500.0, 8000.0, 0.5),
                "change": summary(3, None, None, None, None),
            },
            {
                "canonical_model": "RTX_4090",
                "a": summary(4, 1600.0, 1900.0, 2100.0, 0.5625),
                "b": summary(1, 2200.0, 2200.0, 2200.0, 0.5),
                "change": summary(-3, 600.0, 300.0, 100.0, -0.0625),
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
    }


def test_diff_backwards_swaps_added_and_removed(market):
    diff = lineage.diff_imports(market, B_ID, A_ID)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (1, 1, 2, 1)
    assert [(c.kind, c.source_url, c.old_price, c.new_price, c.delta, c.percent) for c in diff.changes] == [
        ("changed", URL + "u1", 19000.0, 20000.0, 1000.0, 5.26),
        ("changed", URL + "u5", 2200.0, 2100.0, -100.0, -4.55),
        ("added", URL + "u3", None, 1800.0, None, None),
        ("removed", URL + "u6", 8000.0, None, None, None),
    ]


def test_diff_of_an_import_with_itself_changes_nothing(market):
    diff = lineage.diff_imports(market, A_ID, A_ID).to_dict()
    assert diff["listings"] == {
        "added": 0,
        "removed": 0,
        "changed": 0,
        "unchanged": 4,
        "without_source_url": {"a": 1, "b": 1},
        "duplicate_source_urls": {"a": 1, "b": 1},
    }
    assert (diff["changes"], diff["total"], diff["same_source"]) == ([], 0, True)
    assert [(m["canonical_model"], m["change"]) for m in diff["models"]] == [
        ("H100_PCIE_80GB", summary(0, 0.0, 0.0, 0.0, 0.0)),
        ("RTX_4090", summary(0, 0.0, 0.0, 0.0, 0.0)),
    ]


def test_diff_between_imports_from_different_sources(market):
    diff = lineage.diff_imports(market, A_ID, C_ID).to_dict()
    assert (diff["a"], diff["b"], diff["same_source"]) == (BATCH_A, BATCH_C, False)
    assert diff["changes"] == [
        change("changed", "u1", "RTX_4090", 20000.0, 1500.0, -18500.0, -92.5, 0.5, 1.0, 1, 1),
        change("changed", "u3", "RTX_4090", 1800.0, 1700.0, -100.0, -5.56, 0.75, 0.5, 3, 2),
        change("removed", "u2", "H100_PCIE_80GB", 22000.0, None, None, None, 0.25, None, 2, None),
        change("removed", "u5", "RTX_4090", 2100.0, None, None, None, 0.5, None, 6, None),
    ]


@pytest.mark.parametrize(
    "kind, limit, offset, expected, total, next_offset",
    [
        (None, 2, 0, [CHANGED_U1, CHANGED_U5], 4, 2),
        (None, 2, 2, [ADDED_U6, REMOVED_U3], 4, None),
        (None, 3, 1, [CHANGED_U5, ADDED_U6, REMOVED_U3], 4, None),
        (None, 1, 4, [], 4, None),
        (None, None, 1, [CHANGED_U5, ADDED_U6, REMOVED_U3], 4, None),
        ("changed", 100, 0, [CHANGED_U1, CHANGED_U5], 2, None),
        ("changed", 1, 0, [CHANGED_U1], 2, 1),
        ("changed", 1, 1, [CHANGED_U5], 2, None),
        ("added", 100, 0, [ADDED_U6], 1, None),
        ("removed", 100, 0, [REMOVED_U3], 1, None),
        ("removed", 100, 1, [], 1, None),
    ],
)
def test_diff_pages_and_filters_listing_changes(market, kind, limit, offset, expected, total, next_offset):
    diff = lineage.diff_imports(market, A_ID, B_ID, kind=kind, limit=limit, offset=offset).to_dict()
    assert (diff["changes"], diff["total"], diff["next_offset"]) == (expected, total, next_offset)
    assert (diff["listings"]["added"], diff["listings"]["removed"], diff["listings"]["changed"]) == (1, 1, 2)


def test_diff_rejects_an_unknown_kind(market):
    with pytest.raises(ValueError) as e:
        lineage.diff_imports(market, A_ID, B_ID, kind="moved")
    assert str(e.value) == "kind must be one of changed, added, removed, not 'moved'"


@pytest.mark.parametrize("a, b", [("nope", B_ID), (A_ID, "nope")])
def test_diff_of_an_unknown_import(market, a, b):
    with pytest.raises(lineage.UnknownImport) as e:
        lineage.diff_imports(market, a, b)
    assert str(e.value) == "No import with import_id 'nope'"


def test_diff_matches_what_the_snapshots_changed(conn):
    (first, second), (changes,) = market_snapshots(2, 400, seed=7, changed=0.2, removed=0.1, added=0.1)
    a = insert_snapshot(conn, first, imported_at="2025-05-01 00:00:00")
    b = insert_snapshot(conn, second, imported_at="2025-05-02 00:00:00")
    diff = lineage.diff_imports(conn, a, b, limit=None)
    by_kind = {kind: [c for c in diff.changes if c.kind == kind] for kind in lineage.CHANGE_KINDS}
    assert {c.source_url: (c.old_price, c.new_price) for c in by_kind["changed"]} == changes.changed
    assert [c.source_url for c in by_kind["added"]] == changes.added
    assert [c.source_url for c in by_kind["removed"]] == changes.removed
    assert diff.unchanged == 400 - len(changes.removed) - len(changes.changed)
    assert (diff.added, diff.removed, diff.changed) == (len(changes.added), len(changes.removed), len(changes.changed))
    assert len(changes.changed) > 50 and len(changes.removed) > 20 and len(changes.added) == 40


# (name, source, imported_at, status)
SOURCED_BATCHES = [
    ("m1", "market", "2025-05-01 10:00:00", "complete"),
    ("b1", "broker", "2025-05-01 11:00:00", "complete"),
    ("m2", "market", "2025-05-02 10:00:00", "failed"),
    ("m3", "market", "2025-05-02 10:00:00", "rolled_back"),
    ("m4", "market", "2025-05-03 10:00:00", "complete"),
    ("m5", "market", "2025-05-03 10:00:00", "complete"),
    ("n1", None, "2025-05-01 09:00:00", "complete"),
    ("n2", None, "2025-05-04 09:00:00", "complete"),
    ("m6", "market", "2025-05-04 10:00:00", "complete"),
]


@pytest.mark.parametrize(
    "import_id, expected",
    [
        ("m1", None),
        ("b1", None),
        ("m2", "m1"),
        ("m4", "m1"),
        ("m5", "m4"),  # same imported_at: the earlier record counts as earlier
        ("m6", "m5"),
        ("n1", None),
        ("n2", "n1"),  # no source matches no source
    ],
)
def test_previous_import_is_the_newest_earlier_complete_one_from_the_same_source(conn, import_id, expected):
    for name, source, imported_at, status in SOURCED_BATCHES:
        insert_snapshot(conn, [row("L4", 2000.0, 0.5, name)], name, source, imported_at, name + ".csv", status)
    previous = lineage.previous_import(conn, import_id)
    assert (previous and previous["import_id"]) == expected


def test_previous_import_of_an_unknown_import(conn):
    with pytest.raises(lineage.UnknownImport):
        lineage.previous_import(conn, "nope")


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "u1",
            [
                point(BATCH_A, 1, "H100_PCIE_80GB", 20000.0, 0.5, None),
                point(BATCH_B, 2, "H100_PCIE_80GB", 19000.0, 0.75, -1000.0),
                point(BATCH_C, 1, "RTX_4090", 1500.0, 1.0, -17500.0),
            ],
        ),
        (
            "u5",
            [
                point(BATCH_A, 6, "RTX_4090", 2100.0, 0.5, None, rows_in_import=2),
                point(BATCH_B, 3, "RTX_4090", 2200.0, 0.5, 100.0),
            ],
        ),
        ("u6", [point(BATCH_B, 4, "L40S", 8000.0, 0.5, None)]),
        ("nowhere", []),
    ],
)
def test_listing_history_oldest_first(market, url, expected):
    assert lineage.listing_history(market, URL + url) == expected


def test_listing_history_leaves_out_rolled_back_imports(market):
    lineage.rollback_import(market, B_ID, actor="ops")
    assert [p["import_id"] for p in lineage.listing_history(market, URL + "u1")] == [A_ID, C_ID]


# ---------------------------------------------------------------------------------------------------------------------
# Rollback


def add_raw_and_quantized_rows(conn):
    """Raw listings in A and B; quantized rows of A, of B, and one written by C for a listing of B."""
    b_first = conn.execute(
        "SELECT id FROM scored_listings WHERE import_id = ? AND import_index = 1", [B_ID]
    ).fetchone()[0]
    a_first = conn.execute(
        "SELECT id FROM scored_listings WHERE import_id = ? AND import_index = 1", [A_ID]
    ).fetchone()[0]
    conn.executemany(
        "INSERT INTO listings (title, price, canonical_model, match_type, match_score, import_id, import_index) "
        "VALUES (?, ?, ?, 'exact', 1.0, ?, ?)",
        [("H100 PCIe", 20000.0, "H100_PCIE_80GB", A_ID, 1), ("L40S card", 8000.0, "L40S", B_ID, 1)],
    )
    conn.executemany(
        "INSERT INTO quantized_listings (scored_listing_id, model_7b, model_13b, model_70b, import_id, import_index) "
        "VALUES (?, 1, 1, 0, ?, ?)",
        [(a_first, A_ID, 1), (b_first, B_ID, 1), (b_first + 1, B_ID, 2), (b_first, C_ID, 1)],
    )


def counts_by_batch(conn, table):
    return dict(conn.execute(f"SELECT import_id, COUNT(*) FROM {table} GROUP BY import_id ORDER BY import_id"))


def test_rollback_removes_the_batch_and_keeps_its_record(market):
    add_raw_and_quantized_rows(market)
    others = {t: table_checksum(market, t, "import_id <> ?", [B_ID]) for t in ("scored_listings", "listings", "models")}
    a_quantized = table_checksum(market, "quantized_listings", "import_id = ?", [A_ID])
    other_batches = table_checksum(market, "import_batches", "import_id <> ?", [B_ID])
    result = lineage.rollback_import(market, B_ID, actor="ops", now="2025-05-05 12:00:00.000000")
    assert result == lineage.RollbackResult(
        import_id=B_ID,
        scored_listings=6,
        listings=1,
        quantized_listings=3,
        models=1,
        rolled_back_at="2025-05-05 12:00:00.000000",
        rolled_back_by="ops",
    )
    assert lineage.get_import(market, B_ID) == dict(
        BATCH_B, status="rolled_back", rolled_back_at="2025-05-05 12:00:00.000000", rolled_back_by="ops", models=[]
    )
    assert {t: counts_by_batch(market, t) for t in DATA_TABLES} == {
        "scored_listings": {A_ID: 6, C_ID: 2},
        "listings": {A_ID: 1},
        "quantized_listings": {A_ID: 1},  # C's row described a listing of B
        "models": {A_ID: 2},  # L40S, which B introduced, is gone
    }
    # Every row of the other batches is as it was, byte for byte (less C's quantized row that hung off B).
    assert {t: table_checksum(market, t, "import_id <> ?", [B_ID]) for t in others} == others
    assert table_checksum(market, "quantized_listings", "import_id = ?", [A_ID]) == a_quantized
    assert table_checksum(market, "import_batches", "import_id <> ?", [B_ID]) == other_batches
    assert market.execute("PRAGMA foreign_key_check").fetchall() == []


def test_rollback_keeps_models_that_other_batches_still_name(market):
    add_raw_and_quantized_rows(market)
    result = lineage.rollback_import(market, A_ID, actor="ops")
    assert (result.scored_listings, result.listings, result.quantized_listings, result.models) == (6, 1, 1, 0)
    # A introduced H100_PCIE_80GB and RTX_4090; B and C still list them, so their rows stay, naming A.
    assert market.execute("SELECT model, import_id FROM models ORDER BY model").fetchall() == [
        ("H100_PCIE_80GB", A_ID),
        ("L40S", B_ID),
        ("RTX_4090", A_ID),
    ]
    assert market.execute("PRAGMA foreign_key_check").fetchall() == []


def test_rollback_keeps_a_model_a_raw_listing_still_names(market):
    market.execute(
        "INSERT INTO listings (title, price, canonical_model, match_type, match_score, import_id, import_index) "
        "VALUES ('L40S', 8000.0, 'L40S', 'exact', 1.0, ?, 1)",
        [C_ID],
    )
    assert lineage.rollback_import(market, B_ID).models == 0
    assert market.execute("SELECT model FROM models ORDER BY model").fetchall() == [
        ("H100_PCIE_80GB",),
        ("L40S",),
        ("RTX_4090",),
    ]


def test_rollback_twice_is_refused_and_changes_nothing(market):
    lineage.rollback_import(market, B_ID, actor="ops", now="2025-05-05 12:00:00.000000")
    before = database_checksum(market)
    with pytest.raises(lineage.AlreadyRolledBack) as e:
        lineage.rollback_import(market, B_ID, actor="someone else")
    assert str(e.value) == f"Import {B_ID} was already rolled back at 2025-05-05 12:00:00.000000 by ops"
    assert database_checksum(market) == before


def test_rollback_of_an_unknown_import(market):
    before = database_checksum(market)
    with pytest.raises(lineage.UnknownImport) as e:
        lineage.rollback_import(market, "nope")
    assert str(e.value) == "No import with import_id 'nope'"
    assert database_checksum(market) == before


def test_rollback_stamps_the_time_in_utc(market):
    result = lineage.rollback_import(market, C_ID)
    record = lineage.get_import(market, C_ID)
    assert (record["status"], record["rolled_back_at"], record["rolled_back_by"]) == (
        "rolled_back",
        result.rolled_back_at,
        None,
    )
    stamp = datetime.datetime.strptime(result.rolled_back_at, "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc
    )
    assert abs(stamp - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(minutes=1)


# A trigger that fails the rollback part way: on the Nth row deleted from (or updated in) a table.
@pytest.mark.parametrize(
    "table, event, nth",
    [
        ("quantized_listings", "DELETE", 2),
        ("scored_listings", "DELETE", 1),
        ("scored_listings", "DELETE", 4),
        ("listings", "DELETE", 1),
        ("models", "DELETE", 1),
        ("import_batches", "UPDATE", 1),
    ],
)
def test_rollback_that_fails_part_way_leaves_everything_as_it_was(market, table, event, nth):
    add_raw_and_quantized_rows(market)
    market.execute("CREATE TEMP TABLE deletes (n INTEGER)")
    market.execute("INSERT INTO deletes VALUES (0)")
    market.execute(
        f"CREATE TEMP TRIGGER fail_part_way BEFORE {event} ON main.{table} BEGIN "
        f"UPDATE deletes SET n = n + 1; SELECT RAISE(ABORT, 'disk on fire') WHERE (SELECT n FROM deletes) >= {nth}; END"
    )
    before = database_checksum(market)
    with pytest.raises(sqlite3.IntegrityError) as e:
        lineage.rollback_import(market, B_ID, actor="ops")
    assert str(e.value) == "disk on fire"
    assert database_checksum(market) == before
    assert market.in_transaction is False


@pytest.mark.parametrize("foreign_keys", [0, 1])
def test_rollback_with_foreign_keys_enforced_or_not(market, foreign_keys):
    add_raw_and_quantized_rows(market)
    market.execute(f"PRAGMA foreign_keys = {foreign_keys}")
    assert lineage.rollback_import(market, B_ID).scored_listings == 6
    assert market.execute("PRAGMA foreign_keys").fetchone()[0] == foreign_keys
    assert market.execute("PRAGMA foreign_key_check").fetchall() == []


def test_rollback_inside_an_open_transaction_uses_a_savepoint(market):
    market.execute("BEGIN")
    lineage.rollback_import(market, C_ID)
    assert market.in_transaction is True
    market.execute("ROLLBACK")
    assert counts_by_batch(market, "scored_listings") == {A_ID: 6, B_ID: 6, C_ID: 2}


def test_diff_and_rollback_of_files_the_importer_wrote(conn, tmp_path):
    (first, second), (changes,) = market_snapshots(2, 300, seed=11, changed=0.2, removed=0.1, added=0.1)
    write_csv(first, tmp_path / "monday.csv")
    write_csv(second, tmp_path / "tuesday.csv")
    monday = import_csv(conn, tmp_path / "monday.csv", source_name="market").import_id
    tuesday = import_csv(conn, tmp_path / "tuesday.csv", source_name="market").import_id
    diff = lineage.diff_imports(conn, monday, tuesday, limit=None)
    assert {c.source_url: (c.old_price, c.new_price) for c in diff.changes if c.kind == "changed"} == changes.changed
    assert [c.source_url for c in diff.changes if c.kind == "added"] == changes.added
    assert [c.source_url for c in diff.changes if c.kind == "removed"] == changes.removed
    assert lineage.previous_import(conn, tuesday)["import_id"] == monday
    url = changes.added[0]
    assert [(p["import_id"], p["price"]) for p in lineage.listing_history(conn, url)] == [
        (tuesday, next(r["price"] for r in second if r["source_url"] == url))
    ]
    models_before = conn.execute("SELECT model, import_id FROM models ORDER BY model").fetchall()
    monday_rows = table_checksum(conn, "scored_listings", "import_id = ?", [monday])
    result = lineage.rollback_import(conn, tuesday, actor="ops")
    assert (result.scored_listings, result.models) == (len(second), 0)  # every model came in with monday's file
    assert conn.execute("SELECT model, import_id FROM models ORDER BY model").fetchall() == models_before
    assert table_checksum(conn, "scored_listings", "import_id = ?", [monday]) == monday_rows
    assert counts_by_batch(conn, "scored_listings") == {monday: len(first)}


def schema(conn):
    return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()


@pytest.fixture
def big_batch(market, monkeypatch):
    """Import D, which holds more than half of scored_listings, with the index rebuild enabled at any size."""
    monkeypatch.setattr(lineage, "REBUILD_INDEXES_MIN_ROWS", 10)
    rows = [row("RTX_3090", 700.0 + i, 0.5, f"d{i}") for i in range(20)]
    insert_snapshot(market, rows, "dddddddd-0000-4000-8000-000000000004", "market", "2025-05-04 10:00:00", "d.csv")
    return "dddddddd-0000-4000-8000-000000000004"


REBUILT = [
    'DROP INDEX "idx_scored_listings_canonical_model"',
    'DROP INDEX "idx_scored_listings_condition"',
    'DROP INDEX "idx_scored_listings_price"',
    'DROP INDEX "idx_scored_listings_region"',
    'DROP INDEX "idx_scored_listings_score"',
    'DROP INDEX "idx_scored_listings_seen_at"',
    'DROP INDEX "idx_scored_listings_source_url"',
    "CREATE INDEX idx_scored_listings_canonical_model ON scored_listings(canonical_model)",
    "CREATE INDEX idx_scored_listings_condition ON scored_listings(condition)",
    "CREATE INDEX idx_scored_listings_price ON scored_listings(price)",
    "CREATE INDEX idx_scored_listings_region ON scored_listings(region)",
    "CREATE INDEX idx_scored_listings_score ON scored_listings(score)",
    "CREATE INDEX idx_scored_listings_seen_at ON scored_listings(seen_at)",
    "CREATE INDEX idx_scored_listings_source_url ON scored_listings(source_url /* listing history */)",
]


@pytest.mark.parametrize("import_id, rebuilt", [("dddddddd-0000-4000-8000-000000000004", REBUILT), (B_ID, [])])
def test_rollback_of_most_of_the_table_rebuilds_the_indexes_instead(market, big_batch, import_id, rebuilt):
    before_schema = schema(market)
    others = {t: table_checksum(market, t, "import_id <> ?", [import_id]) for t in DATA_TABLES}
    statements = []
    market.set_trace_callback(statements.append)
    lineage.rollback_import(market, import_id)
    market.set_trace_callback(None)
    assert [s for s in statements if s.startswith(("DROP INDEX", "CREATE INDEX"))] == rebuilt
    assert schema(market) == before_schema
    assert market.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert {t: table_checksum(market, t, "import_id <> ?", [import_id]) for t in DATA_TABLES} == others


@pytest.mark.parametrize("table, nth", [("scored_listings", 15), ("models", 1), ("import_batches", 1)])
def test_rollback_that_fails_around_the_rebuild_leaves_everything_as_it_was(market, big_batch, table, nth):
    event = "UPDATE" if table == "import_batches" else "DELETE"
    market.execute("CREATE TEMP TABLE deletes (n INTEGER)")
    market.execute("INSERT INTO deletes VALUES (0)")
    market.execute(
        f"CREATE TEMP TRIGGER fail_part_way BEFORE {event} ON main.{table} BEGIN "
        f"UPDATE deletes SET n = n + 1; SELECT RAISE(ABORT, 'disk on fire') WHERE (SELECT n FROM deletes) >= {nth}; END"
    )
    before, before_schema = database_checksum(market), schema(market)
    with pytest.raises(sqlite3.IntegrityError):
        lineage.rollback_import(market, big_batch)
    assert (database_checksum(market), schema(market)) == (before, before_schema)
    assert market.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


WHOLE_ID = "eeeeeeee-0000-4000-8000-000000000005"


@pytest.fixture
def whole_table(conn, monkeypatch):
    """One import that is every row of scored_listings (a first load), with the large-batch paths enabled at any
    size."""
    monkeypatch.setattr(lineage, "REBUILD_INDEXES_MIN_ROWS", 10)
    rows = [row("RTX_3090", 700.0 + i, 0.5, f"w{i}") for i in range(20)]
    insert_snapshot(conn, rows, WHOLE_ID, "market", "2025-05-04 10:00:00", "w.csv")
    return conn


def test_rollback_of_the_whole_table_deletes_it_without_a_where_clause(whole_table):
    conn, before_schema = whole_table, schema(whole_table)
    statements = []
    conn.set_trace_callback(statements.append)
    result = lineage.rollback_import(conn, WHOLE_ID)
    conn.set_trace_callback(None)
    assert [s for s in statements if s.startswith("DELETE FROM scored_listings")] == ["DELETE FROM scored_listings"]
    assert not [s for s in statements if s.startswith(("DROP INDEX", "CREATE INDEX"))]
    assert result.scored_listings == 20
    assert conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone() == (0,)
    assert conn.execute("SELECT status FROM import_batches WHERE import_id = ?", [WHOLE_ID]).fetchone() == (
        "rolled_back",
    )
    assert schema(conn) == before_schema
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_rollback_of_the_whole_table_fires_its_triggers_and_fails_whole(whole_table):
    """A trigger on the table makes SQLite delete row by row: it fires for each row, and an error part way
    through leaves everything as it was."""
    conn = whole_table
    conn.execute("CREATE TEMP TABLE deletes (n INTEGER)")
    conn.execute("INSERT INTO deletes VALUES (0)")
    conn.execute(
        "CREATE TEMP TRIGGER count_deletes BEFORE DELETE ON main.scored_listings BEGIN "
        "UPDATE deletes SET n = n + 1; SELECT RAISE(ABORT, 'disk on fire') WHERE (SELECT n FROM deletes) >= 15; END"
    )
    before, before_schema = database_checksum(conn), schema(conn)
    with pytest.raises(sqlite3.IntegrityError):
        lineage.rollback_import(conn, WHOLE_ID)
    assert (database_checksum(conn), schema(conn)) == (before, before_schema)
    conn.execute("DROP TRIGGER temp.count_deletes")
    conn.execute(
        "CREATE TEMP TRIGGER count_deletes BEFORE DELETE ON main.scored_listings BEGIN "
        "UPDATE deletes SET n = n + 1; END"
    )
    conn.execute("UPDATE deletes SET n = 0")
    assert lineage.rollback_import(conn, WHOLE_ID).scored_listings == 20
    assert conn.execute("SELECT n FROM deletes").fetchone() == (20,)
    assert conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone() == (0,)


# Per-model summaries: written by the import, recomputed from rows by summarise_import, removed by rollback

SAMPLE = Path(__file__).parent.parent / "sample" / "scored_sample.csv"


def _rounded(models):
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in m.items()} for m in models]


def test_an_import_keeps_the_summary_its_rows_give(conn, tmp_path):
    rows = list(iter_market(600, seed=3))
    write_csv(rows, tmp_path / "market.csv")
    import_id = import_csv(conn, tmp_path / "market.csv").import_id
    by_model = {}
    for model, price, score in conn.execute("SELECT canonical_model, price, score FROM scored_listings"):
        by_model.setdefault(model, []).append((price, score))
    expected = [
        {
            "canonical_model": model,
            "row_count": len(values),
            "min_price": min(p for p, _ in values),
            "median_price": statistics.median(p for p, _ in values),
            "max_price": max(p for p, _ in values),
            "mean_score": statistics.fmean(s for _, s in values),
        }
        for model, values in sorted(by_model.items())
    ]
    assert _rounded(lineage.model_summary(conn, import_id)) == _rounded(expected)
    assert (len(expected) > 3, sum(m["row_count"] for m in expected)) == (True, len(rows))
    # summarise_import recomputes the same from the rows
    conn.execute("DELETE FROM import_model_stats")
    lineage.summarise_import(conn, import_id)
    assert _rounded(lineage.model_summary(conn, import_id)) == _rounded(expected)


def test_summary_of_the_sample_by_hand(conn):
    import_id = import_csv(conn, SAMPLE).import_id
    h100 = [m for m in lineage.model_summary(conn, import_id) if m["canonical_model"] == "H100_SXM5_80GB"]
    prices = sorted(
        p for (p,) in conn.execute("SELECT price FROM scored_listings WHERE canonical_model = 'H100_SXM5_80GB'")
    )
    scores = [s for (s,) in conn.execute("SELECT score FROM scored_listings WHERE canonical_model = 'H100_SXM5_80GB'")]
    assert _rounded(h100) == _rounded(
        [
            {
                "canonical_model": "H100_SXM5_80GB",
                "row_count": 5,
                "min_price": prices[0],
                "median_price": prices[2],
                "max_price": prices[4],
                "mean_score": sum(scores) / 5,
            }
        ]
    )


def test_rollback_removes_the_batch_summary(conn):
    import_id = import_csv(conn, SAMPLE).import_id
    lineage.rollback_import(conn, import_id, actor="ops")
    assert lineage.get_import(conn, import_id)["models"] == []
    assert conn.execute("SELECT COUNT(*) FROM import_model_stats").fetchone()[0] == 0


# ---------------------------------------------------------------------------------------------------------------------
# Import ids by prefix, what a rollback would remove, notes on a diff


@pytest.mark.parametrize(
    "text, expected",
    [
        (A_ID, A_ID),
        (A_ID[:8], A_ID),
        (B_ID[:20], B_ID),
        (" " + C_ID.upper()[:9] + " ", C_ID),  # pasted with spaces, in capitals
    ],
)
def test_resolve_import_id(market, text, expected):
    assert lineage.resolve_import_id(market, text) == expected


@pytest.mark.parametrize(
    "text, error",
    [
        ("aaaaaaa", "No import with import_id 'aaaaaaa'; give the whole id or at least 8 of its first characters"),
        ("", "No import with import_id ''; give the whole id or at least 8 of its first characters"),
        ("dddddddd", "No import with import_id 'dddddddd'"),
        ("aaaaaaaa%", "No import with import_id 'aaaaaaaa%'"),
    ],
)
def test_resolve_import_id_refuses(market, text, error):
    with pytest.raises(lineage.UnknownImport) as e:
        lineage.resolve_import_id(market, text)
    assert str(e.value) == error


def test_an_ambiguous_prefix_names_the_matches_newest_first(market):
    others = [f"aaaaaaaa-1111-4000-8000-{n:012d}" for n in range(12)]
    for n, import_id in enumerate(others):
        insert_snapshot(market, [], import_id, imported_at=f"2025-06-{n + 1:02d} 00:00:00")
    with pytest.raises(lineage.AmbiguousImport) as e:
        lineage.resolve_import_id(market, "aaaaaaaa")
    newest = list(reversed(others))[:10]
    assert (e.value.matches, e.value.count) == (newest, 13)
    assert str(e.value) == (
        f"Import id prefix 'aaaaaaaa' is ambiguous: it matches 13 imports: {', '.join(newest)} (and 3 more); "
        "give more characters"
    )
    assert lineage.resolve_import_id(market, "aaaaaaaa-0") == A_ID


@pytest.mark.parametrize("import_id", [A_ID, B_ID, C_ID])
def test_plan_rollback_counts_what_the_rollback_removes(market, import_id):
    add_raw_and_quantized_rows(market)
    before = database_checksum(market)
    plan = lineage.plan_rollback(market, import_id)
    assert database_checksum(market) == before
    result = lineage.rollback_import(market, import_id, actor="ops")
    assert (plan.scored_listings, plan.listings, plan.quantized_listings, plan.models) == (
        result.scored_listings,
        result.listings,
        result.quantized_listings,
        result.models,
    )
    assert plan.batch["import_id"] == import_id
    with pytest.raises(lineage.AlreadyRolledBack):
        lineage.plan_rollback(market, import_id)


def test_diff_notes(market):
    assert lineage.diff_imports(market, A_ID, B_ID).notes == []
    assert lineage.diff_imports(market, C_ID, C_ID).notes == ["A and B are the same import."]
    market.execute("UPDATE import_batches SET sha256 = 'abc' WHERE import_id IN (?, ?)", [A_ID, C_ID])
    assert lineage.diff_imports(market, A_ID, C_ID).notes == [
        "A and B have the same content (SHA-256 abc): the same file imported twice."
    ]
    lineage.rollback_import(market, B_ID, actor="ops", now="2025-06-01 00:00:00.000000")
    diff = lineage.diff_imports(market, A_ID, B_ID)
    assert diff.notes == [
        f"B ({B_ID}) was rolled back at 2025-06-01 00:00:00.000000: its rows are gone, so every listing of the "
        "other side counts as removed."
    ]
    assert (diff.removed, diff.added, diff.changed) == (4, 0, 0)
    assert lineage.diff_imports(market, B_ID, A_ID).to_dict()["notes"] == [
        f"A ({B_ID}) was rolled back at 2025-06-01 00:00:00.000000: its rows are gone, so every listing of the "
        "other side counts as added."
    ]


def test_list_imports_by_source(market):
    assert [b["import_id"] for b in lineage.list_imports(market, source="market")] == [B_ID, A_ID]
    assert [b["import_id"] for b in lineage.list_imports(market)] == [C_ID, B_ID, A_ID]
    assert (lineage.count_imports(market, source="market"), lineage.count_imports(market)) == (2, 3)
    assert lineage.list_imports(market, source="nobody") == []
