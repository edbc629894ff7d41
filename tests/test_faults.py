"""Faults on the commit path: a COMMIT that fails, a full disk, a lock held by another process.

Whatever fails, the import is refused as a whole, the connection is left with no transaction open (so the
next import really commits), and nothing is reported as imported that a fresh connection cannot read back.
Each case runs with the database in WAL mode and in the rollback-journal mode a ``VACUUM INTO`` copy has.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from datasette_glyph.engine import migrator
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import StorageError, connect

from .locks import lock_held_elsewhere
from .server import make_scored_csv, running_server
from .support import FULL_DISK_PLUGIN

CSV = b"canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score\nA10,24,0,False,150,2397.01,0.6504\n"


@pytest.fixture(params=["wal", "delete"])
def db(request, tmp_path) -> Path:
    """A migrated database in WAL mode, or its VACUUM INTO copy, which is in rollback-journal mode."""
    path = tmp_path / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn)
    if request.param == "delete":
        copy = tmp_path / "copy.db"
        conn.execute("VACUUM INTO ?", [str(copy)])
        path = copy
    conn.close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == request.param
    return path


def engine_connection(path: Path, busy_ms: int = 200) -> sqlite3.Connection:
    """A connection that keeps the file's journal mode (as a server with ``migrate: false`` does)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    return conn


def batches(path: Path) -> list:
    """What a fresh connection reads back: (record_count, status) of every batch, and the row count."""
    conn = sqlite3.connect(path)
    try:
        found = conn.execute("SELECT record_count, status FROM import_batches ORDER BY id").fetchall()
        return [found, conn.execute("SELECT count(*) FROM scored_listings").fetchone()[0]]
    finally:
        conn.close()


def test_a_commit_refused_by_a_reader_rolls_back_and_the_next_import_commits(tmp_path):
    path = tmp_path / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn)
    conn.execute("VACUUM INTO ?", [str(tmp_path / "copy.db")])
    conn.close()
    path = tmp_path / "copy.db"
    conn = engine_connection(path)
    # In rollback-journal mode COMMIT needs every reader gone; the reader here stays.
    with lock_held_elsewhere(path, "read"):
        with pytest.raises(StorageError) as caught:
            import_csv(conn, io.BytesIO(CSV))
        assert conn.in_transaction is False
    assert (caught.value.kind, caught.value.status) == ("busy", 503)
    assert str(caught.value) == (
        "The database is locked by another process; the import was not saved (nothing was written). Try again."
    )
    assert batches(path) == [[], 0]
    result = import_csv(conn, io.BytesIO(CSV))
    conn.close()
    assert batches(path) == [[(1, "complete")], 1]
    assert result.record_count == 1


def test_a_writer_elsewhere_means_a_clear_refusal(db):
    conn = engine_connection(db)
    with lock_held_elsewhere(db, "write"):
        with pytest.raises(StorageError) as caught:
            import_csv(conn, io.BytesIO(CSV))
        assert conn.in_transaction is False
    assert caught.value.kind == "busy"
    assert batches(db) == [[], 0]
    import_csv(conn, io.BytesIO(CSV))
    assert batches(db) == [[(1, "complete")], 1]


def test_a_full_database_refuses_the_import_and_writes_nothing(db):
    conn = engine_connection(db)
    import_csv(conn, io.BytesIO(CSV))
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = CSV + b"".join(b"A10,24,0,False,150,%d.5,0.5\n" % i for i in range(5000))
    with pytest.raises(StorageError) as caught:
        import_csv(conn, io.BytesIO(big))
    assert (caught.value.kind, caught.value.status) == ("full", 507)
    assert str(caught.value) == "The database's disk is full; the import was not saved (nothing was written)."
    assert conn.in_transaction is False
    assert batches(db) == [[(1, "complete")], 1]
    conn.execute("PRAGMA max_page_count = 1073741823")
    import_csv(conn, io.BytesIO(big))
    assert batches(db) == [[(1, "complete"), (5001, "complete")], 5002]


def test_a_read_only_database_file_is_named_as_such(db, tmp_path):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(StorageError) as caught:
        import_csv(conn, io.BytesIO(CSV))
    assert (caught.value.kind, caught.value.status) == ("readonly", 503)
    assert str(caught.value) == "The database is read-only; the import was not saved (nothing was written)."
    assert batches(db) == [[], 0]


# --- The same faults through a real server ----------------------------------------------------------------


def server_batches(server) -> list:
    return [(b["record_count"], b["status"]) for b in server.get("/api/imports").json()["imports"]]


def test_a_server_never_acknowledges_an_import_whose_commit_failed(tmp_path):
    original = tmp_path / "glyph.db"
    conn = connect(original)
    migrator.migrate(conn)
    conn.execute("VACUUM INTO ?", [str(tmp_path / "copy.db")])
    conn.close()
    path = tmp_path / "copy.db"  # rollback-journal mode, and the server is not told to migrate it
    csv_path = tmp_path / "one.csv"
    csv_path.write_bytes(CSV)
    config = {"allow_import": True, "migrate": False, "write_wait_ms": 1000}
    with running_server(path, plugin_config=config) as server:
        with lock_held_elsewhere(path, "read"):
            refused = server.upload_csv(csv_path)
        assert (refused.status, refused.headers.get("retry-after"), refused.json()) == (
            503,
            "5",
            {
                "ok": False,
                "errors": [
                    {
                        "message": "The database copy is busy (another process holds it) and the write could not "
                        "be committed within 1000 ms. Nothing was written; try again."
                    }
                ],
                "more": 0,
            },
        )
        accepted = server.upload_csv(csv_path)
        assert (accepted.status, accepted.json()["ok"], accepted.json()["record_count"]) == (200, True, 1)
        assert server_batches(server) == [(1, "complete")]
        server.restart()
        assert server_batches(server) == [(1, "complete")]
        assert "Traceback" not in server.log()
    assert batches(path) == [[(1, "complete")], 1]


def test_a_server_with_a_full_disk_answers_507_and_keeps_nothing(tmp_path, db_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "full_disk.py").write_text(FULL_DISK_PLUGIN)
    csv_path = tmp_path / "big.csv"
    csv_path.write_bytes(CSV + b"".join(b"A10,24,0,False,150,%d.5,0.5\n" % i for i in range(20000)))
    with running_server(
        db_path, plugin_config={"allow_import": True}, extra_args=["--plugins-dir", str(plugins)]
    ) as server:
        answer = server.upload_csv(csv_path)
        assert (answer.status, answer.json()) == (
            507,
            {
                "ok": False,
                "errors": [{"message": "The database's disk is full; the import was not saved (nothing was written)."}],
                "more": 0,
            },
        )
        assert server_batches(server) == []
        assert "Traceback" not in server.log()
    assert batches(db_path) == [[], 0]


# --- The command line on a full disk and a read-only filesystem ------------------------------------------


def in_own_mounts(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a shell script in a mount namespace of its own, so that it can mount a tiny or read-only filesystem."""
    return subprocess.run(
        ["unshare", "--mount", "bash", "-euc", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )


def datasette_script() -> str:
    return str(Path(sys.executable).parent / "datasette")


CHECK = (
    "import sqlite3; c = sqlite3.connect('disk/glyph.db'); "
    "print(c.execute('SELECT record_count, status FROM import_batches').fetchall(), "
    "c.execute('PRAGMA integrity_check').fetchone()[0])"
)


KEPT_FULL = (
    "The original file could not be kept in disk/glyph.db-files.db (No space left on device); the import was not "
    "saved (nothing was written). Make room there, or set keep_files: false (--no-keep-file)."
)


@pytest.mark.parametrize(
    "options,errors,stored",
    [
        # the database fills the disk: the big file fails, and the space its rows took serves the small one
        (
            "--no-keep-file",
            [
                "Error: big.csv was not imported (1 error); nothing was written:",
                "  big.csv: The database's disk is full; the import was not saved (nothing was written).",
            ],
            ["exit 1", "[(1, 'complete')] ok"],
        ),
        # the kept originals share the disk: the big file's original is kept (renamed into place) before its commit
        # fails for want of room, and stays until the startup sweep removes it (no committed batch names it); with
        # the database's grown WAL it leaves no room for the small file's original, which is refused as well
        (
            "",
            [
                "Error: big.csv was not imported (1 error); nothing was written:",
                "  big.csv: The database's disk is full; the import was not saved (nothing was written).",
                "Error: small.csv was not imported (1 error); nothing was written:",
                f"  small.csv: {KEPT_FULL}",
            ],
            ["exit 1", "[] ok"],
        ),
    ],
)
def test_glyph_import_on_a_full_disk_reports_each_file_on_one_line_and_goes_on(tmp_path, options, errors, stored):
    make_scored_csv(tmp_path / "big.csv", 20_000)
    (tmp_path / "small.csv").write_bytes(CSV)
    script = f"""
        mkdir disk
        # room for the migrated file and its WAL; not for big.csv (about 5 MB as rows)
        mount -t tmpfs -o size=2m tmpfs disk
        {datasette_script()} glyph-migrate disk/glyph.db > /dev/null
        {datasette_script()} glyph-import disk/glyph.db big.csv small.csv {options} && echo "exit 0" || echo "exit $?"
        {sys.executable} -c "{CHECK}"
    """
    run = in_own_mounts(script, tmp_path)
    out = run.stdout.splitlines()
    imported = [line for line in out if line.startswith("Imported 1 row from small.csv as ")]
    assert (run.stderr.splitlines(), len(imported), out[len(imported) :]) == (
        errors,
        int("complete" in stored[1]),
        stored,
    )


def test_glyph_import_and_diff_on_a_read_only_filesystem(tmp_path):
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "glyph.db"
    conn = connect(db)
    migrator.migrate(conn)
    first = import_csv(conn, io.BytesIO(CSV)).import_id
    second = import_csv(conn, io.BytesIO(CSV.replace(b"2397.01", b"2400.0"))).import_id
    conn.close()
    (tmp_path / "small.csv").write_bytes(CSV)
    script = f"""
        mount --bind -o ro data data
        {datasette_script()} glyph-import data/glyph.db small.csv && echo "exit 0" || echo "exit $?"
        {datasette_script()} glyph-diff data/glyph.db {first} {second} --json > diff.json \\
            && echo "exit 0" || echo "exit $?"
    """
    run = in_own_mounts(script, tmp_path)
    assert (run.stderr, run.stdout) == (
        "Error: data/glyph.db is read-only (the file or its folder cannot be written); nothing was imported\n",
        "exit 1\nexit 0\n",
    )
    diff = json.loads((tmp_path / "diff.json").read_text())
    assert (diff["a"]["import_id"], diff["b"]["import_id"], diff["models"][0]["change"]["median_price"]) == (
        first,
        second,
        2.99,
    )


def test_a_write_in_a_transaction_opened_for_it_adds_no_savepoint_and_fails_whole(tmp_path):
    """run_guarded_write opens the transaction; the first transaction() inside it uses it as it is (a SAVEPOINT
    would copy every page it changes to a sub-journal), later ones nest as savepoints, and a failure is rolled
    back whole by the opener."""
    from datasette_glyph.engine.sqlite import opened_for_one_write, transaction

    conn = connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (x)")
    statements = []
    conn.set_trace_callback(statements.append)
    conn.execute("BEGIN IMMEDIATE")
    with opened_for_one_write(conn):
        with transaction(conn, "outer"):
            conn.execute("INSERT INTO t VALUES (1)")
            with transaction(conn, "inner"):
                conn.execute("INSERT INTO t VALUES (2)")
        with transaction(conn, "after"):
            conn.execute("INSERT INTO t VALUES (3)")
    conn.execute("COMMIT")
    assert [s for s in statements if "SAVEPOINT" in s] == ["SAVEPOINT inner", "SAVEPOINT after"]
    conn.execute("CREATE TEMP TRIGGER fail AFTER INSERT ON main.t WHEN NEW.x = 5 BEGIN SELECT RAISE(ABORT, 'no'); END")
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.IntegrityError):
        with opened_for_one_write(conn):
            with transaction(conn, "outer"):
                conn.execute("INSERT INTO t VALUES (4)")
                conn.execute("INSERT INTO t VALUES (5)")
    conn.execute("ROLLBACK")  # as run_guarded_write does
    assert conn.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,), (3,)]
    statements.clear()
    conn.execute("BEGIN IMMEDIATE")
    with transaction(conn, "plain"):  # nothing opened for it: a savepoint, as before
        pass
    conn.execute("COMMIT")
    assert "SAVEPOINT plain" in statements
