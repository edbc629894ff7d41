"""Deltas kept at import time: they equal the on-demand diff, follow rollbacks, and come from the migration too."""

import json
import os
import random
import subprocess
import sys

import pytest
from click.testing import CliRunner
from datasette.cli import cli

from datasette_glyph.engine import deltas, lineage, migrator, sample
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import connect

from .support import Tables, make_ds, text_of

# How each diff is asked for: every kind, pages that start and end inside and across kinds, past the end.
PAGINGS = [
    {"limit": None},
    {"limit": 100},
    {"limit": 1},
    {"limit": 7, "offset": 3},
    {"limit": 5, "offset": 12},
    {"limit": 10, "offset": 10_000},
    {"kind": "changed", "limit": None},
    {"kind": "added", "limit": 3, "offset": 1},
    {"kind": "removed", "limit": 4, "offset": 2},
    {"kind": "removed", "limit": None, "offset": 5},
]


def on_demand(conn, a, b, **options):
    """The diff as computed from both imports' rows: what diff_imports gives with nothing kept."""
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM import_delta_models")
        assert deltas.kept_counts(conn, a, b) is None
        return lineage.diff_imports(conn, a, b, **options).to_dict()
    finally:
        conn.execute("ROLLBACK")


def kept(conn, a, b, **options):
    """The diff as read from the kept deltas (which must be there)."""
    assert deltas.kept_counts(conn, a, b) is not None
    return lineage.diff_imports(conn, a, b, **options).to_dict()


def messy(rows, rng):
    """A snapshot as real files are: some rows lose their source_url, some listings appear twice or three
    times in one file (at other prices; the last one counts), a few repeats come before the original."""
    rows = [dict(r) for r in rows]
    for row in rows:
        if rng.random() < 0.06:
            row["source_url"] = ""
    for _ in range(max(1, len(rows) // 12)):
        original = rng.choice(rows)
        copy = dict(original, price=round(float(original["price"]) * rng.choice([0.9, 1.0, 1.1]), 2))
        rows.insert(rng.randrange(len(rows) + 1), copy)
    return rows


def write(tmp_path, name, rows):
    path = tmp_path / f"{name}.csv"
    sample.write_csv(rows, path)
    return path


def random_market(conn, tmp_path, seed):
    """Two sources, each with its own market, imported in an interleaved order; returns the import ids in order."""
    rng = random.Random(seed)
    chains = {}
    for source, source_seed in (("market", seed), ("broker", seed + 100)):
        snapshots, _ = sample.market_snapshots(4, 60 + rng.randrange(60), seed=source_seed, changed=0.2, removed=0.1,
                                               added=0.1)  # fmt: skip
        chains[source] = [messy(s, rng) for s in snapshots]
    order = ["market", "market", "broker", "market", "broker", "broker", "market", "broker"]
    ids, position = [], {"market": 0, "broker": 0}
    for n, source in enumerate(order):
        rows = chains[source][position[source]]
        position[source] += 1
        ids.append(import_csv(conn, write(tmp_path, f"{n}-{source}", rows), source_name=source).import_id)
    # The same file again: every listing unchanged.
    ids.append(import_csv(conn, write(tmp_path, "again", rows), source_name="broker").import_id)
    return ids


def consecutive_pairs(conn, ids):
    pairs = []
    for b in ids:
        previous = lineage.previous_import(conn, b)
        if previous is not None:
            pairs.append((previous["import_id"], b))
    return pairs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kept_deltas_equal_the_on_demand_diff_for_every_consecutive_pair(conn, tmp_path, seed):
    ids = random_market(conn, tmp_path, seed)
    pairs = consecutive_pairs(conn, ids)
    # each source's first import has nothing to be compared with, and keeps nothing
    assert len(pairs) == len(ids) - 2
    firsts = [b for b in ids if lineage.previous_import(conn, b) is None]
    assert conn.execute(
        f"SELECT COUNT(*) FROM import_delta_models WHERE import_id IN ({', '.join('?' * len(firsts))})", firsts
    ).fetchone() == (0,)
    seen = dict.fromkeys(["changed", "added", "removed", "unchanged", "without", "duplicates"], 0)
    for a, b in pairs:
        for options in PAGINGS:
            assert kept(conn, a, b, **options) == on_demand(conn, a, b, **options), (a, b, options)
        whole = kept(conn, a, b, limit=None)["listings"]
        for name in ("changed", "added", "removed", "unchanged"):
            seen[name] += whole[name]
        seen["without"] += whole["without_source_url"]["a"] + whole["without_source_url"]["b"]
        seen["duplicates"] += whole["duplicate_source_urls"]["a"] + whole["duplicate_source_urls"]["b"]
    # the market exercised every case
    assert all(seen.values()), seen
    last = pairs[-1]
    assert kept(conn, *last)["listings"]["changed"] + kept(conn, *last)["total"] == 0  # the same file twice


def test_kept_per_model_counts_add_up_to_the_diff(conn, tmp_path):
    ids = random_market(conn, tmp_path, 4)
    for a, b in consecutive_pairs(conn, ids):
        diff = on_demand(conn, a, b, limit=None)
        rows = conn.execute(
            "SELECT canonical_model, changed, added, removed FROM import_delta_models WHERE import_id = ? "
            "ORDER BY canonical_model",
            [b],
        ).fetchall()
        by_model = {}
        for change in diff["changes"]:
            counts = by_model.setdefault(change["canonical_model"], {"changed": 0, "added": 0, "removed": 0})
            counts[change["kind"]] += 1
        assert [r for r in rows if any(r[1:])] == [
            (model, c["changed"], c["added"], c["removed"]) for model, c in sorted(by_model.items())
        ]


def kept_pairs(conn):
    return conn.execute(
        "SELECT DISTINCT previous_import_id, import_id FROM import_delta_models ORDER BY rowid"
    ).fetchall()


def three_imports(conn, tmp_path):
    snapshots, _ = sample.market_snapshots(3, 80, seed=7, changed=0.2, removed=0.1, added=0.1)
    return [
        import_csv(conn, write(tmp_path, f"day-{n}", rows), source_name="market").import_id
        for n, rows in enumerate(snapshots)
    ]


def test_rollback_of_the_middle_import_compares_the_next_with_the_one_before(conn, tmp_path):
    x, y, z = three_imports(conn, tmp_path)
    assert kept_pairs(conn) == [(x, y), (y, z)]
    lineage.rollback_import(conn, y)
    assert kept_pairs(conn) == [(x, z)]
    assert conn.execute("SELECT COUNT(*) FROM import_deltas WHERE import_id = ? OR previous_import_id = ?", [y, y]
                        ).fetchone() == (0,)  # fmt: skip
    for options in PAGINGS:
        assert kept(conn, x, z, **options) == on_demand(conn, x, z, **options)
    # a diff with the rolled-back import is computed (every listing of the other side counts)
    assert deltas.kept_counts(conn, x, y) is None
    assert lineage.diff_imports(conn, x, y).to_dict()["listings"]["removed"] > 0


@pytest.mark.parametrize("which, expected", [(0, ["y-z"]), (2, ["x-y"])])
def test_rollback_of_the_first_or_last_import(conn, tmp_path, which, expected):
    ids = three_imports(conn, tmp_path)
    names = dict(zip(ids, "xyz"))
    lineage.rollback_import(conn, ids[which])
    assert [f"{names[a]}-{names[b]}" for a, b in kept_pairs(conn)] == expected


def test_a_failed_rollback_keeps_the_deltas(conn, tmp_path):
    x, y, z = three_imports(conn, tmp_path)
    before = conn.execute("SELECT * FROM import_deltas ORDER BY rowid").fetchall()
    lineage.rollback_import(conn, y)
    with pytest.raises(lineage.AlreadyRolledBack):
        lineage.rollback_import(conn, y)
    after_one = conn.execute("SELECT * FROM import_deltas ORDER BY rowid").fetchall()
    assert before != after_one
    assert conn.execute("SELECT * FROM import_deltas ORDER BY rowid").fetchall() == after_one


def glyph(*args):
    """A datasette glyph-* command in a process of its own: (exit status, stdout, stderr)."""
    datasette = os.path.join(os.path.dirname(sys.executable), "datasette")
    done = subprocess.run([datasette, *map(str, args)], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def kept_rows(conn):
    order = "ORDER BY import_id, change, new_import_index, old_import_index, source_url"
    return (
        conn.execute(f"SELECT * FROM import_deltas {order}").fetchall(),
        conn.execute("SELECT * FROM import_delta_models ORDER BY import_id, canonical_model").fetchall(),
    )


KEPT_TABLES = ("import_deltas", "import_delta_models")


def in_order(rows, ids):
    """Kept rows with each import id replaced by its position in ``ids``, sorted."""
    position = {import_id: n for n, import_id in enumerate(ids)}
    return [sorted(tuple(position.get(v, v) for v in row) for row in table) for table in rows]


@pytest.fixture
def before_deltas(tmp_path):
    """A file at 0005 holding imports from two sources, one of them rolled back, then migrated by a real
    glyph-migrate: (path, connection, the complete imports in order, glyph-migrate's output)."""
    path = tmp_path / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn, target="0005")
    ids = random_market(conn, tmp_path, 5)
    lineage.rollback_import(conn, ids[3])
    conn.close()
    status, out, err = glyph("glyph-migrate", path)
    assert (status, err) == (0, "")
    conn = connect(path)
    return path, conn, ids[:3] + ids[4:], out


def test_the_migration_keeps_no_deltas_for_existing_imports_and_says_so(before_deltas):
    path, conn, ids, out = before_deltas
    pairs = consecutive_pairs(conn, ids)
    assert len(pairs) == 6  # 8 complete imports, two sources: each source's first has no previous import
    assert kept_pairs(conn) == []
    assert out.splitlines()[-1] == (
        "6 imports have no kept deltas (made before 0006_import_deltas); their diffs are computed from rows. "
        f"To keep them: datasette glyph-deltas {path}"
    )
    status, out, _ = glyph("glyph-migrate", path, "--status")
    assert status == 0 and "6 imports have no kept deltas" in out
    # Their diffs are computed from the rows meanwhile.
    a, b = pairs[-1]
    assert lineage.diff_imports(conn, a, b).to_dict() == on_demand(conn, a, b)
    assert glyph("glyph-deltas", path, "--dry-run")[:2] == (0, "6 imports have no kept deltas\n")
    assert kept_pairs(conn) == []


def test_glyph_deltas_keeps_what_each_import_would_have_kept(before_deltas, tmp_path):
    path, conn, ids, _ = before_deltas
    status, out, err = glyph("glyph-deltas", path)
    assert (status, err) == (0, "")
    pairs = consecutive_pairs(conn, ids)
    assert out.splitlines() == [f"Kept the deltas of {b} (after {a})" for a, b in pairs] + [
        "Kept the deltas of 6 imports"
    ]
    assert sorted(kept_pairs(conn)) == sorted(pairs)
    for a, b in pairs:
        for options in PAGINGS[:4]:
            assert kept(conn, a, b, **options) == on_demand(conn, a, b, **options)
    # The same rows as the same imports (and rollback) keep when they are made at the newest version.
    made = connect(tmp_path / "made.db")
    migrator.migrate(made)
    made_ids = random_market(made, tmp_path, 5)
    lineage.rollback_import(made, made_ids[3])
    made_ids = made_ids[:3] + made_ids[4:]
    assert kept_rows(made) != ([], [])
    assert in_order(kept_rows(made), made_ids) == in_order(kept_rows(conn), ids)
    assert glyph("glyph-deltas", path) == (0, "0 imports have no kept deltas\n", "")
    assert glyph("glyph-migrate", path)[1] == f"{path} is at {migrator.load_migrations()[-1].label}; nothing to do\n"
    # Down keeps them aside, with their rowids; up puts them back as they were, definitions included.
    everything = [conn.execute(f"SELECT rowid, * FROM {t} ORDER BY rowid").fetchall() for t in KEPT_TABLES]
    objects = "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name LIKE '%delta%' ORDER BY name"
    definitions = conn.execute(objects).fetchall()
    assert len(definitions) == 6  # two tables, three indexes, the primary key's
    migrator.migrate(conn, target="0005")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"import_deltas", "import_delta_models"} & names == set()
    aside = conn.execute(objects).fetchall()
    assert [row[1] for row in aside] == [
        "glyph_kept_0006_idx_import_delta_models_previous_import_id",
        "glyph_kept_0006_idx_import_deltas_import_id",
        "glyph_kept_0006_idx_import_deltas_source_url",
        "glyph_kept_0006_import_delta_models",
        "glyph_kept_0006_import_deltas",
        "sqlite_autoindex_glyph_kept_0006_import_delta_models_1",
    ]
    assert not any("REFERENCES" in (row[3] or "") for row in aside)  # never checked against the old import_batches
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert dict(migrator.kept_aside(conn)) == {
        "glyph_kept_0006_import_deltas": len(everything[0]),
        "glyph_kept_0006_import_delta_models": len(everything[1]),
    }
    migrator.migrate(conn)
    assert [conn.execute(f"SELECT rowid, * FROM {t} ORDER BY rowid").fetchall() for t in KEPT_TABLES] == everything
    assert conn.execute(objects).fetchall() == definitions
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert migrator.kept_aside(conn) == [] and deltas.missing(conn) == []


def test_a_rollback_below_0006_is_not_hidden_by_the_deltas_kept_aside(before_deltas):
    path, conn, ids, _ = before_deltas
    assert glyph("glyph-deltas", path)[0] == 0
    pairs = consecutive_pairs(conn, ids)
    migrator.migrate(conn, target="0005")
    gone = pairs[2][1]  # compared with the import before it, and the one after it with it
    status, out, err = glyph("glyph-rollback", path, gone, "--yes")
    assert (status, err) == (0, ""), out
    migrator.migrate(conn)
    ids.remove(gone)
    now = consecutive_pairs(conn, ids)
    (follower,) = [b for a, b in now if a == pairs[2][0] and (a, b) not in pairs]
    # The comparisons that still hold came back; the follower's, made with the import rolled back, did not.
    assert sorted(kept_pairs(conn)) == sorted(p for p in now if p[1] != follower)
    assert deltas.missing(conn) == [follower]
    assert glyph("glyph-deltas", path)[0] == 0
    for a, b in now:
        assert kept(conn, a, b, limit=None) == on_demand(conn, a, b, limit=None)


def test_an_interrupted_glyph_deltas_keeps_what_it_finished_and_goes_on(before_deltas):
    path, conn, ids, _ = before_deltas
    pairs = consecutive_pairs(conn, ids)
    failing = pairs[3][1]
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON import_delta_models WHEN NEW.import_id = "
        f"'{failing}' BEGIN SELECT RAISE(ABORT, 'disk said no'); END"
    )
    status, out, err = glyph("glyph-deltas", path)
    assert status == 1
    assert out.splitlines() == [f"Kept the deltas of {b} (after {a})" for a, b in pairs[:3]]
    assert err == (
        f"Error: {path}: disk said no; the deltas of 3 imports were kept before it, the others were not changed "
        "(run the command again to go on)\n"
    )
    assert sorted(kept_pairs(conn)) == sorted(pairs[:3])
    assert conn.execute("SELECT COUNT(*) FROM import_deltas WHERE import_id = ?", [failing]).fetchone() == (0,)
    conn.execute("DROP TRIGGER refuse")
    status, out, _ = glyph("glyph-deltas", path)
    assert (status, out.splitlines()[-1]) == (0, "Kept the deltas of 3 imports")
    assert sorted(kept_pairs(conn)) == sorted(pairs)


def test_glyph_deltas_below_0006_says_what_to_run(tmp_path):
    path = tmp_path / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn, target="0005")
    conn.close()
    status, out, err = glyph("glyph-deltas", path)
    assert (status, out, err) == (
        1,
        "",
        f"Error: {path} is at 0005 and keeps no deltas; run datasette glyph-migrate {path} first\n",
    )
    assert glyph("glyph-deltas", tmp_path / "none.db")[2] == f"Error: {tmp_path / 'none.db'} does not exist\n"


def test_migration_keeps_an_index_on_source_url_it_did_not_make(tmp_path):
    path = tmp_path / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn, target="0005")
    conn.execute("CREATE INDEX my_urls ON scored_listings(source_url, price)")
    before = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    migrator.migrate(conn)
    indexes = [r[0] for r in conn.execute("SELECT name FROM pragma_index_list('scored_listings')")]
    assert ("my_urls" in indexes, "idx_scored_listings_source_url" in indexes) == (True, False)
    migrator.migrate(conn, target="0005")
    assert conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == before


@pytest.mark.asyncio
async def test_cli_api_and_page_agree_on_kept_deltas(db_path, tmp_path):
    snapshots, _ = sample.market_snapshots(2, 120, seed=9, changed=0.2, removed=0.1, added=0.1)
    runner = CliRunner()
    ids = []
    for n, rows in enumerate(snapshots):
        result = runner.invoke(
            cli, ["glyph-import", str(db_path), str(write(tmp_path, f"day-{n}", messy(rows, random.Random(n)))),
                  "--source", "market", "--json"], catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        ids.append(json.loads(result.stdout)["import_id"])
    a, b = ids
    conn = connect(db_path)
    assert deltas.kept_counts(conn, a, b) is not None
    expected = on_demand(conn, a, b, kind="changed", limit=5, offset=2)
    conn.close()
    cli_result = runner.invoke(
        cli, ["glyph-diff", str(db_path), a, b, "--json", "--kind", "changed", "--limit", "5", "--offset", "2"]
    )
    from_cli = json.loads(cli_result.stdout)
    ds = await make_ds(db_path)
    from_api = (await ds.client.get(f"/api/imports/{a}/diff/{b}?kind=changed&limit=5&offset=2")).json()
    assert from_api["next"].endswith(from_cli["next"])
    assert from_cli["changes"] == from_api["changes"] == expected["changes"]
    for key in ("listings", "models", "total", "next_offset", "notes"):
        assert from_cli[key] == from_api[key] == expected[key], key
    html = (await ds.client.get(f"/-/glyph/imports/{a}/diff/{b}?kind=changed&limit=5&offset=2")).text
    assert [row[1] for row in Tables(html).tables["glyph-diff-changes"][1:]] == [
        c["source_url"] for c in expected["changes"]
    ]
    counts = expected["listings"]
    assert text_of(html, "glyph-diff-kinds") == (
        f"all changes ({counts['changed'] + counts['added'] + counts['removed']}) changed ({counts['changed']}) "
        f"added ({counts['added']}) removed ({counts['removed']})"
    )
