"""How the import engine writes: statements of many rows, the moment of the batch, and the bulk path.

A batch large relative to scored_listings is written without the table's secondary indexes, which are built again
in the same transaction; a small one keeps them up to date row by row. Either way the result is the same rows and
the same schema, a reader never sees the table without its indexes, and a refused or failed batch leaves the file as
it was.
"""

import csv
import json
import re
import sqlite3

import pytest

from datasette_glyph.engine import batch, migrator, sample
from datasette_glyph.engine.errors import ImportFailed
from datasette_glyph.engine.importer import import_csv, import_json, import_records
from datasette_glyph.engine.json_source import scan_json
from datasette_glyph.engine.sqlite import connect

from .support import database_checksum


@pytest.fixture
def small_thresholds(monkeypatch):
    """Thresholds scaled down a hundredfold, so that test-sized files take the bulk path."""
    monkeypatch.setattr(batch, "BULK_MIN_ROWS", 1_000)
    monkeypatch.setattr(batch, "BULK_DECIDE_ROWS", 500)
    monkeypatch.setattr(batch, "BULK_RATIOS", ((10_000, 0.15), (50_000, 0.08)))


def secondary_indexes(conn):
    return conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'scored_listings' ORDER BY name"
    ).fetchall()


def traced(conn):
    statements = []
    conn.set_trace_callback(statements.append)
    return statements


def index_statements(statements):
    return [s.split(" ON ")[0] for s in statements if s.startswith(("DROP INDEX", "CREATE INDEX"))]


def test_a_large_batch_into_an_empty_table_drops_and_rebuilds_the_secondary_indexes(conn, tmp_path, small_thresholds):
    path = sample.write_market(tmp_path / "m.csv", 3_000, seed=1)
    indexes = secondary_indexes(conn)
    statements = traced(conn)
    result = import_csv(conn, path)
    names = [name for name, sql in indexes if not sql.startswith("CREATE UNIQUE")]
    done = index_statements(statements)
    assert (sorted(done[: len(names)]), sorted(done[len(names) :])) == (
        [f'DROP INDEX "{n}"' for n in names],
        [f"CREATE INDEX {n}" for n in names],
    )
    # The same schema, word for word, and indexes that hold every row
    assert secondary_indexes(conn) == indexes
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute(
        "SELECT COUNT(*) FROM scored_listings INDEXED BY idx_scored_listings_score WHERE score >= 0"
    ).fetchone() == (result.record_count,)


def test_the_bulk_path_writes_what_the_row_by_row_path_writes(tmp_path, small_thresholds, monkeypatch):
    """Into an empty table (every index built again) and into one with rows (the few-valued ones kept)."""
    paths = [sample.write_market(tmp_path / f"m{seed}.csv", 3_000, seed=seed) for seed in (2, 3)]
    dumps = []
    for bulk_min in (1_000, 10**9):  # bulk, then never bulk
        monkeypatch.setattr(batch, "BULK_MIN_ROWS", bulk_min)
        conn = connect(tmp_path / f"{bulk_min}.db")
        migrator.migrate(conn)
        statements = traced(conn)
        import_csv(conn, paths[0])
        result = import_csv(conn, paths[1])
        assert len(index_statements(statements)) == (22 if bulk_min == 1_000 else 0)  # 2 x 7, then 2 x 4
        columns = [
            r[1]
            for r in conn.execute("PRAGMA table_info(scored_listings)")
            if r[1] not in ("created_at", "updated_at", "import_id")  # the moment and the batch's own id
        ]
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM scored_listings ORDER BY id").fetchall()
        dumps.append((rows, secondary_indexes(conn), result.record_count))
    assert dumps[0][0] == dumps[1][0]
    assert dumps[0][1:] == dumps[1][1:]


def test_a_small_batch_into_a_large_table_keeps_the_indexes(conn, tmp_path, small_thresholds):
    import_csv(conn, sample.write_market(tmp_path / "big.csv", 10_000, seed=3))
    statements = traced(conn)
    import_csv(conn, sample.write_market(tmp_path / "small.csv", 1_400, seed=4))  # 0.14 of the table
    assert index_statements(statements) == []
    statements.clear()
    import_csv(conn, sample.write_market(tmp_path / "larger.csv", 1_800, seed=5))  # 0.158 of 11,400 rows
    assert index_statements(statements)[0].startswith("DROP INDEX")


RANDOM_ORDER = [
    "idx_scored_listings_price",
    "idx_scored_listings_score",
    "idx_scored_listings_seen_at",
    "idx_scored_listings_source_url",
]


def test_a_bulk_batch_into_a_table_with_rows_keeps_the_indexes_of_few_values_up_to_date(
    conn, tmp_path, small_thresholds
):
    """Model, region and condition take a few values each: their new entries go at the end of a few runs, and
    they are kept up to date row by row; the indexes on values in no particular order are built again."""
    import_csv(conn, sample.write_market(tmp_path / "first.csv", 3_000, seed=3))
    indexes = secondary_indexes(conn)
    statements = traced(conn)
    result = import_csv(conn, sample.write_market(tmp_path / "second.csv", 3_000, seed=4))
    done = index_statements(statements)
    assert (sorted(done[:4]), sorted(done[4:])) == (
        [f'DROP INDEX "{n}"' for n in RANDOM_ORDER],
        [f"CREATE INDEX {n}" for n in RANDOM_ORDER],
    )
    assert secondary_indexes(conn) == indexes
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for name in ("idx_scored_listings_region", "idx_scored_listings_price"):
        assert conn.execute(
            f"SELECT COUNT(*) FROM scored_listings INDEXED BY {name} WHERE import_id = ? AND +1", [result.import_id]
        ).fetchone() == (3_000,)


def test_bulk_ratio_falls_with_the_table_between_the_measured_points():
    (small, high), (large, low) = batch.BULK_RATIOS
    assert batch.bulk_ratio(0) == batch.bulk_ratio(small) == high
    assert batch.bulk_ratio(large) == batch.bulk_ratio(large * 10) == low
    between = [batch.bulk_ratio(rows) for rows in range(small, large + 1, (large - small) // 8)]
    assert between == sorted(between, reverse=True) and len(set(between)) == len(between)


def test_a_batch_a_third_of_the_table_takes_the_bulk_path(conn, tmp_path, small_thresholds):
    import_csv(conn, sample.write_market(tmp_path / "big.csv", 3_000, seed=3))
    statements = traced(conn)
    import_csv(conn, sample.write_market(tmp_path / "next.csv", 1_500, seed=4))
    assert index_statements(statements)[0].startswith("DROP INDEX")


def test_a_refused_bulk_batch_leaves_the_file_as_it_was(conn, tmp_path, small_thresholds):
    import_csv(conn, sample.write_market(tmp_path / "first.csv", 600, seed=5))
    before = database_checksum(conn)
    path = sample.write_market(tmp_path / "m.csv", 4_000, seed=6)
    text = path.read_text(encoding="utf-8").splitlines()
    text[-1] = text[-1].replace(",used,", ",used,", 1)
    fields = text[-1].split(",")
    fields[5] = "not a price"
    text[-1] = ",".join(fields)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    statements = traced(conn)
    with pytest.raises(ImportFailed) as e:
        import_csv(conn, path)
    assert index_statements(statements)[0].startswith("DROP INDEX")  # the failure came after the indexes went
    assert [err["line"] for err in e.value.errors] == [4_001]
    assert database_checksum(conn) == before


def test_readers_keep_the_indexes_while_a_bulk_batch_is_written(db_path, tmp_path, small_thresholds):
    path = sample.write_market(tmp_path / "m.csv", 6_000, seed=7)
    writer, reader = connect(db_path), connect(db_path)
    expected = secondary_indexes(reader)
    seen = []

    def look(_bytes_read):
        seen.append(secondary_indexes(reader))
        seen.append(
            reader.execute(
                "SELECT COUNT(*) FROM scored_listings INDEXED BY idx_scored_listings_score WHERE score >= 0"
            ).fetchone()
        )

    import_csv(writer, path, progress=look)
    assert len(seen) > 2
    assert all(s == expected for s in seen[0::2]) and all(s == (0,) for s in seen[1::2])


def test_json_and_record_imports_know_their_size_and_take_the_bulk_path(conn, tmp_path, small_thresholds):
    records = sample.first_snapshot(1_500, seed=8)
    statements = traced(conn)
    import_records(conn, [{k: v for k, v in r.items()} for r in records])
    assert index_statements(statements)[0].startswith("DROP INDEX")
    body = tmp_path / "body.json"
    body.write_text(json.dumps([{k: sample.cell(v) for k, v in r.items()} for r in records]), encoding="utf-8")
    conn2_statements = traced(conn)
    import_json(conn, scan_json(body))
    # the table now holds 1,500 rows and the body 1,500: a batch as large as the table
    assert index_statements(conn2_statements)[0].startswith("DROP INDEX")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_failure_while_reading_or_writing_leaves_the_file_as_it_was(conn, tmp_path):
    good = sample.write_market(tmp_path / "good.csv", 5_000, seed=9)
    before = database_checksum(conn)

    class Exploding(Exception):
        pass

    def explode(_bytes_read):
        raise Exploding()

    with pytest.raises(Exploding):
        import_csv(conn, good, progress=explode)
    assert database_checksum(conn) == before
    conn.execute(
        "CREATE TRIGGER no_more AFTER INSERT ON scored_listings WHEN NEW.import_index = 600 "
        "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    )
    before = database_checksum(conn)
    with pytest.raises(Exception, match="refused by a trigger"):
        import_csv(conn, good)
    assert database_checksum(conn) == before


@pytest.mark.parametrize("rows", [1, 99, 100, 101, 599, 1234])
def test_rows_are_written_in_file_order_whatever_their_count(conn, tmp_path, rows):
    """Records go in statements of ROWS_PER_STATEMENT rows and the rest one at a time: every count comes out whole,
    numbered in file order."""
    assert batch.ROWS_PER_STATEMENT == 100
    path = sample.write_market(tmp_path / "m.csv", rows, seed=rows)
    result = import_csv(conn, path)
    written = conn.execute(
        "SELECT import_index, canonical_model, price, score FROM scored_listings WHERE import_id = ? ORDER BY rowid",
        [result.import_id],
    ).fetchall()
    with open(path, newline="", encoding="utf-8") as f:
        expected = [
            (n, r["canonical_model"], float(r["price"]), float(r["score"])) for n, r in enumerate(csv.DictReader(f), 1)
        ]
    assert (result.record_count, written) == (rows, expected)


def test_every_row_of_a_batch_gets_the_moment_its_import_began(conn, tmp_path):
    path = sample.write_market(tmp_path / "m.csv", 250, seed=3)
    before = conn.execute("SELECT CURRENT_TIMESTAMP").fetchone()[0]
    result = import_csv(conn, path)
    after = conn.execute("SELECT CURRENT_TIMESTAMP").fetchone()[0]
    moments = conn.execute(
        "SELECT DISTINCT created_at, updated_at FROM scored_listings WHERE import_id = ?", [result.import_id]
    ).fetchall()
    assert len(moments) == 1 and moments[0][0] == moments[0][1]
    assert before <= moments[0][0] <= after and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", moments[0][0])


def test_a_default_moment_is_evaluated_as_the_file_defines_it():
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE scored_listings (price REAL, created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), "
        'updated_at DEFAULT CURRENT_DATE, "odd ""name" DEFAULT (datetime(\'now\')), '
        "note TEXT DEFAULT 'now and then', seen_at TEXT)"
    )
    found = batch.moment_defaults(conn, ["price"])
    assert list(found) == ['"created_at"', '"updated_at"', '"odd ""name"']
    assert re.fullmatch(r"'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z'", found['"created_at"'])
    assert re.fullmatch(r"'\d{4}-\d\d-\d\d'", found['"updated_at"'])
    assert batch.moment_defaults(conn, ["price", "created_at", "updated_at", 'odd "name']) == {}


def test_the_bulk_path_drops_indexes_without_zeroing_their_pages(conn, tmp_path, small_thresholds):
    """Zeroing the freed pages of a dropped index (SQLite's secure_delete) protects nothing: the table still holds
    what the index held. The connection's own setting comes back afterwards, whatever it was."""
    for setting in (1, 0):
        conn.execute(f"PRAGMA secure_delete = {setting}")
        statements = traced(conn)
        import_csv(conn, sample.write_market(tmp_path / f"m{setting}.csv", 3_000 * (1 + setting), seed=setting))
        drops = [i for i, s in enumerate(statements) if s.startswith("DROP INDEX")]
        assert drops and statements[drops[0] - 1] == "PRAGMA secure_delete = FAST"
        assert statements[drops[-1] + 1] == f"PRAGMA secure_delete = {setting}"
        assert conn.execute("PRAGMA secure_delete").fetchone() == (setting,)


def test_the_sorts_after_the_rows_may_use_helper_threads_and_the_setting_comes_back(conn, tmp_path, small_thresholds):
    conn.execute("PRAGMA threads = 0")
    statements = traced(conn)
    import_csv(conn, sample.write_market(tmp_path / "m.csv", 3_000, seed=1))
    sorting = statements.index(f"PRAGMA threads = {batch.SORT_THREADS}")
    assert not [s for s in statements[:sorting] if s.startswith("CREATE INDEX")]
    assert [s for s in statements[sorting:] if s.startswith("CREATE INDEX")]  # the bulk path's builds come after
    assert statements[-1] == "PRAGMA threads = 0" and conn.execute("PRAGMA threads").fetchone() == (0,)


def index_statistics(path):
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl = 'scored_listings'").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("then_roll_back", [False, True])
def test_statistics_of_indexes_built_again_are_kept(db_path, tmp_path, small_thresholds, monkeypatch, then_roll_back):
    from click.testing import CliRunner
    from datasette.cli import cli as datasette_cli

    from datasette_glyph.engine import lineage

    monkeypatch.setattr(lineage, "REBUILD_INDEXES_MIN_ROWS", 1_000)

    def run(*args):
        result = CliRunner().invoke(datasette_cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run("glyph-import", str(db_path), str(sample.write_market(tmp_path / "small.csv", 200, seed=1)), "--no-keep-file")
    conn = sqlite3.connect(db_path)
    conn.execute("ANALYZE")
    conn.close()
    analyzed = index_statistics(db_path)
    rebuilt = {name for name, sql in secondary_indexes(sqlite3.connect(db_path)) if not sql.startswith("CREATE UNIQUE")}
    assert rebuilt <= {idx for _, idx, _ in analyzed} and len(rebuilt) >= 4
    big = sample.write_market(tmp_path / "big.csv", 3_000, seed=2)
    output = run("glyph-import", str(db_path), str(big), "--no-keep-file", "--json")
    if then_roll_back:
        run("glyph-rollback", str(db_path), json.loads(output)["import_id"], "--yes")
    # Every index is back with the statistics ANALYZE gave it (the planner's, until the next ANALYZE)
    assert index_statistics(db_path) == analyzed
