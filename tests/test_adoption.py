"""Adopting the old store's databases as they exist in the field, and going back to exactly what they were."""

import asyncio
import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasette.cli import cli as datasette_cli
from datasette_test import Datasette
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasette_glyph.engine import files, lineage, migrator
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import connect

from . import legacy_store

LEGACY = "dbaea5cd-0a4d-52ca-88af-4737290a1213"
NUMBERED = {"pre_lineage": False, "later_release": True, "upgrade_script": True, "alembic": True, "forecasting": True}
CSV = (
    "canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score,source_url,title\n"
    "H100_PCIE_80GB,80,7,True,350,25000.0,0.9,https://m.example/1,H100 boxed\n"
    "RTX_A6000,48,0,False,300,4200.0,0.6,https://m.example/9,\n"
)


def rows_by_name(path):
    """Every table's rows as dicts keyed by column name (rowid included), in rowid order."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master "
            "WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'glyph_%'"
        )
    ]
    rows = {t: [dict(r) for r in conn.execute(f'SELECT rowid AS rowid, * FROM "{t}" ORDER BY rowid')] for t in tables}
    conn.close()
    return rows


def after_index(rows, rowid):
    return next(row["import_index"] for row in rows if row["rowid"] == rowid)


def added_batches(conn):
    return {r[0] for r in conn.execute("SELECT import_id FROM glyph_adopted_batches")}


def build(tmp_path, variant):
    path = tmp_path / f"{variant}.db"
    legacy_store.VARIANTS[variant](path)
    return path


def read(path):
    conn = sqlite3.connect(path)
    try:
        return legacy_store.dump(conn)
    finally:
        conn.close()


def glyph_import(conn, text, name="drop.csv"):
    """Import ``text`` as a file, keeping the original beside the database as every import does by default."""
    import io

    db_path = conn.execute("PRAGMA database_list").fetchone()[2]
    original = files.Original(files.open_store(conn, db_path), files.CSV_TYPE)
    return import_csv(conn, io.BytesIO(text.encode()), filename=name, source_name="market", original=original)


@pytest.mark.parametrize("variant", sorted(legacy_store.VARIANTS))
def test_adopt_down_and_up_again_exactly(tmp_path, variant):
    path = build(tmp_path, variant)
    original = read(path)
    path_copy = tmp_path / "original.db"
    shutil.copyfile(path, path_copy)
    conn = connect(path)
    migrator.migrate(conn)
    adopted = legacy_store.dump(conn)

    # Every original row is there with its rowid and every value; rows that named no batch name the legacy
    # batch, and an import_index the old store wrote is kept where it was valid.
    before = rows_by_name(path_copy)
    after = rows_by_name(path)
    for table, rows in before.items():
        expected, held = [], set()
        for row in rows:
            row = dict(row)
            if table in legacy_store.DATA_TABLES:
                row["import_id"] = row["import_id"] if row["import_id"] is not None else LEGACY
                number = row.get("import_index")
                valid = isinstance(number, int) and number >= 1 and (row["import_id"], number) not in held
                if valid:
                    held.add((row["import_id"], number))
                elif "import_index" in row:
                    row["import_index"] = after_index(after[table], row["rowid"])
            expected.append(row)
        mine = [{k: v for k, v in row.items() if k in expected[0]} for row in after[table]] if expected else []
        if table == "import_batches":
            mine = [row for row in mine if row["import_id"] not in added_batches(conn)]
        assert mine == expected, table
    # Every index and trigger the old store had is still there, verbatim, but a plain index on import_id.
    kept = {o for o in original["objects"] if o[0] in ("index", "trigger", "view") and o[3] is not None}
    replaced = {o for o in kept if o[0] == "index" and o[3].replace(" ", "").endswith("(import_id)")}
    assert kept - replaced <= set(adopted["objects"])
    assert migrator.current_version(conn) == migrator.load_migrations()[-1].id

    migrator.migrate(conn, target="0001")
    assert legacy_store.dump(conn) == original
    migrator.migrate(conn)
    assert legacy_store.dump(conn) == adopted
    migrator.migrate(conn, target="0001")
    assert legacy_store.dump(conn) == original
    conn.close()


def test_a_table_with_a_generated_column_is_rebuilt_and_comes_back_exactly(tmp_path):
    # A column SQLite computes cannot be kept by changing the table where it stands: the table is copied.
    path = build(tmp_path, "pre_lineage")
    conn = connect(path)
    conn.execute("ALTER TABLE scored_listings ADD COLUMN price_eur REAL GENERATED ALWAYS AS (price * 0.9) VIRTUAL")
    original = legacy_store.dump(conn)
    migrator.migrate(conn)
    adopted = legacy_store.dump(conn)
    assert conn.execute(
        "SELECT rowid, import_id, import_index, price, price_eur FROM scored_listings LIMIT 3"
    ).fetchall() == [
        (1, "b-2024-05-01", 1, 25512.0, 25512.0 * 0.9),
        (3, "b-2024-05-01", 2, 1799.99, 1799.99 * 0.9),
        (4, "nightly 2024/05/02", 1, 0.0, 0.0),
    ]
    migrator.migrate(conn, target="0001")
    assert legacy_store.dump(conn) == original
    migrator.migrate(conn)
    assert legacy_store.dump(conn) == adopted


def test_a_view_on_import_index_made_after_adoption_does_not_stop_going_down(tmp_path):
    # SQLite refuses to drop a column a view reads; the table is then copied without it instead.
    path = build(tmp_path, "pre_lineage")
    conn = connect(path)
    original = legacy_store.dump(conn)
    migrator.migrate(conn)
    view = "CREATE VIEW numbered AS SELECT import_id, import_index FROM scored_listings"
    conn.execute(view)
    migrator.migrate(conn, target="0001")
    assert legacy_store.dump(conn) == {
        "objects": sorted(original["objects"] + [("view", "numbered", "numbered", view)]),
        "rows": original["rows"],
    }


@pytest.mark.parametrize("variant", sorted(legacy_store.VARIANTS))
def test_the_old_store_writes_to_a_file_taken_back_down(tmp_path, variant):
    path = build(tmp_path, variant)
    conn = connect(path)
    migrator.migrate(conn)
    glyph_import(conn, CSV)
    migrator.migrate(conn, target="0001")
    legacy_store.old_store_writes(conn, NUMBERED[variant])
    assert conn.execute("SELECT price FROM scored_listings WHERE import_id = 'old-store-again'").fetchall() == [
        (2000.0,)
    ]
    migrator.migrate(conn)
    assert conn.execute("SELECT import_index FROM scored_listings WHERE import_id = 'old-store-again'").fetchall() == [
        (1,)
    ]
    conn.close()


def test_values_the_old_store_numbered_are_kept_and_invalid_ones_renumbered(tmp_path):
    path = build(tmp_path, "upgrade_script")
    conn = connect(path)
    assert invalid_import_index(conn) == [
        ("scored_listings", 12, 2, "also held by an earlier row of the same batch"),
        ("scored_listings", 13, 0, "not an integer >= 1"),
        ("scored_listings", 14, "seven", "not an integer >= 1"),
    ]
    migrator.migrate(conn)
    assert conn.execute(
        "SELECT rowid, import_index FROM scored_listings WHERE import_id = 'after-upgrade' ORDER BY rowid"
    ).fetchall() == [(11, 2), (12, 1), (13, 3), (14, 4)]
    migrator.migrate(conn, target="0001")
    assert conn.execute(
        "SELECT rowid, import_index FROM scored_listings WHERE import_id = 'after-upgrade' ORDER BY rowid"
    ).fetchall() == [(11, 2), (12, 2), (13, 0), (14, "seven")]
    conn.close()


def test_a_models_number_from_the_old_store_is_kept(tmp_path):
    # The later releases numbered a model by the position of its first listing in the batch: 3 stays 3.
    path = build(tmp_path, "later_release")
    conn = connect(path)
    migrator.migrate(conn)
    assert conn.execute("SELECT model, import_id, import_index FROM models ORDER BY id").fetchall() == [
        ("H100_PCIE_80GB", "b-2024-05-01", 1),
        ("RTX_4090", "b-2024-05-01", 3),
        ("A100_40GB_PCIE", LEGACY, 1),
        ("L40S", "b-deleted", 1),
        ("Ünïcødé_GPU", "nightly 2024/05/02", 2),
    ]
    conn.close()


def invalid_import_index(conn):
    lineage_migration = next(m for m in migrator.load_migrations() if m.id == "0002")
    return lineage_migration.python["invalid_import_index"](conn)


def test_broken_keys_stay_reported_and_never_block_going_down(tmp_path):
    path = build(tmp_path, "pre_lineage")
    conn = connect(path)
    broken = sorted(conn.execute("PRAGMA foreign_key_check").fetchall())
    assert [(t, r, p) for t, r, p, _ in broken] == [
        ("models", 4, "import_batches"),
        ("quantized_listings", 2, "scored_listings"),
        ("scored_listings", 8, "import_batches"),
        ("scored_listings", 9, "import_batches"),
    ]
    migrator.migrate(conn)
    assert migrator.broken_keys_at_adoption(conn) == 4
    assert conn.execute("SELECT status FROM import_batches WHERE import_id = 'b-deleted'").fetchall() == [
        ("recovered",)
    ]
    migrator.migrate(conn, target="0001")
    assert sorted(conn.execute("PRAGMA foreign_key_check").fetchall()) == broken
    conn.close()


def test_what_going_down_kept_aside_is_shown_restored_and_can_be_discarded(tmp_path):
    path = build(tmp_path, "pre_lineage")
    conn = connect(path)
    migrator.migrate(conn)
    result = glyph_import(conn, CSV, name="titles.csv")
    lineage.rollback_import(conn, result.import_id, actor="ops")
    second = glyph_import(conn, CSV, name="again.csv")
    at_top = legacy_store.dump(conn)
    migrator.migrate(conn, target="0001")
    assert [name for name, _ in migrator.kept_aside(conn)] == [
        "glyph_kept_0002_import_batches",
        "glyph_kept_0002_listings",
        "glyph_kept_0002_models",
        "glyph_kept_0002_quantized_listings",
        "glyph_kept_0002_scored_listings",
        "glyph_kept_0002_sequence",
        "glyph_kept_0003_scored_listings_title",
        "glyph_kept_0004_import_model_stats",
        "glyph_kept_0007_import_files",
        "glyph_kept_0010_import_files_store",
    ]
    migrator.migrate(conn)
    assert legacy_store.dump(conn) == at_top
    batch = lineage.get_import(conn, result.import_id)
    assert (batch["status"], batch["filename"]) == ("rolled_back", "titles.csv")
    assert conn.execute(
        "SELECT title FROM scored_listings WHERE import_id = ? ORDER BY import_index", [second.import_id]
    ).fetchall() == [("H100 boxed",), (None,)]
    assert migrator.kept_aside(conn) == []

    migrator.migrate(conn, target="0001")
    assert migrator.discard_kept(conn)[0] == ("glyph_kept_0002_import_batches", 6)
    assert migrator.kept_aside(conn) == []
    migrator.migrate(conn)
    assert lineage.get_import(conn, second.import_id)["filename"] is None
    conn.close()


def test_ids_of_a_rolled_back_batch_are_never_given_out_again(tmp_path):
    # AUTOINCREMENT is kept: the migration-tool variant has none, and SQLite reuses its highest ids there.
    path = build(tmp_path, "pre_lineage")
    conn = connect(path)
    migrator.migrate(conn)
    first = glyph_import(conn, CSV)
    ids = [r[0] for r in conn.execute("SELECT id FROM scored_listings WHERE import_id = ?", [first.import_id])]
    lineage.rollback_import(conn, first.import_id, actor="ops")
    second = glyph_import(conn, CSV)
    again = [r[0] for r in conn.execute("SELECT id FROM scored_listings WHERE import_id = ?", [second.import_id])]
    assert min(again) > max(ids)
    conn.close()


@pytest.mark.parametrize(
    "script,message",
    [
        (
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
            "This is not a database of the old store, nor one datasette-glyph manages: expected the tables "
            "import_batches, listings, models, quantized_listings, schema_version, scored_listings; missing "
            "import_batches, listings, models, quantized_listings, schema_version, scored_listings; found notes. "
            f"Nothing was changed. {migrator.NOT_GLYPH_ADVICE}.",
        ),
        (
            legacy_store.PRE_LINEAGE.replace("    import_id TEXT, -- nullable: rows from before batches\n", "")
            .replace(
                "    FOREIGN KEY (import_id) REFERENCES import_batches(import_id) ON DELETE SET NULL\n);\n"
                "CREATE INDEX idx_scored_listings_canonical_model",
                "    FOREIGN KEY (canonical_model) REFERENCES models(model)\n);\n"
                "CREATE INDEX idx_scored_listings_canonical_model",
            )
            .replace("CREATE INDEX idx_scored_listings_import_id ON scored_listings(import_id);", ""),
            None,
        ),
    ],
)
def test_a_file_that_is_not_the_old_stores_is_refused_and_left_alone(tmp_path, script, message):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(script)
    conn.close()
    before = path.read_bytes()
    conn = connect(path)
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn)
    conn.close()
    if message is None:
        assert str(e.value).startswith(
            "This is not a database of the old store: table scored_listings has no column import_id"
        )
    else:
        assert str(e.value) == message
    check = sqlite3.connect(path)
    assert [r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE name LIKE 'glyph%'")] == []
    check.close()
    assert len(before) > 0


def test_a_damaged_file_is_refused(tmp_path):
    path = build(tmp_path, "pre_lineage")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA writable_schema = ON")
    # Point an index at a page that belongs to a table: quick_check then reports the damage.
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'scored_listings'").fetchone()[0]
    conn.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'idx_scored_listings_score'", [root])
    conn.commit()
    conn.close()
    conn = connect(path)
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn)
    assert str(e.value).startswith("The database is damaged (PRAGMA quick_check: ")
    assert "glyph_migrations" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()


def test_going_below_an_adopted_0001_is_refused(tmp_path):
    path = build(tmp_path, "forecasting")
    conn = connect(path)
    migrator.migrate(conn, target="0001")
    with pytest.raises(migrator.MigrationError) as e:
        migrator.migrate(conn, target="0")
    assert str(e.value).startswith(
        "Migration 0001_inherited_schema (down) is refused: this database was made by the old store"
    )
    assert "listing_snapshots" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()


def test_glyph_migrate_adopts_a_real_file_in_a_real_process(tmp_path):
    path = build(tmp_path, "alembic")
    original = read(path)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "datasette", "glyph-migrate", str(path), *args], capture_output=True, text=True
        )

    up = run()
    assert up.returncode == 0, up.stderr
    assert up.stdout.splitlines()[0] == f"{path} was made by the old store: taking it as 0001_inherited_schema"
    status = run("--status")
    assert "kept aside" not in status.stdout
    down = run("--to", "0001")
    assert down.returncode == 0, down.stderr
    assert read(path) == original
    status = run("--status")
    assert status.stdout.splitlines()[-5:] == [
        "",
        "Kept aside by going down, put back by the next up (drop with --discard-kept):",
        "  glyph_kept_0002_import_batches (4 rows), glyph_kept_0002_listings (2 rows), "
        "glyph_kept_0002_models (5 rows),",
        "  glyph_kept_0002_quantized_listings (3 rows), glyph_kept_0002_scored_listings (8 rows),",
        "  glyph_kept_0003_scored_listings_title (0 rows), glyph_kept_0004_import_model_stats (6 rows)",
    ]
    discard = run("--discard-kept")
    assert discard.stdout.splitlines()[0] == "Dropped glyph_kept_0002_import_batches (4 rows)"
    assert "Kept aside" not in run("--status").stdout


# Random old-store contents: NULLs wherever allowed, unicode, extreme numbers, many batches ----------------

texts = st.one_of(st.none(), st.text(max_size=12))
reals = st.floats(allow_nan=False, width=64)
scored_row = st.tuples(
    st.sampled_from(["H100_PCIE_80GB", "RTX_4090", "Ünïcødé_GPU"]),
    reals,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    reals,
    texts,
    texts,
    st.one_of(st.none(), st.sampled_from(["b1", "b2", "b3", "gone-1", "gone-2"])),
    st.one_of(st.none(), st.integers(min_value=-3, max_value=6), st.just("x")),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    variant=st.sampled_from(["later_release", "alembic", "forecasting"]),
    rows=st.lists(scored_row, max_size=30),
    imports=st.integers(min_value=0, max_value=2),
    roll_back=st.booleans(),
)
def test_round_trips_over_random_old_store_contents(tmp_path_factory, variant, rows, imports, roll_back):
    path = tmp_path_factory.mktemp("random") / "store.db"
    legacy_store.VARIANTS[variant](path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO import_batches (import_id, source) VALUES ('b1', 'api'), ('b2', NULL), ('b3', 'ünï')")
    conn.executemany(
        "INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, notes, seller, import_id, "
        "import_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    original = legacy_store.dump(conn)
    conn.close()
    conn = connect(path)
    migrator.migrate(conn)
    made = [glyph_import(conn, CSV, name=f"drop-{i}.csv").import_id for i in range(imports)]
    if roll_back and made:
        lineage.rollback_import(conn, made[0], actor="ops")
    top = legacy_store.dump(conn)
    migrator.migrate(conn, target="0001")
    if not made:
        assert legacy_store.dump(conn) == original
    migrator.migrate(conn)
    assert legacy_store.dump(conn) == top
    conn.close()


def test_a_batch_whose_values_include_both_infinities_is_adopted_and_shown(tmp_path):
    """SQLite stores +inf and -inf in a REAL column; the old store kept what it was sent. A model whose scores (or
    prices) include both has no mean (or median): its summary says so with NULL, and its pages and diffs show it."""
    path = tmp_path / "store.db"
    legacy_store.VARIANTS["later_release"](path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO import_batches (import_id, source) VALUES ('b1', 'api')")
    conn.executemany(
        "INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, score, import_id, import_index) "
        "VALUES (?, ?, 24, 450, ?, 'b1', ?)",
        [("RTX_4090", float("inf"), float("inf"), 1), ("RTX_4090", float("-inf"), float("-inf"), 2)],
    )
    original = legacy_store.dump(conn)
    conn.close()
    conn = connect(path)
    migrator.migrate(conn)
    assert conn.execute(
        "SELECT row_count, min_price, median_price, max_price, mean_score "
        "FROM import_model_stats WHERE import_id = 'b1'"
    ).fetchall() == [(2, float("-inf"), None, float("inf"), None)]
    top = legacy_store.dump(conn)
    migrator.migrate(conn, target="0001")
    assert legacy_store.dump(conn) == original
    migrator.migrate(conn)
    assert legacy_store.dump(conn) == top
    later = glyph_import(conn, CSV, name="later.csv").import_id
    conn.close()
    cli = CliRunner()
    for args in (["glyph-diff", str(path), "b1", later], ["glyph-diff", str(path), "b1", later, "--json"]):
        result = cli.invoke(datasette_cli, args)
        assert result.exit_code == 0, result.output
    ds = Datasette([str(path)])
    for page in ("/-/glyph/imports/b1", f"/-/glyph/imports/b1/diff/{later}", f"/api/imports/b1/diff/{later}"):
        response = asyncio.run(ds.client.get(page))
        assert response.status_code == 200, (page, response.text[-500:])


@pytest.mark.parametrize("move", [["--to", "0"], ["--rollback", "10"]])
def test_a_plan_that_would_go_below_an_adopted_0001_changes_nothing(tmp_path, move):
    path = build(tmp_path, "forecasting")
    conn = connect(path)
    migrator.migrate(conn)
    newest = migrator.current_version(conn)
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = subprocess.run(
        [sys.executable, "-m", "datasette", "glyph-migrate", str(path), *move], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "Error: Migration 0001_inherited_schema (down) is refused: this database was made by the old store and "
        "adopted, so 0001 holds the operator's own tables; glyph-migrate does not remove them. Nothing was "
        f"changed: the database is still at {newest}; the lowest it can go is 0001 (--to 0001).\n",
    )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
