"""Crash safety: SIGKILL a real process part way through a migration or an import, then look at what is left.

After every kill the database must pass ``PRAGMA integrity_check``, hold no trace of the interrupted work
(a migration is either applied whole or not at all; an import's rows are all there or none), keep every
earlier row exactly, and accept the next migration or import. The functions that do one crash run take
the sizes as arguments: CI runs them small here, ``benchmarks/crash.py`` runs them with a million rows.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pytest

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from . import legacy_store
from .server import datasette_command, make_scored_csv, start_server
from .support import integrity, wait_until

LEGACY_BATCH = "dbaea5cd-0a4d-52ca-88af-4737290a1213"
DATA_TABLES = ("models", "listings", "scored_listings", "quantized_listings")


# Databases ----------------------------------------------------------------------------------------------


def build_large_legacy_database(path: Path, rows: int) -> None:
    """A database as the old store left it, with ``rows`` scored listings spread over batches.

    A quarter of the rows name no batch, a quarter name a batch that import_batches does not hold (its
    record was deleted by hand: a broken key that 0002 covers with a ``recovered`` record and that going
    down gives back), the rest name one of two real batches; one in ten rows also has a raw listing and a
    quantized listing.
    """
    conn = connect(path)
    conn.executescript(legacy_store.PRE_LINEAGE)
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO import_batches (import_id, imported_at, source, record_count) VALUES "
        "('batch-a', '2025-03-01 10:00:00', 'marketplace', 0), ('batch-b', '2025-03-02 10:00:00', 'broker', 0)"
    )
    conn.execute(
        "INSERT INTO models (model, vram_gb, tdp_watts, nvlink, import_id) VALUES "
        "('A100_40GB_PCIE', 40, 250, 1, 'batch-a'), ('H100_PCIE_80GB', 80, 350, 1, NULL), "
        "('RTX_4090', 24, 450, 0, 'batch-b')"
    )
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
        INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, nvlink, score, condition, quantity,
            seller, region, source_url, source_type, seen_at, notes, import_id)
        SELECT CASE i % 3 WHEN 0 THEN 'A100_40GB_PCIE' WHEN 1 THEN 'H100_PCIE_80GB' ELSE 'RTX_4090' END,
            round(500 + (i * 7919 % 30000) + (i % 100) / 100.0, 2), 24 + i % 3 * 28, 250 + i % 3 * 100, i % 2,
            (i % 1000) / 1000.0, CASE i % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'used' ELSE NULL END, 1 + i % 50,
            'Seller ' || (i % 200), CASE i % 4 WHEN 0 THEN 'US' WHEN 1 THEN 'EU' WHEN 2 THEN 'APAC' ELSE NULL END,
            'https://example.com/listing/' || i, 'marketplace', '2025-03-01T00:00:00Z',
            CASE WHEN i % 97 = 0 THEN 'Tested, "like new", boxed' END,
            CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN 'batch-a' WHEN 2 THEN 'batch-b' ELSE 'batch-missing' END
        FROM n
        """,
        {"rows": rows},
    )
    conn.execute(
        "INSERT INTO listings (title, price, canonical_model, match_type, match_score, import_id) "
        "SELECT 'Listing ' || id, price, canonical_model, 'exact', 1.0, import_id "
        "FROM scored_listings WHERE id % 10 = 0"
    )
    conn.execute(
        "INSERT INTO quantized_listings (scored_listing_id, model_7b, model_13b, model_70b, import_id) "
        "SELECT id, 1, 1, id % 2, import_id FROM scored_listings WHERE id % 10 = 0"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _inherited_columns() -> Dict[str, List[str]]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(legacy_store.PRE_LINEAGE)
    tables = ("import_batches", "schema_version") + DATA_TABLES
    columns = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    conn.close()
    return columns


INHERITED_COLUMNS = _inherited_columns()


def inherited_content(conn: sqlite3.Connection) -> Dict[str, tuple]:
    """(row count, SHA-256) of every inherited table over its inherited columns, whatever the version.

    The legacy batch id that 0002 gives rows with no batch counts as NULL, and the batch records 0002
    adds (legacy, recovered) are left out: down gives exactly these back.
    """
    batch_columns = {r[1] for r in conn.execute("PRAGMA table_info(import_batches)")}
    content = {}
    for table, columns in INHERITED_COLUMNS.items():
        select = ", ".join(f"NULLIF({c}, '{LEGACY_BATCH}')" if c == "import_id" else c for c in columns)
        where = (
            "WHERE status NOT IN ('legacy', 'recovered')"
            if table == "import_batches" and "status" in batch_columns
            else ""
        )
        digest, count = hashlib.sha256(), 0
        for row in conn.execute(f"SELECT {select} FROM {table} {where} ORDER BY id"):
            digest.update(repr(row).encode("utf-8"))
            count += 1
        content[table] = (count, digest.hexdigest())
    return content


def schema_signature(conn: sqlite3.Connection) -> tuple:
    """Every table, index and trigger with its SQL, bookkeeping aside."""
    return tuple(
        conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE 'glyph\\_%' ESCAPE '\\' ORDER BY type, name"
        ).fetchall()
    )


def version_signatures(work_dir: Path) -> Dict[tuple, str]:
    """The schema of each whole version, as reached going up from the old store's schema and back down."""
    path = work_dir / "signatures.db"
    build_large_legacy_database(path, 10)
    conn = connect(path)
    signatures = {schema_signature(conn): "0001"}
    ids = [m.id for m in migrator.load_migrations()]
    for target in ids[1:] + list(reversed(ids[:-1])):
        migrator.migrate(conn, target=target)
        signatures.setdefault(schema_signature(conn), target)
    conn.close()
    return signatures


def lineage_problems(conn: sqlite3.Connection) -> List[tuple]:
    """Batches whose rows in a table are not numbered exactly 1..n (at versions that have import_index)."""
    problems = []
    for table in DATA_TABLES:
        columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if "import_index" not in columns:
            continue
        problems += conn.execute(
            f"SELECT '{table}', import_id, COUNT(*), MIN(import_index), MAX(import_index) FROM {table} "
            "GROUP BY import_id HAVING MIN(import_index) != 1 OR MAX(import_index) != COUNT(*)"
        ).fetchall()
    return problems


def wal_size(db_path: Path) -> int:
    try:
        return os.path.getsize(str(db_path) + "-wal")
    except FileNotFoundError:
        return 0


def copy_database(source: Path, target: Path) -> None:
    """Copy a database whose WAL has been checkpointed (no -wal content), replacing ``target`` and its WAL."""
    for suffix in ("", "-wal", "-shm"):
        with_suffix = Path(str(target) + suffix)
        if with_suffix.exists():
            with_suffix.unlink()
    shutil.copyfile(source, target)


# Migration crash runs -----------------------------------------------------------------------------------


def kill_fractions(points: int, seed: int, low: float = 0.03, high: float = 0.9) -> List[float]:
    """``points`` random fractions, one in each of ``points`` equal slices of [low, high]: spread, not bunched."""
    rng = random.Random(seed)
    width = (high - low) / points
    return [round(low + width * (i + rng.random()), 3) for i in range(points)]


@dataclass
class MigrationKill:
    direction: str
    fraction: float
    killed: bool  # False if the command finished before the kill time came
    seconds_into_write: float
    version_after: str


def kill_migrate_part_way(db_path: Path, argv: Sequence[str], after: Optional[float]) -> tuple:
    """Run ``argv``; once it starts writing (its WAL grows), SIGKILL it ``after`` seconds later (None: never).

    Returns (killed, seconds from its first write to the kill, or to its exit if it finished first).
    """
    process = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while wal_size(db_path) == 0 and process.poll() is None:
            time.sleep(0.002)
        started = time.monotonic()
        deadline = started + (after if after is not None else float("inf"))
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.002)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        returncode = process.wait()
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read().decode("utf-8", "replace")
        process.stderr.close()
    if returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"{' '.join(argv)} failed with {returncode}: {stderr}")
    return returncode == -signal.SIGKILL, elapsed


def broken_keys(conn: sqlite3.Connection) -> set:
    return {(table, rowid, parent) for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")}


def check_whole_version(path: Path, signatures: Dict[tuple, str], expected_content: Dict[str, tuple]) -> str:
    """Assert the database at ``path`` is sound and at one whole version with every row intact; return it.

    The only broken foreign keys are the ones the old store's file came with (rows naming the batch whose
    record was deleted), and only at 0001, where 0002's recovered record does not cover them.
    """
    assert integrity(path) == ["ok"]
    conn = connect(path)
    try:
        signature = schema_signature(conn)
        assert signature in signatures, "schema is not that of any whole version"
        version = signatures[signature]
        assert migrator.current_version(conn) == version
        assert inherited_content(conn) == expected_content
        assert lineage_problems(conn) == []
        broken = broken_keys(conn)
        assert {parent for _, _, parent in broken} <= {"import_batches"}
        assert {
            conn.execute(f"SELECT import_id FROM {t} WHERE rowid = ?", [r]).fetchone()[0] for t, r, _ in broken
        } <= {"batch-missing"}
        assert (version == "0001") == bool(broken)
        return version
    finally:
        conn.close()


def migration_crash_runs(work_dir: Path, rows: int, points: int, seed: int, log: Callable = lambda *a: None):
    """Kill ``datasette glyph-migrate`` at ``points`` moments going up, then going down (``--to 0001``).

    Each kill starts from a fresh copy of the starting database; afterwards the database must be at a
    whole version with every row intact, and running the migration again must finish the job.
    Returns (list of MigrationKill, seconds of the up and down runs uninterrupted).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    signatures = version_signatures(work_dir)
    newest = migrator.load_migrations()[-1].id
    legacy = work_dir / "legacy.db"
    build_large_legacy_database(legacy, rows)
    conn = connect(legacy)
    content = inherited_content(conn)
    conn.close()

    # Uninterrupted runs of the command: how long each direction writes, and the starting point of "down"
    migrated = work_dir / "migrated.db"
    copy_database(legacy, migrated)
    _, up_seconds = kill_migrate_part_way(migrated, [datasette_command(), "glyph-migrate", str(migrated)], None)
    assert check_whole_version(migrated, signatures, content) == newest
    rolled_back = work_dir / "rolled_back.db"
    copy_database(migrated, rolled_back)
    argv = [datasette_command(), "glyph-migrate", str(rolled_back), "--to", "0001"]
    _, down_seconds = kill_migrate_part_way(rolled_back, argv, None)
    assert check_whole_version(rolled_back, signatures, content) == "0001"
    log(f"{rows:,} legacy rows: glyph-migrate writes for {up_seconds:.2f}s up, {down_seconds:.2f}s down to 0001")

    kills = []
    work = work_dir / "killed.db"
    for direction, start, args, seconds, target in (
        ("up", legacy, [], up_seconds, None),
        ("down", migrated, ["--to", "0001"], down_seconds, "0001"),
    ):
        for i, fraction in enumerate(kill_fractions(points, seed + (direction == "down"))):
            argv = [datasette_command(), "glyph-migrate", str(work)] + args
            for _ in range(4):  # on a busy machine a run can beat its kill time: aim earlier
                copy_database(start, work)
                killed, elapsed = kill_migrate_part_way(work, argv, fraction * seconds)
                version = check_whole_version(work, signatures, content)
                if killed:
                    break
                fraction /= 2
            kills.append(MigrationKill(direction, fraction, killed, round(elapsed, 3), version))
            log(
                f"  {direction} kill {i + 1}: {elapsed:.2f}s into writing ({fraction:.0%}), killed={killed},"
                f" at {version}"
            )
            # The next run finishes the job from wherever the kill left it
            conn = connect(work)
            migrator.migrate(conn, target=target)
            conn.close()
            assert check_whole_version(work, signatures, content) == (target or newest)
    return kills, up_seconds, down_seconds


def run_seed(name: str) -> int:
    """A new seed on each run, so that repeated runs kill at different moments; GLYPH_CRASH_SEED replays one.
    Printed, and so shown with a failure's output."""
    seed = int(os.environ.get("GLYPH_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"{name}: seed {seed} (replay: GLYPH_CRASH_SEED={seed} python -m pytest tests/test_crash.py)")
    return seed


@pytest.fixture(scope="module")
def migration_kills(tmp_path_factory):
    seed = run_seed("migration crash runs")
    kills, _, _ = migration_crash_runs(tmp_path_factory.mktemp("migrate-crash"), rows=30_000, points=3, seed=seed)
    return kills


@pytest.mark.parametrize("direction", ["up", "down"])
def test_migrate_killed_part_way_leaves_a_whole_version(migration_kills, direction):
    kills = [k for k in migration_kills if k.direction == direction]
    # Every kill point landed while the command was writing (each run's checks are in migration_crash_runs)
    assert [k.killed for k in kills] == [True, True, True]
    assert all(k.version_after in [m.id for m in migrator.load_migrations()] for k in kills)


# Import crash runs --------------------------------------------------------------------------------------

# The columns an import fills from the file, in a fixed order: what a batch's content checksum covers.
BATCH_CONTENT_COLUMNS = (
    "import_index, canonical_model, vram_gb, mig_support, nvlink, tdp_watts, price, score, condition, quantity, "
    "min_order_qty, seller, region, source_url, source_type, seen_at, generation, cuda_cores, slot_width, "
    "pcie_generation, form_factor, notes, warnings, title"
)


def batch_fingerprint(conn: sqlite3.Connection, import_id: str) -> tuple:
    """(row count, SHA-256 of its rows in import_index order) of one batch's scored listings."""
    digest, count = hashlib.sha256(), 0
    sql = f"SELECT {BATCH_CONTENT_COLUMNS} FROM scored_listings WHERE import_id = ? ORDER BY import_index"
    for row in conn.execute(sql, [import_id]):
        digest.update(repr(row).encode("utf-8"))
        count += 1
    return count, digest.hexdigest()


def batch_ids_by_table(conn: sqlite3.Connection) -> Dict[str, set]:
    """The import_ids named in each table that has an import_id column (import_batches aside)."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    found = {}
    for table in tables:
        columns = {r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", [table])}
        if "import_id" in columns and table != "import_batches":
            found[table] = {r[0] for r in conn.execute(f'SELECT DISTINCT import_id FROM "{table}"')}
    return found


def read_position(pid: int, folder: Path) -> int:
    """How far process ``pid`` (or a child of it: the second reading process) has read a file under ``folder``:
    the largest offset of its descriptors open on one (0 if none is open)."""
    pids = [pid]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(c) for c in children.read_text().split()]
        except OSError:
            pass
    folder = str(Path(folder).resolve())
    position = 0
    for p in pids:
        for fd in Path(f"/proc/{p}/fd").glob("*"):
            try:
                if os.readlink(fd).startswith(folder + "/"):
                    fields = dict(
                        line.split(":", 1) for line in Path(f"/proc/{p}/fdinfo/{fd.name}").read_text().splitlines()
                    )
                    position = max(position, int(fields["pos"]))
            except (OSError, KeyError, ValueError):
                pass  # closed meanwhile
    return position


def leftover_uploads(upload_dir: Path) -> List[str]:
    return sorted(p.name for p in upload_dir.rglob("*.part"))


@dataclass
class ImportKill:
    phase: str  # upload, insert or commit: where in the import the kill was aimed
    fraction: float  # of the upload's bytes sent (upload) or of the uploaded file read by the import
    killed: bool
    outcome: str  # "absent": nothing of the batch is stored; "committed": killed after the commit, all of it is
    seconds: float  # from the start of the request to the kill
    temp_files_at_kill: int  # upload temp files on disk right after the kill (the restart removes them)
    unfinished_batches: List[str]  # status of each batch record that did not complete (none may be complete)
    answer_seconds: Optional[float] = None  # not killed: the time from the last byte to the answer


class ImportCrashHarness:
    """A real server importing into ``work_dir/glyph.db``, and the record of every batch that completed."""

    def __init__(self, work_dir: Path, log: Callable = lambda *a: None):
        self.work_dir = work_dir
        self.log = log
        self.db_path = work_dir / "glyph.db"
        self.upload_dir = work_dir / "uploads"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        conn = connect(self.db_path)
        migrator.migrate(conn)
        conn.close()
        self.completed: Dict[str, tuple] = {}  # import_id -> batch fingerprint
        self.big_fingerprint = None  # of the file the kills interrupt, as its uninterrupted import stored it
        self.server = start_server(
            self.db_path,
            plugin_config={"allow_import": True, "upload_dir": str(self.upload_dir)},
            log_dir=work_dir,
        )

    def import_file(self, csv_path: Path) -> float:
        """Import a file that must succeed; remember its batch. Returns the seconds the request took."""
        started = time.monotonic()
        response = self.server.upload_csv(csv_path)
        seconds = time.monotonic() - started
        assert response.status == 200, response.text
        result = response.json()
        conn = connect(self.db_path)
        try:
            self.completed[result["import_id"]] = batch_fingerprint(conn, result["import_id"])
        finally:
            conn.close()
        assert self.completed[result["import_id"]][0] == result["record_count"]
        return seconds

    def timed_import(self, csv_path: Path) -> tuple:
        """Import a file; return (seconds until the last byte was sent, seconds from then to the answer)."""
        sent_at = []

        def on_chunk(sent, size):
            if sent == size:  # the file's last byte is out
                sent_at.append(time.monotonic())

        started = time.monotonic()
        response = self.server.upload_csv(csv_path, on_chunk=on_chunk)
        answered = time.monotonic()
        assert response.status == 200, response.text
        result = response.json()
        conn = connect(self.db_path)
        self.completed[result["import_id"]] = self.big_fingerprint = batch_fingerprint(conn, result["import_id"])
        conn.close()
        upload_seconds = (sent_at[-1] if sent_at else answered) - started
        return upload_seconds, answered - (sent_at[-1] if sent_at else started)

    def kill_during_upload(self, csv_path: Path, fraction: float) -> ImportKill:
        """SIGKILL the server once ``fraction`` of the request body has been sent."""
        server, started = self.server, time.monotonic()
        state = {}

        def on_chunk(sent, total):
            if sent >= fraction * total and "killed" not in state:
                # what was sent may still be in the socket's buffers: kill once the server spools the upload (at
                # a small fraction on a loaded machine it had not yet made its temp file)
                wait_until(
                    lambda: [p for p in self.upload_dir.rglob("*.part") if p.stat().st_size > 0],
                    "the server's temp file of the upload",
                )
                state["killed"] = server.kill() == -signal.SIGKILL
                state["seconds"] = time.monotonic() - started
                state["temp_files"] = len(leftover_uploads(self.upload_dir))

        try:
            response = server.upload_csv(csv_path, on_chunk=on_chunk, chunk_size=256 * 1024)
            state.setdefault("response", response.status)
        except OSError:
            pass  # the connection died with the server: expected
        return self._after_kill("upload", fraction, state)

    def kill_after_upload(self, csv_path: Path, phase: str, fraction: float) -> ImportKill:
        """SIGKILL the server once its import has read ``fraction`` of the uploaded file (insert, commit): the
        point is the import's own progress, its read position in the spooled file as /proc shows it, not a time."""
        server, started = self.server, time.monotonic()
        sent = threading.Event()
        state = {}
        size = csv_path.stat().st_size

        def on_chunk(sent_bytes, total):
            if sent_bytes == total:
                state["sent_at"] = time.monotonic()
                sent.set()

        def client():
            try:
                status = server.upload_csv(csv_path, on_chunk=on_chunk).status
                state["answer_seconds"] = time.monotonic() - state["sent_at"]
                state["response"] = status
            except OSError:
                state["response"] = None
            sent.set()

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        sent.wait(600)
        while "response" not in state and read_position(server.pid, self.upload_dir) < fraction * size:
            time.sleep(0.001)
        if "response" not in state:
            state["killed"] = server.kill() == -signal.SIGKILL
            state["seconds"] = time.monotonic() - started
            state["temp_files"] = len(leftover_uploads(self.upload_dir))
        thread.join(600)
        return self._after_kill(phase, fraction, state)

    def _after_kill(self, phase: str, fraction: float, state: dict) -> ImportKill:
        killed = state.get("killed", False)
        if not killed:
            # The import answered before the kill time: it must have succeeded, and is now an earlier batch
            assert state.get("response") == 200, state
        self.server.restart()
        # A kill after the commit but before the answer leaves a whole batch the client never heard of:
        # it must be complete and hold exactly the file's rows (the same content as the uninterrupted import).
        committed = self._new_complete_batches()
        assert [fingerprint for _, fingerprint in committed] == [self.big_fingerprint] * len(committed)
        assert len(committed) in ((0, 1) if killed else (1,))
        self.completed.update(committed)
        unfinished = self.check()
        return ImportKill(
            phase,
            fraction,
            killed,
            "committed" if committed else "absent",
            round(state.get("seconds", 0.0), 3),
            state.get("temp_files", 0),
            unfinished,
            state.get("answer_seconds"),
        )

    def _new_complete_batches(self) -> List[tuple]:
        conn = connect(self.db_path)
        try:
            ids = [r[0] for r in conn.execute("SELECT import_id FROM import_batches WHERE status = 'complete'")]
            return [(i, batch_fingerprint(conn, i)) for i in ids if i not in self.completed]
        finally:
            conn.close()

    def check(self) -> List[str]:
        """Assert what must hold after a restart; return the status of each batch record that did not complete."""
        assert leftover_uploads(self.upload_dir) == []
        assert integrity(self.db_path) == ["ok"]
        conn = connect(self.db_path)
        try:
            present = {r[0] for r in conn.execute("SELECT DISTINCT import_id FROM scored_listings")}
            # No row of an interrupted batch: only completed batches have rows, in any table that names a batch
            assert present == set(self.completed)
            assert {t: ids for t, ids in batch_ids_by_table(conn).items() if not ids <= set(self.completed)} == {}
            assert {i: batch_fingerprint(conn, i) for i in sorted(self.completed)} == self.completed
            records = conn.execute("SELECT import_id, status FROM import_batches").fetchall()
            assert {i for i, status in records if status == "complete"} == set(self.completed)
            unfinished = sorted(status for i, status in records if i not in self.completed)
            assert lineage_problems(conn) == []
            return unfinished
        finally:
            conn.close()

    def close(self):
        self.server.stop()


def import_crash_runs(
    work_dir: Path,
    rows: int,
    upload_points: int,
    insert_points: int,
    seed: int,
    small_rows: int = 2_000,
    log: Callable = lambda *a: None,
) -> dict:
    """Kill a server importing a ``rows``-row file at ``upload_points`` points of the upload and
    ``insert_points`` points after it (the last one just before the answer was due, i.e. near commit).

    Before the kills two small files and one uninterrupted big file are imported; after each kill and restart
    every completed batch must be intact, the interrupted one absent, no temp file left, and the next
    (small) import must work. Returns a report with the timings and every kill.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    big = make_scored_csv(work_dir / f"scored_{rows}.csv", rows, seed)
    small = make_scored_csv(work_dir / f"scored_{small_rows}.csv", small_rows, seed + 1)
    harness = ImportCrashHarness(work_dir, log)
    try:
        harness.import_file(small)
        harness.import_file(small)
        upload_seconds, process_seconds = harness.timed_import(big)
        log(
            f"{rows:,} rows ({big.stat().st_size / 2**20:.0f} MiB) uninterrupted: upload {upload_seconds:.2f}s, "
            f"then {process_seconds:.2f}s to the answer"
        )
        harness.check()
        kills = []
        finished_first = 0
        rng = random.Random(seed)
        points = [("upload", f) for f in kill_fractions(upload_points, rng.randrange(1 << 30), 0.05, 0.95)]
        insert_fractions = (
            kill_fractions(insert_points - 1, rng.randrange(1 << 30), 0.05, 0.8) if insert_points > 1 else []
        )
        points += [("insert", f) for f in insert_fractions] + [("commit", 0.95)] * (insert_points > 0)
        for phase, fraction in points:
            if phase == "upload":
                kill = harness.kill_during_upload(big, fraction)
            else:
                for _ in range(4):
                    kill = harness.kill_after_upload(big, phase, fraction)
                    if kill.killed:
                        break
                    # The import read its last part and answered between two looks at its position: one more
                    # complete batch; aim at the same point again
                    finished_first += 1
            kills.append(kill)
            log(
                f"  kill in {phase} at {fraction:.0%}: killed={kill.killed} after {kill.seconds:.2f}s, "
                f"batch {kill.outcome}, "
                f"{kill.temp_files_at_kill} temp file(s) at the kill, unfinished records {kill.unfinished_batches}"
            )
            harness.import_file(small)  # the next import works
            harness.check()
        return {
            "rows": rows,
            "upload_seconds": upload_seconds,
            "process_seconds": process_seconds,
            "kills": kills,
            "finished_before_kill": finished_first,
            "batches": len(harness.completed),
        }
    finally:
        harness.close()


@pytest.fixture(scope="module")
def import_kills(tmp_path_factory):
    seed = run_seed("import crash runs")
    return import_crash_runs(
        tmp_path_factory.mktemp("import-crash"), rows=50_000, upload_points=1, insert_points=2, seed=seed
    )


def test_server_killed_during_import_keeps_earlier_batches_and_no_part_of_the_interrupted_one(import_kills):
    # Each kill's checks ran in import_crash_runs; here: every kill point landed while the import was running
    kills = import_kills["kills"]
    assert [(k.phase, k.killed) for k in kills] == [("upload", True), ("insert", True), ("commit", True)]
    # Killed before the end of the upload or while inserting, nothing of the batch may survive; killed at the
    # very end, the batch may have committed (then all of it is there, checked against the uninterrupted import)
    assert [k.outcome for k in kills[:2]] == ["absent", "absent"]
    committed = sum(k.outcome == "committed" for k in kills)
    # 2 small + 1 big uninterrupted, one small import after each kill, any batch committed at a kill, and any
    # import that finished before its kill time (on a busy machine; the kill is then retried earlier)
    assert import_kills["batches"] == 3 + 3 + committed + import_kills["finished_before_kill"]
    # The server left its temp file behind at each kill; the restarted server removed it (checked after each)
    assert [k.temp_files_at_kill for k in kills] == [1, 1, 1]
