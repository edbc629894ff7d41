"""The files database of kept originals: owned by one store, found without being told, permissions of a download,
deleting one import's file, damage answered before the first byte, and the move from a folder of .gz files."""

import contextlib
import gzip
import hashlib
import json
import os
import sqlite3
import time
import zlib

from click.testing import CliRunner
from datasette.cli import cli
from datasette_test import Datasette, actor_cookie

from datasette_glyph.engine import file_upkeep, files, lineage, migrator
from datasette_glyph.engine.sqlite import connect

from .server import running_server

CSV = (
    b"canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score,region,source_url\r\n"
    b"H100_PCIE_80GB,80,7,True,350,21000.0,0.81,US,https://example.com/1\r\n"
    b"RTX_4090,24,0,False,450,1500.0,0.5,,https://example.com/3\r\n"
)
OTHER = CSV.replace(b"21000.0", b"22000.0")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def migrated(path):
    conn = connect(path)
    migrator.migrate(conn)
    conn.close()
    return path


def batch_ids(path):
    with contextlib.closing(connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT import_id FROM import_batches ORDER BY id")]


def test_two_stores_never_share_a_files_database(tmp_path):
    one, two = migrated(tmp_path / "one.db"), migrated(tmp_path / "two.db")
    (tmp_path / "day-1.csv").write_bytes(CSV)
    (tmp_path / "day-2.csv").write_bytes(OTHER)
    kept = tmp_path / "kept.db"
    assert run("glyph-import", one, tmp_path / "day-1.csv", "--files-db", kept, "--quiet").exit_code == 0
    refused = run("glyph-import", two, tmp_path / "day-2.csv", "--files-db", kept, "--quiet")
    assert (refused.exit_code, refused.output) == (
        1,
        f"Error: The files database {kept} holds the original files of another store ({one}); it never serves or "
        f"removes them for {two}. Give {two} a files database of its own\n",
    )
    assert batch_ids(two) == []
    # the store remembers its files database: no option needed any more, and prune touches its files only
    with contextlib.closing(sqlite3.connect(kept)) as files_conn, files_conn:
        files_conn.execute("UPDATE kept_files SET written_at = 0")
    assert run("glyph-files", one, "--prune", "--older-than", "3650d").output == (
        "Pruned 0 file(s) of 0 imports, freeing 0 bytes\n"
    )
    assert run("glyph-files", one, "--verify").output == f"Verified 1 kept file(s) in {kept}: 0 missing or damaged\n"
    assert not (tmp_path / "one.db-files.db").exists()
    assert run("glyph-files", two, "--verify").exit_code == 0


def test_a_custom_files_database_is_remembered(tmp_path):
    db = migrated(tmp_path / "glyph.db")
    (tmp_path / "day-1.csv").write_bytes(CSV)
    kept = tmp_path / "elsewhere" / "originals.db"
    kept.parent.mkdir()
    assert run("glyph-import", db, tmp_path / "day-1.csv", "--files-db", kept, "--quiet").exit_code == 0
    assert run("glyph-import", db, tmp_path / "day-1.csv", "--quiet").exit_code == 0
    first, second = batch_ids(db)
    again = run("glyph-reimport", db, first, "--json")
    assert (again.exit_code, json.loads(again.output)["reimport_of"]) == (0, first)
    assert run("glyph-files", db, "--verify").output == f"Verified 1 kept file(s) in {kept}: 0 missing or damaged\n"
    assert not (tmp_path / "glyph.db-files.db").exists()


def test_a_copy_of_a_store_never_sweeps_the_original_files_database(tmp_path):
    db = migrated(tmp_path / "glyph.db")
    (tmp_path / "day-1.csv").write_bytes(CSV)
    (tmp_path / "day-2.csv").write_bytes(OTHER)
    kept = tmp_path / "kept.db"
    run("glyph-import", db, tmp_path / "day-1.csv", "--files-db", kept, "--quiet")
    copy = tmp_path / "copy.db"
    with contextlib.closing(sqlite3.connect(db)) as source, contextlib.closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    run("glyph-import", db, tmp_path / "day-2.csv", "--quiet")  # the original has an import the copy lacks
    refused = run("glyph-files", copy, "--prune", "--older-than", "0d")
    assert (refused.exit_code, refused.output) == (
        1,
        f"Error: The files database {kept} belongs to the store at {db}, of which {copy} is a copy; a copy must "
        f"keep its files in a files database of its own (restore {kept} beside it as {copy}-files.db)\n",
    )
    assert run("glyph-files", db, "--verify").output == f"Verified 2 kept file(s) in {kept}: 0 missing or damaged\n"


def test_delete_one_imports_file_is_recorded(tmp_path):
    db = migrated(tmp_path / "glyph.db")
    (tmp_path / "day-1.csv").write_bytes(CSV)
    run("glyph-import", db, tmp_path / "day-1.csv", "--quiet")
    run("glyph-import", db, tmp_path / "day-1.csv", "--quiet")
    first, second = batch_ids(db)
    user = os.environ.get("USER") or __import__("getpass").getuser()
    shared = run("glyph-files", db, "--delete", first)
    with contextlib.closing(connect(db)) as conn:
        when = conn.execute("SELECT removed_at FROM import_files WHERE import_id = ?", [first]).fetchone()[0]
    assert (shared.exit_code, shared.output) == (
        0,
        f"Deleted the kept file of {first} (recorded as deleted by {user} at {when}); the same bytes stay kept for "
        f"import(s) {second}\n",
    )
    gone = run("glyph-files", db, "--delete", second)
    with contextlib.closing(connect(db)) as conn:
        rows = conn.execute("SELECT import_id, removed_by, removed_how FROM import_files ORDER BY rowid").fetchall()
        when = conn.execute("SELECT removed_at FROM import_files WHERE import_id = ?", [second]).fetchone()[0]
        stored = conn.execute("SELECT stored_bytes FROM import_files WHERE import_id = ?", [second]).fetchone()[0]
    assert (gone.exit_code, gone.output) == (
        0,
        f"Deleted the kept file of {second}, freeing {stored:,} bytes (recorded as deleted by {user} at {when})\n",
    )
    assert rows == [(first, user, "deleted"), (second, user, "deleted")]
    with contextlib.closing(sqlite3.connect(tmp_path / "glyph.db-files.db")) as files_conn:
        assert files_conn.execute("SELECT COUNT(*) FROM kept_chunks").fetchone() == (0,)
    again = run("glyph-files", db, "--delete", second)
    assert (again.exit_code, again.output) == (
        1,
        f"Error: The original file of import {second} was deleted by {user} at {when} ({db}); nothing was deleted\n",
    )
    reimport = run("glyph-reimport", db, second)
    assert reimport.output == (
        f"Error: The original file of import {second} was deleted by {user} at {when} ({db}); nothing was imported\n"
    )


def test_download_needs_the_rows_permissions_and_a_rolled_back_one_needs_rollback(tmp_path):
    db = migrated(tmp_path / "glyph.db")
    (tmp_path / "day-1.csv").write_bytes(CSV)
    (tmp_path / "day-2.csv").write_bytes(OTHER)
    run("glyph-import", db, tmp_path / "day-1.csv", "--quiet")
    run("glyph-import", db, tmp_path / "day-2.csv", "--quiet")
    kept, rolled = batch_ids(db)
    with contextlib.closing(connect(db)) as conn:
        lineage.rollback_import(conn, rolled, actor="ops")
    metadata = {"databases": {"glyph": {"tables": {"scored_listings": {"allow": {"id": "alice"}}}}}}
    plugin = {"allow_rollback": {"id": "alice"}}
    with running_server(db, metadata=metadata, plugin_config=plugin, log_dir=tmp_path) as server:
        anonymous = server.get(f"/api/imports/{kept}/file")
        assert (anonymous.status, anonymous.json()["errors"]) == (
            403,
            [{"message": "You may not view scored_listings"}],
        )
        assert server.get("/api/listings").status == 403
    metadata = {"databases": {"glyph": {"allow": True}}}
    with running_server(db, metadata=metadata, plugin_config=plugin, log_dir=tmp_path) as server:
        assert (server.get(f"/api/imports/{kept}/file").body, server.get(f"/api/imports/{rolled}/file").status) == (
            CSV,
            403,
        )
        assert server.get(f"/api/imports/{rolled}/file").json()["errors"] == [
            {
                "message": f"Import {rolled} was rolled back: its original file is kept for re-import, and "
                "downloading it needs the glyph-rollback permission (An anonymous request has not got it)"
            }
        ]
        signer = Datasette(memory=True, secret=server.env["DATASETTE_SECRET"])
        as_alice = {"Cookie": "ds_actor=" + actor_cookie(signer, {"id": "alice"})}
        assert server.get(f"/api/imports/{rolled}/file", headers=as_alice).body == OTHER


def test_damage_is_a_503_before_the_first_byte(tmp_path):
    db = migrated(tmp_path / "glyph.db")
    big = CSV + b"".join(
        b"RTX_4090,24,0,False,450,%d.0,0.5,,https://example.com/r%d\r\n" % (1000 + i % 900, i) for i in range(60_000)
    )
    (tmp_path / "big.csv").write_bytes(big)
    (tmp_path / "small.csv").write_bytes(OTHER)
    run("glyph-import", db, tmp_path / "big.csv", "--quiet")
    run("glyph-import", db, tmp_path / "small.csv", "--quiet")
    first, second = batch_ids(db)
    files_db = tmp_path / "glyph.db-files.db"
    with contextlib.closing(sqlite3.connect(files_db)) as files_conn, files_conn:
        big_id = files_conn.execute("SELECT id FROM kept_files WHERE sha256 = ?", [hashlib.sha256(big).hexdigest()])
        big_id = big_id.fetchone()[0]
        assert files_conn.execute("SELECT COUNT(*) FROM kept_chunks WHERE file_id = ?", [big_id]).fetchone()[0] > 1
        # the big file: its last piece altered and compressed again (it decompresses; only the SHA-256 tells)
        seq, data = files_conn.execute(
            "SELECT seq, data FROM kept_chunks WHERE file_id = ? ORDER BY seq DESC LIMIT 1", [big_id]
        ).fetchone()
        altered = zlib.decompress(data).replace(b"RTX_4090", b"RTX_4080", 1)
        files_conn.execute(
            "UPDATE kept_chunks SET data = ? WHERE file_id = ? AND seq = ?", [zlib.compress(altered), big_id, seq]
        )
        # the small file: a byte flipped in its stored piece
        small = files_conn.execute(
            "SELECT file_id, data FROM kept_chunks WHERE file_id <> ? ORDER BY file_id LIMIT 1", [big_id]
        ).fetchone()
        flipped = bytearray(small[1])
        flipped[len(flipped) // 2] ^= 0xFF
        files_conn.execute("UPDATE kept_chunks SET data = ? WHERE file_id = ?", [bytes(flipped), small[0]])
    with running_server(db, plugin_config={}, log_dir=tmp_path) as server:
        for import_id in (first, second):
            response = server.get(f"/api/imports/{import_id}/file")
            assert (response.status, response.json()) == (
                503,
                {"ok": False, "errors": [{"message": files.damaged_message(import_id)}], "more": 0},
            )
        log = server.log()
    assert "Traceback" not in log


def test_the_migration_moves_a_folder_of_gz_files_in_and_back(tmp_path):
    db = tmp_path / "glyph.db"
    conn = connect(db)
    migrator.migrate(conn, target="0009")
    folder = tmp_path / "glyph.db-files"
    folder.mkdir(mode=0o700)
    sha = hashlib.sha256(CSV).hexdigest()
    batch = "11111111-2222-4333-8444-555555555555"
    conn.execute(
        "INSERT INTO import_batches (import_id, filename, sha256, bytes, status, record_count) "
        "VALUES (?, 'day-1.csv', ?, ?, 'complete', 2)",
        [batch, sha, len(CSV)],
    )
    conn.execute(
        "INSERT INTO import_files (import_id, sha256, bytes, stored_bytes, media_type) VALUES (?, ?, ?, 1, ?)",
        [batch, sha, len(CSV), files.CSV_TYPE],
    )
    (folder / f"{sha}.gz").write_bytes(gzip.compress(CSV))
    (folder / f"{'f' * 64}.gz").write_bytes(gzip.compress(b"another store's"))  # no batch here names it
    migrator.migrate(conn)
    assert os.listdir(folder) == [f"{'f' * 64}.gz"]
    store = files.open_store(conn, db, create=False)
    assert file_upkeep.verify(conn, store) == (1, [])
    reader = files.open_verified(store, files.file_row(conn, batch), batch)
    assert b"".join(reader.pieces()) == CSV
    reader.close()
    migrator.migrate(conn, target="0009")
    assert sorted(os.listdir(folder)) == sorted([f"{sha}.gz", f"{'f' * 64}.gz"])
    assert gzip.decompress((folder / f"{sha}.gz").read_bytes()) == CSV
    assert not (tmp_path / "glyph.db-files.db").exists()
    conn.close()


def test_the_server_sweeps_only_its_own_files(tmp_path):
    db = migrated(tmp_path / "glyph.db")
    (tmp_path / "day-1.csv").write_bytes(CSV)
    run("glyph-import", db, tmp_path / "day-1.csv", "--quiet")
    old = time.time() - files.SWEEP_GRACE_SECONDS - 5
    files_db = tmp_path / "glyph.db-files.db"
    with contextlib.closing(sqlite3.connect(files_db)) as files_conn, files_conn:
        files_conn.execute("UPDATE kept_files SET written_at = ?", [old])
        files_conn.execute("INSERT INTO kept_files (sha256, written_at) VALUES (?, ?)", ["e" * 64, old])
    with running_server(db, plugin_config={}, log_dir=tmp_path) as server:
        assert server.log().count("removed 1 kept file(s) that no import names") == 1
    with contextlib.closing(sqlite3.connect(files_db)) as files_conn:
        assert files_conn.execute("SELECT sha256 FROM kept_files").fetchall() == [(hashlib.sha256(CSV).hexdigest(),)]
