import json
import sqlite3
import subprocess
import sys
from importlib import resources

import pytest

from datasette_glyph.engine import lineage, migrator
from datasette_glyph.engine.sqlite import connect

from . import legacy_store
from .conftest import build_legacy_database
from .locks import lock_held_elsewhere, wait_until_waiting_for_a_lock

# The migrations this package ships, in order, and the newest: the version a fully migrated database is at.
IDS = [m.id for m in migrator.load_migrations()]
LATEST = IDS[-1]

LEGACY = "dbaea5cd-0a4d-52ca-88af-4737290a1213"  # the batch 0002 gives rows that named none
RECOVERED = "Batch named by rows but missing from import_batches"
DATA_TABLES = ["models", "listings", "scored_listings", "quantized_listings"]
NEW_BATCH_COLUMNS = [
    "filename",
    "sha256",
    "bytes",
    "started_at",
    "finished_at",
    "actor",
    "error",
    "rolled_back_at",
    "rolled_back_by",
]

# The old store's rows. Rows with no batch, rows naming a recorded batch (batch-a) and rows naming batches
# that import_batches never recorded (batch-x in three tables, batch-y only in listings) are interleaved
# in rowid order, so numbering within each batch is checked for real.
LEGACY_ROWS = {
    "import_batches": [
        # id, import_id, imported_at, source, record_count, description
        (1, "batch-a", "2025-01-02 03:04:05", "broker-x", 3, "nightly run"),
        (2, "batch-b", "2025-01-03 00:00:00", None, 0, None),
    ],
    "models": [
        # id, model, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width,
        # pcie_generation, listing_count, min_price, median_price, max_price, avg_price, created_at, updated_at,
        # import_id
        (1, "H100_PCIE_80GB", 80, 350, 7, 1, "Hopper", 14592, 2, 5, 3, 24000.0, 25000.0, 26000.0, 25000.0,
         "2024-11-01 00:00:00", "2024-11-01 00:00:00", None),
        (2, "RTX_4090", 24, 450, 0, 0, "Ada Lovelace", 16384, 3, 4, 3, 1700.0, 1750.0, 1799.99, 1749.99,
         "2025-01-02 03:04:05", "2025-01-02 03:04:05", "batch-a"),
        (3, "A100_40GB_PCIE", 40, 250, 7, 1, "Ampere", 6912, 2, 4, 1, 7000.0, 7000.0, 7000.0, 7000.0,
         "2024-11-02 00:00:00", "2024-11-03 00:00:00", None),
    ],
    "listings": [
        # id, title, price, canonical_model, match_type, match_score, created_at, updated_at, import_id
        (1, "NVIDIA H100 80GB PCIe", 25000.0, "H100_PCIE_80GB", "exact", 1.0, "2024-11-04 00:00:00",
         "2024-11-04 00:00:00", None),
        (2, "RTX 4090 Founders Edition", 1800.0, "RTX_4090", "fuzzy", 0.92, "2025-01-02 03:04:05",
         "2025-01-02 03:04:05", "batch-a"),
        (3, "A100 40GB", 6900.0, "A100_40GB_PCIE", "exact", 1.0, "2024-12-25 00:00:00", "2024-12-25 00:00:00",
         "batch-y"),
        (4, "H100 PCIe, used", 24000.0, "H100_PCIE_80GB", "fuzzy", 0.8, "2024-11-07 00:00:00",
         "2024-11-08 00:00:00", None),
    ],
    "scored_listings": [
        # id, canonical_model, price, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores,
        # slot_width, pcie_generation, form_factor, notes, warnings, score, condition, quantity, min_order_qty,
        # seller, region, source_url, source_type, seen_at, created_at, updated_at, import_id
        (1, "H100_PCIE_80GB", 25000.0, 80, 350, 7, 1, "Hopper", 14592, 2, 5, "PCIe", None, None, 0.61, "new", 1, 1,
         "Apex Compute", "US", "https://example.com/listing/1", "retailer", "2024-11-05T00:00:00Z",
         "2024-11-05 00:00:00", "2024-11-05 00:00:00", None),
        (2, "RTX_4090", 1799.99, 24, 450, 0, 0, "Ada Lovelace", 16384, 3, 4, "PCIe", "boxed", None, 0.72, "used", 4,
         1, 'The "GPU" Barn', "EU", "https://example.com/listing/2", "marketplace", "2025-01-01T10:00:00Z",
         "2025-01-02 03:04:05", "2025-01-02 03:04:05", "batch-a"),
        (3, "H100_PCIE_80GB", 24500.0, 80, 350, 7, 1, "Hopper", 14592, 2, 5, "PCIe", None, "price below market",
         55.5, "refurbished", 2, 2, "Smith, Lee & Co", "APAC", "https://example.com/listing/3", "broker",
         "2024-12-19T08:00:00Z", "2024-12-20 08:00:00", "2024-12-20 08:00:00", "batch-x"),
        (4, "A100_40GB_PCIE", 7000.0, 40, 250, 7, 1, "Ampere", 6912, 2, 4, "Standard", None, None, 0.4, None, None,
         None, None, None, None, None, None, "2024-11-06 00:00:00", "2024-11-06 00:00:00", None),
        (5, "RTX_4090", 1700.0, 24, 450, 0, 0, "Ada Lovelace", 16384, 3, 4, "PCIe", None, None, 0.8, "new", 10, 5,
         "Harbor Tech", "US", "https://example.com/listing/5", "retailer", "2025-01-01T11:00:00Z",
         "2025-01-02 03:04:06", "2025-01-02 03:04:06", "batch-a"),
        (6, "H100_PCIE_80GB", 26000.0, 80, 350, 7, 1, "Hopper", 14592, 2, 5, "PCIe", None, None, 48.25, "new", 1, 1,
         "Cobalt Systems", "UK", "https://example.com/listing/6", "broker", "2024-12-19T09:00:00Z",
         "2024-12-20 09:00:00", "2024-12-20 09:00:00", "batch-x"),
        (7, "RTX_4090", 1750.0, 24, 450, 0, 0, "Ada Lovelace", 16384, 3, 4, "PCIe", None, None, 0.75, "used", 1, 1,
         "Apex Compute", "CA", "https://example.com/listing/7", "marketplace", "2025-01-01T12:00:00Z",
         "2025-01-02 03:04:07", "2025-01-02 03:04:07", "batch-a"),
    ],
    "quantized_listings": [
        # id, scored_listing_id, model_7b, model_13b, model_70b, created_at, updated_at, import_id
        (1, 1, 8, 4, 1, "2024-11-05 00:00:00", "2024-11-05 00:00:00", None),
        (2, 3, 8, 4, 1, "2024-12-20 08:00:00", "2024-12-20 08:00:00", "batch-x"),
        (3, 5, 2, 1, 0, "2025-01-02 03:04:06", "2025-01-02 03:04:06", "batch-a"),
    ],
}  # fmt: skip
INSERT_ORDER = ["import_batches", "models", "listings", "scored_listings", "quantized_listings"]


def inherited_columns(table):
    """The table's columns in the old store's pre-lineage schema, in order."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(legacy_store.PRE_LINEAGE)
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def fill_legacy(conn):
    """Write LEGACY_ROWS; the rows naming batches that import_batches does not hold (deleted by hand) are
    dirt that foreign key enforcement would refuse, so they are written with it off, as they are found."""
    for table in INSERT_ORDER:
        rows = LEGACY_ROWS[table]
        marks = ", ".join("?" for _ in rows[0])
        conn.executemany(f"INSERT INTO {table} ({', '.join(inherited_columns(table))}) VALUES ({marks})", rows)


def legacy_database(path):
    conn = build_legacy_database(path)
    fill_legacy(conn)
    return conn


def snapshot(conn):
    """The whole database but glyph's bookkeeping: schema entries, and every table's rows in rowid order."""
    dump = legacy_store.dump(conn)
    return {"schema": dump["objects"], "rows": dump["rows"]}


def version(conn):
    return migrator.current_version(conn)


def migration_files(tmp_path, changes=None):
    """Copies of the packaged migration files, with ``changes`` (file name -> new text, or None to remove)."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for f in resources.files("datasette_glyph.migrations").iterdir():
        if f.name.endswith(".sql") or (f.name.endswith(".py") and f.name[:1].isdigit()):
            (folder / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    for name, text in (changes or {}).items():
        if text is None:
            (folder / name).unlink()
        else:
            (folder / name).write_text(text, encoding="utf-8")
    return sorted(folder.iterdir())


def package_sql(name):
    return resources.files("datasette_glyph.migrations").joinpath(name).read_text(encoding="utf-8")


# Finding and reading migrations


def test_migrations_are_numbered_pairs_described_by_their_first_comment():
    assert [(m.label, m.description) for m in migrator.load_migrations()] == [
        (
            "0001_inherited_schema",
            "Inherited schema: the old store's pre-lineage release (batches, models, raw, scored and quantized "
            "listings)",
        ),
        (
            "0002_import_lineage",
            "Import lineage: every row carries import_id and import_index; import_batches records how each "
            "batch arrived",
        ),
        ("0003_scored_listings_title", "Keep the listing title that scored CSV files carry"),
        (
            "0004_import_model_stats",
            "Per-model price summary of every batch, kept by the import, so batch pages and diffs read a few rows",
        ),
        (
            "0005_scored_listings_condition_index",
            "Index scored_listings.condition, so its facet on the table page does not scan every row",
        ),
        (
            "0006_import_deltas",
            "Keep what changed between consecutive imports of a source, so diffs and listing histories read a few rows",
        ),
        ("0007_kept_files", "Record the original file each import read, kept compressed beside the database"),
        (
            "0008_import_idempotency_keys",
            "Remember the Idempotency-Key an import was sent with, so that a retried request answers the first result",
        ),
        (
            "0009_scored_listings_price_index",
            "Index scored_listings.price, so that a price range alone is answered from the index, not by scanning",
        ),
        (
            "0010_files_database",
            "Keep the original files in a files database beside the store, owned by it, instead of a folder of .gz "
            "files",
        ),
    ]


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"9001_extra.up.sql": "-- no pair\nSELECT 1;\n"}, "Migration 9001_extra has no down script"),
        (
            {"0005_scored_listings_condition_index.up.sql": None},
            "Migration 0005_scored_listings_condition_index has no up script",
        ),
        (
            {"0003_scored_listings_title.up.sql": "SELECT 1;"},
            "Migration 0003_scored_listings_title is both a Python file and SQL scripts",
        ),
        (
            {"9001_extra.py": '"""Extra"""\ndef up(conn):\n    pass\n'},
            "Migration 9001_extra.py has no down(conn) function",
        ),
        ({"0003_Title.up.sql": "SELECT 1;"}, "Unexpected file in migrations: 0003_Title.up.sql"),
        ({"README.sql": "SELECT 1;"}, "Unexpected file in migrations: README.sql"),
        (
            {"0004_other.up.sql": "-- other\nSELECT 1;\n", "0004_other.down.sql": "SELECT 1;\n"},
            "Two migrations share a number: 0004",
        ),
    ],
)
def test_load_migrations_refuses_a_broken_set(tmp_path, changes, message):
    with pytest.raises(migrator.MigrationError) as e:
        migrator.load_migrations(files=migration_files(tmp_path, changes))
    assert str(e.value) == message


@pytest.mark.parametrize(
    "sql,expected",
    [
        ("-- description\nCREATE TABLE a (id);\n\nINSERT INTO a VALUES (1);\n", [(2, "CREATE TABLE a (id);"),
                                                                              (4, "INSERT INTO a VALUES (1);")]),
        (
            "CREATE TRIGGER t AFTER UPDATE ON a\nBEGIN\n    UPDATE a SET id = 1;\n    UPDATE a SET id = 2;\nEND;\n"
            "-- the end\n",
            [(1, "CREATE TRIGGER t AFTER UPDATE ON a\nBEGIN\n    UPDATE a SET id = 1;\n"
                 "    UPDATE a SET id = 2;\nEND;")],
        ),
        ("CREATE TABLE a (\n    id, -- the key\n    b\n);", [(1, "CREATE TABLE a (\n    id, -- the key\n    b\n);")]),
        ("-- only a comment\n\n", []),
    ],
)  # fmt: skip
def test_numbered_statements(sql, expected):
    assert migrator.numbered_statements(sql) == expected
    assert migrator.split_statements(sql) == [statement for _, statement in expected]


def test_incomplete_statement_is_an_error():
    with pytest.raises(migrator.MigrationError) as e:
        migrator.split_statements("SELECT 1;\n-- next\nCREATE TABLE a (\n    id\n")
    assert str(e.value) == "Incomplete statement at end of script (line 3): CREATE TABLE a (\n    id"


def test_checksum_ignores_line_endings_only():
    first = migrator.load_migrations()[0]
    crlf = migrator.Migration(first.id, first.name, first.description, first.up_sql.replace("\n", "\r\n"), "")
    changed = migrator.Migration(first.id, first.name, first.description, first.up_sql + "\n", "")
    assert (crlf.checksum == first.checksum, changed.checksum == first.checksum) == (True, False)


# The old store's database


def test_legacy_database_is_recognised_at_0001_and_adopted_by_the_first_run(tmp_path):
    conn = legacy_database(tmp_path / "legacy.db")
    assert (migrator.is_legacy(conn), migrator.is_managed(conn), version(conn)) == (True, False, "0001")
    assert [(s.id, s.applied_at) for s in migrator.status(conn)] == [
        ("0001", "by the old store"),
        *[(i, None) for i in IDS[1:]],
    ]
    steps = migrator.migrate(conn)
    assert [(s.migration.id, s.direction) for s in steps] == [(i, "up") for i in IDS[1:]]
    assert [r[:2] for r in conn.execute("SELECT id, name FROM glyph_migrations ORDER BY id")] == [
        ("0001", "inherited_schema"),
        ("0002", "import_lineage"),
        ("0003", "scored_listings_title"),
        ("0004", "import_model_stats"),
        *[(m.id, m.name) for m in migrator.load_migrations()[4:]],
    ]
    assert (migrator.is_legacy(conn), migrator.is_managed(conn), version(conn)) == (False, True, LATEST)


def test_legacy_database_migrated_forward_keeps_and_tags_every_row(tmp_path):
    conn = legacy_database(tmp_path / "legacy.db")
    migrator.migrate(conn)
    batches = conn.execute(
        "SELECT id, import_id, imported_at, source, record_count, description, status, label, "
        f"{', '.join(NEW_BATCH_COLUMNS)} FROM import_batches ORDER BY id"
    ).fetchall()
    nothing = (None,) * len(NEW_BATCH_COLUMNS)
    assert batches == [
        (1, "batch-a", "2025-01-02 03:04:05", "broker-x", 3, "nightly run", "complete",
         "nightly run · 2025-01-02 03:04:05") + nothing,
        (2, "batch-b", "2025-01-03 00:00:00", None, 0, None, "complete", "batch-b · 2025-01-03 00:00:00") + nothing,
        (3, "batch-x", "2024-12-20 08:00:00", None, 2, RECOVERED, "recovered",
         f"{RECOVERED} · 2024-12-20 08:00:00") + nothing,
        (4, "batch-y", "2024-12-25 00:00:00", None, 0, RECOVERED, "recovered",
         f"{RECOVERED} · 2024-12-25 00:00:00") + nothing,
        (5, LEGACY, "2024-11-01 00:00:00", None, 2, "Rows stored before import lineage", "legacy",
         "Rows stored before import lineage · 2024-11-01 00:00:00") + nothing,
    ]  # fmt: skip
    lineage = {
        table: conn.execute(f"SELECT id, import_id, import_index FROM {table} ORDER BY id").fetchall()
        for table in DATA_TABLES
    }
    assert lineage == {
        "models": [(1, LEGACY, 1), (2, "batch-a", 1), (3, LEGACY, 2)],
        "listings": [(1, LEGACY, 1), (2, "batch-a", 1), (3, "batch-y", 1), (4, LEGACY, 2)],
        "scored_listings": [
            (1, LEGACY, 1),
            (2, "batch-a", 1),
            (3, "batch-x", 1),
            (4, LEGACY, 2),
            (5, "batch-a", 2),
            (6, "batch-x", 2),
            (7, "batch-a", 3),
        ],
        "quantized_listings": [(1, LEGACY, 1), (2, "batch-x", 1), (3, "batch-a", 1)],
    }
    # Every other value as the old store wrote it; import_id only where a row named no batch changes.
    for table in DATA_TABLES:
        columns = inherited_columns(table)
        kept = conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id").fetchall()
        assert kept == [row[:-1] + (row[-1] or LEGACY,) for row in LEGACY_ROWS[table]]
    assert conn.execute("SELECT title FROM scored_listings").fetchall() == [(None,)] * 7
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_legacy_database_with_no_unbatched_rows_gets_no_legacy_batch(tmp_path):
    conn = build_legacy_database(tmp_path / "legacy.db")
    conn.execute("INSERT INTO import_batches (import_id, imported_at) VALUES ('batch-a', '2025-01-01 00:00:00')")
    conn.execute("INSERT INTO models (model, import_id) VALUES ('L40S', 'batch-a')")
    migrator.migrate(conn)
    assert conn.execute("SELECT import_id, status FROM import_batches").fetchall() == [("batch-a", "complete")]
    assert conn.execute("SELECT model, import_id, import_index FROM models").fetchall() == [("L40S", "batch-a", 1)]


def test_foreign_keys_the_old_store_already_broke_do_not_block_migration(tmp_path):
    conn = legacy_database(tmp_path / "legacy.db")
    conn.execute(
        "INSERT INTO scored_listings (id, canonical_model, price, vram_gb, tdp_watts, score, created_at) "
        "VALUES (8, 'GHOST_MODEL', 1.0, 8, 75, 0.1, '2024-11-09 00:00:00')"
    )
    before = snapshot(conn)
    migrator.migrate(conn)
    assert conn.execute(
        "SELECT id, canonical_model, import_id, import_index FROM scored_listings WHERE id = 8"
    ).fetchall() == [(8, "GHOST_MODEL", LEGACY, 3)]
    migrator.migrate(conn, target="0001")
    assert snapshot(conn) == before


# Round trips


def test_up_down_and_up_again_from_the_legacy_database(tmp_path):
    conn = legacy_database(tmp_path / "legacy.db")
    legacy = snapshot(conn)
    migrator.migrate(conn)
    newest = snapshot(conn)
    migrator.migrate(conn, target="0001")
    assert snapshot(conn) == legacy
    migrator.migrate(conn)
    assert snapshot(conn) == newest


@pytest.mark.parametrize("migration_id", IDS[1:])
def test_each_migration_round_trips_on_a_database_holding_data(tmp_path, migration_id):
    conn = legacy_database(tmp_path / "legacy.db")
    before = {"0001": snapshot(conn)}
    for target in IDS[1:]:
        migrator.migrate(conn, target=target)
        before[target] = snapshot(conn)
    migrator.migrate(conn, target=migration_id)
    assert [(s.migration.id, s.direction) for s in migrator.migrate(conn, rollback=1)] == [(migration_id, "down")]
    assert snapshot(conn) == before[IDS[IDS.index(migration_id) - 1]]
    assert [(s.migration.id, s.direction) for s in migrator.migrate(conn, target=migration_id)] == [
        (migration_id, "up")
    ]
    assert snapshot(conn) == before[migration_id]


def test_0001_round_trips_on_an_empty_database(tmp_path):
    conn = connect(tmp_path / "new.db")
    migrator.migrate(conn, target="0001")
    inherited = snapshot(conn)
    migrator.migrate(conn, target="0")
    # SQLite never drops sqlite_sequence once an AUTOINCREMENT table has made it; it is left empty.
    assert (snapshot(conn), version(conn)) == (
        {
            "schema": [("table", "sqlite_sequence", "sqlite_sequence", "CREATE TABLE sqlite_sequence(name,seq)")],
            "rows": {"sqlite_sequence": []},
        },
        None,
    )
    migrator.migrate(conn, target="0001")
    # schema_version's seed row is stamped with the time it is written: the rest is identical.
    assert without_applied_at(snapshot(conn)) == without_applied_at(inherited)


def without_applied_at(snap):
    rows = dict(snap["rows"])
    rows["schema_version"] = [
        (rowid, id_, version, description) for rowid, id_, version, _, description in rows["schema_version"]
    ]
    return {"schema": snap["schema"], "rows": rows}


def test_rows_written_after_lineage_keep_their_values_down_and_up(tmp_path):
    conn = legacy_database(tmp_path / "legacy.db")
    migrator.migrate(conn)
    conn.execute(
        "INSERT INTO import_batches (id, import_id, imported_at, source, record_count, description, filename, "
        "sha256, bytes, started_at, finished_at, status, actor) VALUES (9, 'batch-new', '2025-02-01 00:00:00', "
        "'retailer-z', 2, NULL, 'scored.csv', 'ab12', 2048, '2025-02-01 00:00:00', '2025-02-01 00:00:01', "
        "'complete', 'alice')"
    )
    conn.executemany(
        "INSERT INTO scored_listings (id, canonical_model, price, vram_gb, tdp_watts, score, created_at, "
        "updated_at, import_id, import_index, title) VALUES (?, 'RTX_4090', ?, 24, 450, 0.9, "
        "'2025-02-01 00:00:00', '2025-02-01 00:00:00', 'batch-new', ?, ?)",
        [(20, 1650.0, 1, "RTX 4090 - New"), (21, 1600.0, 2, "RTX 4090 - Used")],
    )
    lineage.summarise_import(conn, "batch-new")  # as the importer does in the same transaction
    with_new_rows = snapshot(conn)
    migrator.migrate(conn, target="0001")
    assert conn.execute("SELECT * FROM import_batches WHERE import_id = 'batch-new'").fetchall() == [
        (9, "batch-new", "2025-02-01 00:00:00", "retailer-z", 2, None)
    ]
    assert conn.execute("SELECT id, price, import_id FROM scored_listings WHERE id >= 20").fetchall() == [
        (20, 1650.0, "batch-new"),
        (21, 1600.0, "batch-new"),
    ]
    migrator.migrate(conn)
    # What the old schema cannot hold (the batch's trace columns, the titles) was kept aside and is back.
    assert snapshot(conn) == with_new_rows


@pytest.mark.parametrize("batch", [LEGACY, "batch-x"])
def test_rolling_back_a_batch_0002_made_does_not_block_going_down_and_up(tmp_path, batch):
    conn = legacy_database(tmp_path / "legacy.db")
    migrator.migrate(conn)
    lineage.rollback_import(conn, batch, actor="alice", now="2025-03-01 00:00:00")
    kept_models = conn.execute("SELECT id, import_id, import_index FROM models ORDER BY id").fetchall()
    migrator.migrate(conn, target="0001")
    # The records 0002 made go, rolled back or not (kept aside for the next up), and rows lose the legacy id
    assert [r[1] for r in conn.execute("SELECT id, import_id FROM import_batches ORDER BY id")] == [
        "batch-a",
        "batch-b",
    ]
    migrator.migrate(conn)
    assert conn.execute("SELECT id, import_id, import_index FROM models ORDER BY id").fetchall() == kept_models
    # The rolled-back record comes back as it was, with who rolled it back and when.
    assert conn.execute("SELECT import_id, status, rolled_back_by FROM import_batches ORDER BY id").fetchall() == [
        ("batch-a", "complete", None),
        ("batch-b", "complete", None),
        ("batch-x", "rolled_back" if batch == "batch-x" else "recovered", "alice" if batch == "batch-x" else None),
        ("batch-y", "recovered", None),
        (LEGACY, "rolled_back" if batch == LEGACY else "legacy", "alice" if batch == LEGACY else None),
    ]


@pytest.mark.parametrize(
    "rows,expected",
    [
        # each batch's rows are consecutive rowids (as imports append them), with gaps between batches
        ([(10, "batch-a"), (11, "batch-a"), (12, "batch-a"), (20, None), (21, None), (30, "batch-b")],
         [(10, "batch-a", 1), (11, "batch-a", 2), (12, "batch-a", 3), (20, LEGACY, 1), (21, LEGACY, 2),
          (30, "batch-b", 1)]),
        # a row deleted inside batch-a, and batch-b's rows between two of batch-a's
        ([(10, "batch-a"), (12, "batch-a"), (13, "batch-b"), (14, "batch-a"), (15, "batch-b")],
         [(10, "batch-a", 1), (12, "batch-a", 2), (13, "batch-b", 1), (14, "batch-a", 3), (15, "batch-b", 2)]),
    ],
)  # fmt: skip
def test_0002_numbers_each_batch_in_rowid_order(tmp_path, rows, expected):
    conn = build_legacy_database(tmp_path / "legacy.db")
    conn.executemany("INSERT INTO import_batches (import_id) VALUES (?)", [("batch-a",), ("batch-b",)])
    conn.executemany(
        "INSERT INTO scored_listings (id, canonical_model, price, vram_gb, tdp_watts, score, import_id) "
        "VALUES (?, 'L40S', 8000.0, 48, 350, 0.5, ?)",
        rows,
    )
    migrator.migrate(conn, target="0002")
    assert (
        conn.execute("SELECT rowid, import_id, import_index FROM scored_listings ORDER BY rowid").fetchall() == expected
    )


# What the window-function statement that 0004 ran when it was a SQL script gave: the reference its two
# passes must agree with.
WINDOW_SUMMARY_SQL = """
SELECT import_id, canonical_model, COUNT(*), MIN(price),
    AVG(CASE WHEN position IN ((rows_for_model + 1) / 2, (rows_for_model + 2) / 2) THEN price END),
    MAX(price), AVG(score)
FROM (
    SELECT import_id, canonical_model, price, score,
        ROW_NUMBER() OVER (PARTITION BY import_id, canonical_model ORDER BY price) AS position,
        COUNT(*) OVER (PARTITION BY import_id, canonical_model) AS rows_for_model
    FROM scored_listings
)
GROUP BY import_id, canonical_model
"""


def test_0004_summarises_the_batches_already_stored(tmp_path):
    conn = legacy_database(tmp_path / "legacy.db")
    migrator.migrate(conn, target="0003")
    # batch-b gets an even count with a tie, an integer price and a price the old store wrote as text
    conn.executemany(
        "INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, created_at, updated_at, "
        "import_id, import_index) "
        "VALUES (?, ?, 24, 450, ?, '2025-01-03 00:00:00', '2025-01-03 00:00:00', 'batch-b', ?)",
        [
            ("RTX_4090", 1800.0, 0.5, 1),
            ("RTX_4090", 1500, 0.25, 2),
            ("RTX_4090", 1800.0, 0.125, 3),
            ("RTX_4090", 1600.5, 1.0, 4),
            ("T4", "call us", 0.5, 5),
            ("T4", 700.0, 0.25, 6),
        ],
    )
    reference = [(*row[:6], pytest.approx(row[6])) for row in conn.execute(WINDOW_SUMMARY_SQL)]
    migrator.migrate(conn, target="0004")
    summaries = conn.execute(
        "SELECT import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score "
        "FROM import_model_stats ORDER BY rowid"
    ).fetchall()
    assert summaries == reference
    assert summaries == [
        ("batch-a", "RTX_4090", 3, 1700.0, 1750.0, 1799.99, pytest.approx(0.7566666)),
        ("batch-b", "RTX_4090", 4, 1500.0, 1700.25, 1800.0, 0.46875),
        ("batch-b", "T4", 2, 700.0, 350.0, "call us", 0.375),  # text sorts after numbers, and averages as 0
        ("batch-x", "H100_PCIE_80GB", 2, 24500.0, 25250.0, 26000.0, 51.875),
        (LEGACY, "A100_40GB_PCIE", 1, 7000.0, 7000.0, 7000.0, 0.4),
        (LEGACY, "H100_PCIE_80GB", 1, 25000.0, 25000.0, 25000.0, 0.61),
    ]


# What the schema enforces after 0002

VALID_ROW = {
    "models": "INSERT INTO models (model, import_id, import_index) VALUES (:key, :import_id, :import_index)",
    "listings": "INSERT INTO listings (title, price, canonical_model, match_type, match_score, import_id, "
    "import_index) VALUES (:key, 1.0, 'L40S', 'exact', 1.0, :import_id, :import_index)",
    "scored_listings": "INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, import_id, "
    "import_index) VALUES ('L40S', 1.0, 48, 350, 0.5, :import_id, :import_index)",
    "quantized_listings": "INSERT INTO quantized_listings (scored_listing_id, model_7b, model_13b, model_70b, "
    "import_id, import_index) VALUES (1, 1, 1, 1, :import_id, :import_index)",
}


@pytest.mark.parametrize("table", DATA_TABLES)
@pytest.mark.parametrize(
    "import_id,import_index,message",
    [
        (None, 1, "NOT NULL constraint failed: {table}.import_id"),
        ("batch-a", None, "NOT NULL constraint failed: {table}.import_index"),
        ("batch-a", 0, "CHECK constraint failed: import_index >= 1"),
        ("batch-a", -3, "CHECK constraint failed: import_index >= 1"),
        ("batch-a", 1, "UNIQUE constraint failed: {table}.import_id, {table}.import_index"),
        ("batch-unknown", 5, "FOREIGN KEY constraint failed"),
    ],
)
def test_lineage_columns_are_enforced_by_the_schema(conn, table, import_id, import_index, message):
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("INSERT INTO import_batches (import_id) VALUES ('batch-a')")
    conn.execute("INSERT INTO models (model, import_id, import_index) VALUES ('L40S', 'batch-a', 99)")
    conn.execute(
        "INSERT INTO scored_listings (id, canonical_model, price, vram_gb, tdp_watts, score, import_id, import_index) "
        "VALUES (1, 'L40S', 1.0, 48, 350, 0.5, 'batch-a', 99)"
    )
    conn.execute(VALID_ROW[table], {"key": "first", "import_id": "batch-a", "import_index": 1})
    count = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    with pytest.raises(sqlite3.IntegrityError) as e:
        conn.execute(VALID_ROW[table], {"key": "second", "import_id": import_id, "import_index": import_index})
    assert (str(e.value), conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) == (
        message.format(table=table),
        count,
    )


@pytest.mark.parametrize(
    "status,error",
    [
        ("complete", None),
        ("rolled_back", None),
        (
            "done",
            "CHECK constraint failed: status IN "
            "('pending', 'complete', 'failed', 'rolled_back', 'legacy', 'recovered')",
        ),
        (None, "NOT NULL constraint failed: import_batches.status"),
    ],
)
def test_batch_status_is_one_of_the_known_states(conn, status, error):
    try:
        conn.execute("INSERT INTO import_batches (import_id, status) VALUES ('b', ?)", [status])
        outcome = None
    except sqlite3.IntegrityError as e:
        outcome = str(e)
    assert outcome == error


@pytest.mark.parametrize("table", DATA_TABLES)
def test_an_index_serves_a_batch_in_file_order(conn, table):
    plan = conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM {table} WHERE import_id = ? ORDER BY import_index", ["b"])
    assert [row[3] for row in plan] == [f"SEARCH {table} USING INDEX idx_{table}_import (import_id=?)"]


# Refusals and failures


def test_checksum_drift_is_refused_and_nothing_changes(tmp_path, conn):
    before = snapshot(conn)
    changed = package_sql("0002_import_lineage.py").replace("TEXT NOT NULL DEFAULT", "TEXT DEFAULT")
    files = migration_files(tmp_path, {"0002_import_lineage.py": changed})
    migrations = migrator.load_migrations(files=files)
    assert [(s.id, s.drifted) for s in migrator.status(conn, migrations)] == [
        ("0001", False),
        ("0002", True),
        *[(i, False) for i in IDS[2:]],
    ]
    for kwargs in [{}, {"target": "0001"}, {"rollback": 1}]:
        with pytest.raises(migrator.MigrationError) as e:
            migrator.migrate(conn, migrations=migrations, **kwargs)
        assert str(e.value) == (
            "Checksum drift: 0002_import_lineage.py changed after it was applied to this database. "
            "Restore the file as it was (a change to the schema needs a new migration), then run again."
        )
    assert (snapshot(conn), version(conn)) == (before, LATEST)


@pytest.mark.parametrize(
    "checksum",
    [
        "e4be0f86575d1137694765cbb47ffc3bef96887c286ab069369846a084e8b326",
        "7b442c2149a3b87e217b247d5620e5a087c2c57335fc8c743986723f3ce9e499",  # the SQL scripts 0004 replaced
    ],
)
def test_a_rewritten_migration_accepts_the_checksum_it_supersedes(conn, checksum):
    conn.execute("UPDATE glyph_migrations SET checksum = ? WHERE id = '0004'", [checksum])
    assert [s.drifted for s in migrator.status(conn)] == [False] * len(IDS)
    conn.execute("UPDATE glyph_migrations SET checksum = 'edited' WHERE id = '0004'")
    assert [s.drifted for s in migrator.status(conn)] == [i == "0004" for i in IDS]


BROKEN_UP = """-- Fails at its third statement
CREATE TABLE made_by_0006 (id INTEGER PRIMARY KEY);
INSERT INTO made_by_0006 (id) VALUES (1);

INSERT INTO no_such_table (id) VALUES (1);
"""
WORKING_UP = "-- Works\nCREATE TABLE made_by_0006 (id INTEGER PRIMARY KEY);\n"
WORKING_DOWN = "DROP TABLE made_by_0006;\n"
BROKEN_DOWN = "DROP TABLE made_by_0006;\nDROP TABLE no_such_table;\n"


@pytest.mark.parametrize(
    "up,down,start,target,message",
    [
        (
            BROKEN_UP,
            WORKING_DOWN,
            LATEST,
            None,
            "Migration 9001_extra (up) failed at statement 3, line 5 of 9001_extra.up.sql: no such table: "
            "no_such_table\n    INSERT INTO no_such_table (id) VALUES (1);\n"
            f"Nothing of it was kept: the database is still at {LATEST}.",
        ),
        (
            WORKING_UP,
            BROKEN_DOWN,
            "9001",
            LATEST,
            "Migration 9001_extra (down) failed at statement 2, line 2 of 9001_extra.down.sql: no such table: "
            "no_such_table\n    DROP TABLE no_such_table;\nNothing of it was kept: the database is still at 9001.",
        ),
    ],
)
def test_failing_migration_leaves_the_previous_version_and_says_where(tmp_path, up, down, start, target, message):
    files = migration_files(tmp_path, {"9001_extra.up.sql": up, "9001_extra.down.sql": down})
    migrations = migrator.load_migrations(files=files)
    conn = legacy_database(tmp_path / "glyph.db")
    if start == "9001":
        migrator.migrate(conn, migrations=migrations)
    else:
        migrator.migrate(conn)
    before = snapshot(conn)
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn, target=target, migrations=migrations)
    assert str(e.value) == message
    assert (snapshot(conn), version(conn)) == (before, start)


def test_failure_part_way_keeps_the_steps_before_it(tmp_path):
    files = migration_files(
        tmp_path,
        {
            "9001_works.up.sql": WORKING_UP,
            "9001_works.down.sql": WORKING_DOWN,
            "9002_fails.up.sql": "-- Fails\nSELECT * FROM no_such_table;\n",
            "9002_fails.down.sql": "SELECT 1;\n",
        },
    )
    conn = legacy_database(tmp_path / "glyph.db")
    applied = []
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn, migrations=migrator.load_migrations(files=files), on_step=lambda s, _: applied.append(s))
    assert str(e.value) == (
        "Migration 9002_fails (up) failed at statement 1, line 2 of 9002_fails.up.sql: no such table: no_such_table\n"
        "    SELECT * FROM no_such_table;\nNothing of it was kept: the database is still at 9001."
    )
    assert [s.migration.id for s in applied] == [*IDS[1:], "9001"]
    assert version(conn) == "9001"


def test_failing_lineage_migration_leaves_the_legacy_database_as_it_was(tmp_path):
    up = package_sql("0002_import_lineage.py")
    broken = up.replace(
        "    _restore_kept_sequences(conn)\n",
        "    _restore_kept_sequences(conn)\n    conn.execute('INSERT INTO no_such_table VALUES (1)')\n",
    )
    files = migration_files(tmp_path, {"0002_import_lineage.py": broken})
    conn = legacy_database(tmp_path / "legacy.db")
    before = snapshot(conn)
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn, migrations=migrator.load_migrations(files=files))
    assert str(e.value) == (
        "Migration 0002_import_lineage (up) failed: no such table: no_such_table\n"
        "Nothing of it was kept: the database is still at 0001."
    )
    # Not even adopted: no bookkeeping table, and no temporary table left behind for the next run
    assert (snapshot(conn), migrator.is_legacy(conn)) == (before, True)
    assert "glyph_migrations" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert conn.execute("SELECT name FROM sqlite_temp_master").fetchall() == []
    migrator.migrate(conn)
    assert version(conn) == LATEST


def test_migration_that_breaks_a_foreign_key_is_refused(tmp_path, conn):
    files = migration_files(
        tmp_path,
        {
            "9001_orphan.up.sql": "-- Adds a listing of a model nobody recorded\n"
            "INSERT INTO import_batches (import_id) VALUES ('batch-z');\n"
            "INSERT INTO scored_listings (id, canonical_model, price, vram_gb, tdp_watts, score, import_id, "
            "import_index) VALUES (7, 'NO_SUCH_MODEL', 1.0, 8, 75, 0.5, 'batch-z', 1);\n",
            "9001_orphan.down.sql": "DELETE FROM scored_listings WHERE id = 7;\n",
        },
    )
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn, migrations=migrator.load_migrations(files=files))
    assert str(e.value) == (
        "Migration 9001_orphan (up) would break 1 foreign key(s); the first: scored_listings row 7 names a models "
        f"row that does not exist.\nNothing of it was kept: the database is still at {LATEST}."
    )
    assert conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0] == 0


# Each migration below breaks a key of a row written before it without inserting that row: from the parent's
# side, or by changing the child's key column or its table's keys.
BREAKS_A_KEY = {
    "deletes the parent row": "DELETE FROM models WHERE model = 'L40S';\n",
    "changes the parent key": "UPDATE models SET model = 'L40S_48GB' WHERE model = 'L40S';\n",
    "drops the parent table": "DROP TABLE models;\n",
    "renames the parent table": "ALTER TABLE models RENAME TO models_before;\n",
    "rebuilds the parent table without its rows": "ALTER TABLE models RENAME TO models_before;\n"
    "CREATE TABLE models (id INTEGER PRIMARY KEY, model TEXT UNIQUE);\nDROP TABLE models_before;\n",
    "deletes through a trigger": "CREATE TABLE retired (model TEXT);\n"
    "CREATE TRIGGER retire AFTER INSERT ON retired BEGIN DELETE FROM models WHERE model = NEW.model; END;\n"
    "INSERT INTO retired VALUES ('L40S');\n",
    "changes the child's key": "UPDATE scored_listings SET canonical_model = 'L40S_48GB';\n",
    "adds a key column with a default": "ALTER TABLE scored_listings ADD COLUMN rated_as TEXT "
    "REFERENCES models(model) DEFAULT 'A10';\n",
}


@pytest.mark.parametrize("up", list(BREAKS_A_KEY.values()), ids=list(BREAKS_A_KEY))
def test_a_migration_that_breaks_a_key_of_a_row_it_did_not_insert_is_refused(tmp_path, conn, up):
    migrator.migrate(conn)
    conn.execute("INSERT INTO import_batches (import_id) VALUES ('batch-a')")
    conn.execute("INSERT INTO models (model, import_id, import_index) VALUES ('L40S', 'batch-a', 1)")
    conn.execute(
        "INSERT INTO scored_listings (id, canonical_model, price, vram_gb, tdp_watts, score, import_id, import_index) "
        "VALUES (3, 'L40S', 8000.0, 48, 350, 0.5, 'batch-a', 1)"
    )
    before = snapshot(conn)
    files = migration_files(tmp_path, {"9001_parent.up.sql": "-- Changes a parent\n" + up, "9001_parent.down.sql": ""})
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn, migrations=migrator.load_migrations(files=files))
    assert (str(e.value), snapshot(conn)) == (
        "Migration 9001_parent (up) would break 1 foreign key(s); the first: scored_listings row 3 names a models "
        f"row that does not exist.\nNothing of it was kept: the database is still at {LATEST}.",
        before,
    )


@pytest.mark.parametrize(
    "start,kwargs,expected",
    [
        (None, {}, [(i, "up") for i in IDS]),
        ("0001", {}, [(i, "up") for i in IDS[1:]]),
        (LATEST, {}, []),
        ("0001", {"target": "2"}, [("0002", "up")]),
        ("0001", {"target": "0002_import_lineage"}, [("0002", "up")]),
        ("0004", {"target": "0001"}, [("0004", "down"), ("0003", "down"), ("0002", "down")]),
        ("0004", {"target": "0"}, [("0004", "down"), ("0003", "down"), ("0002", "down"), ("0001", "down")]),
        ("0002", {"target": "0002"}, []),
        (LATEST, {"rollback": 1}, [(LATEST, "down")]),
        ("0004", {"rollback": 4}, [("0004", "down"), ("0003", "down"), ("0002", "down"), ("0001", "down")]),
        ("0002", {"rollback": 0}, []),
    ],
)
def test_plan(tmp_path, start, kwargs, expected):
    conn = connect(tmp_path / "glyph.db")
    if start:
        migrator.migrate(conn, target=start)
    assert [(s.migration.id, s.direction) for s in migrator.plan(conn, **kwargs)] == expected


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"target": "9999"}, f"Unknown target migration '9999'; known: {', '.join(IDS)}"),
        ({"target": "lineage"}, f"Unknown target migration 'lineage'; known: {', '.join(IDS)}"),
        ({"rollback": len(IDS) + 1}, f"Cannot roll back {len(IDS) + 1}: only {len(IDS)} migration(s) applied"),
        ({"rollback": -1}, "Cannot roll back a negative number of migrations"),
    ],
)
def test_plan_refuses_impossible_moves(conn, kwargs, message):
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn, **kwargs)
    assert (str(e.value), version(conn)) == (message, LATEST)


def test_a_migration_from_a_newer_version_is_refused(conn):
    conn.execute("INSERT INTO glyph_migrations VALUES ('9999', 'future', 'x', '2030-01-01T00:00:00+00:00')")
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn, target="0001")
    assert str(e.value) == (
        "The database has migration(s) 9999 that this version of datasette-glyph does not know; upgrade "
        "datasette-glyph before migrating this database."
    )
    assert [(s.id, s.migration is None) for s in migrator.status(conn)][-1] == ("9999", True)


def test_applied_at_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(migrator, "now", lambda: "2025-01-02T03:04:05+00:00")
    conn = connect(tmp_path / "glyph.db")
    migrator.migrate(conn)
    rows = conn.execute("SELECT id, name, checksum, applied_at FROM glyph_migrations ORDER BY id").fetchall()
    assert rows == [(m.id, m.name, m.checksum, "2025-01-02T03:04:05+00:00") for m in migrator.load_migrations()]


# Startup's rule: only an empty or an already managed database


@pytest.mark.parametrize(
    "setup,expected_steps,expected_version",
    [
        ("empty", IDS, LATEST),
        ("managed at 0001", IDS[1:], LATEST),
        ("managed, newest", [], LATEST),
        ("legacy", None, "0001"),
        ("someone else's", None, None),
    ],
)
def test_migrate_if_managed(tmp_path, setup, expected_steps, expected_version):
    path = tmp_path / "glyph.db"
    conn = connect(path)
    if setup == "managed at 0001":
        migrator.migrate(conn, target="0001")
    elif setup == "managed, newest":
        migrator.migrate(conn)
    elif setup == "legacy":
        conn.close()
        conn = legacy_database(path)
    elif setup == "someone else's":
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    before = snapshot(conn)
    steps = migrator.migrate_if_managed(conn)
    assert (None if steps is None else [s.migration.id for s in steps], version(conn)) == (
        expected_steps,
        expected_version,
    )
    if steps is None:
        assert (snapshot(conn), migrator.is_managed(conn)) == (before, False)


# Two runs at once

CHILD = """
import json, pathlib, sys
from datasette_glyph.engine import lineage, migrator
from datasette_glyph.engine.sqlite import connect

path, folder = sys.argv[1], sys.argv[2]
migrations = migrator.load_migrations(files=sorted(pathlib.Path(folder).iterdir()))
conn = connect(path)
steps = migrator.migrate(conn, migrations=migrations)
print(json.dumps({"steps": [s.migration.id for s in steps]}))
"""

# Long enough (about a second) that the second process starts while the first is still migrating
SLOW_UP = """-- Takes a while
CREATE TABLE slow_numbers (n INTEGER PRIMARY KEY);
WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3000000)
INSERT INTO slow_numbers SELECT n FROM c WHERE n % 1000 = 0;
"""


def test_two_processes_migrating_one_file_at_once_apply_each_migration_once(tmp_path):
    files = migration_files(tmp_path, {"9001_slow.up.sql": SLOW_UP, "9001_slow.down.sql": "DROP TABLE slow_numbers;"})
    path = tmp_path / "glyph.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode = wal").fetchone()  # an empty file
    # Both processes wait at the write lock, held by a third, before either migrates anything: they overlap
    with lock_held_elsewhere(path, "write"):
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(path), str(files[0].parent)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for run in runs:
            wait_until_waiting_for_a_lock(run)
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [(run.returncode, err) for run, (_, err) in zip(runs, outputs)] == [(0, ""), (0, "")]
    results = [json.loads(out) for out, _ in outputs]
    assert sorted(step for r in results for step in r["steps"]) == [*IDS, "9001"]
    conn = connect(path)
    assert [r[0] for r in conn.execute("SELECT id FROM glyph_migrations ORDER BY id")] == [*IDS, "9001"]
    assert conn.execute("SELECT COUNT(*) FROM slow_numbers").fetchone()[0] == 3000
