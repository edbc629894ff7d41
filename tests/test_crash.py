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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pytest

from datasette_glyph import migrate
from datasette_glyph.db import connect

from .server import datasette_command

LEGACY_BATCH = "dbaea5cd-0a4d-52ca-88af-4737290a1213"
DATA_TABLES = ("models", "listings", "scored_listings", "quantized_listings")
MAKE_CSV = Path(__file__).resolve().parents[2] / "shared" / "tools" / "make_scored_csv.py"
if not MAKE_CSV.exists():  # CI clones the repository next to a copy of shared/
    MAKE_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "make_scored_csv.py"


# Databases ----------------------------------------------------------------------------------------------


def build_large_legacy_database(path: Path, rows: int) -> None:
    """A database as the old store left it, with ``rows`` scored listings spread over batches.

    A quarter of the rows name no batch, a quarter name a batch that import_batches does not hold (0002
    makes a ``recovered`` record for it), the rest name one of two real batches; one in ten rows also has
    a raw listing and a quantized listing. Foreign keys hold, as they did in the old store.
    """
    conn = connect(path)
    first = migrate.load_migrations()[0]
    for statement in migrate.split_statements(first.up_sql):
        conn.execute(statement)
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO import_batches (import_id, imported_at, source, record_count) VALUES "
        "('batch-a', '2025-03-01 10:00:00', 'marketplace', 0), ('batch-b', '2025-03-02 10:00:00', 'broker', 0)"
    )
    conn.execute(
        "INSERT INTO models (model, vram_gb, tdp_watts, nvlink, import_id) VALUES "
        "('A100_40GB_PCIE', 40, 250, 1, 'batch-a'), ('H100_PCIE_80GB', 80, 350, 1, NULL), ('RTX_4090', 24, 450, 0, 'batch-b')"
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
        "SELECT 'Listing ' || id, price, canonical_model, 'exact', 1.0, import_id FROM scored_listings WHERE id % 10 = 0"
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
    for statement in migrate.split_statements(migrate.load_migrations()[0].up_sql):
        conn.execute(statement)
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
            "WHERE name NOT LIKE 'sqlite_%' AND name != 'glyph_migrations' ORDER BY type, name"
        ).fetchall()
    )


def version_signatures(work_dir: Path) -> Dict[tuple, str]:
    """The schema of each whole version, as reached going up from the old store's schema and back down."""
    path = work_dir / "signatures.db"
    build_large_legacy_database(path, 10)
    conn = connect(path)
    signatures = {schema_signature(conn): "0001"}
    ids = [m.id for m in migrate.load_migrations()]
    for target in ids[1:] + list(reversed(ids[:-1])):
        migrate.migrate(conn, target=target)
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


def integrity(path: Path) -> List[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


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


def check_whole_version(path: Path, signatures: Dict[tuple, str], expected_content: Dict[str, tuple]) -> str:
    """Assert the database at ``path`` is sound and at one whole version with every row intact; return it."""
    assert integrity(path) == ["ok"]
    conn = connect(path)
    try:
        signature = schema_signature(conn)
        assert signature in signatures, "schema is not that of any whole version"
        version = signatures[signature]
        assert migrate.current_version(conn) == version
        assert inherited_content(conn) == expected_content
        assert lineage_problems(conn) == []
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
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
    newest = migrate.load_migrations()[-1].id
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
            for attempt in range(4):  # on a busy machine a run can beat its kill time: aim earlier
                copy_database(start, work)
                killed, elapsed = kill_migrate_part_way(work, argv, fraction * seconds)
                version = check_whole_version(work, signatures, content)
                if killed:
                    break
                fraction /= 2
            kills.append(MigrationKill(direction, fraction, killed, round(elapsed, 3), version))
            log(
                f"  {direction} kill {i + 1}: {elapsed:.2f}s into writing ({fraction:.0%}), killed={killed}, at {version}"
            )
            # The next run finishes the job from wherever the kill left it
            conn = connect(work)
            migrate.migrate(conn, target=target)
            conn.close()
            assert check_whole_version(work, signatures, content) == (target or newest)
    return kills, up_seconds, down_seconds


@pytest.fixture(scope="module")
def migration_kills(tmp_path_factory):
    kills, _, _ = migration_crash_runs(tmp_path_factory.mktemp("migrate-crash"), rows=30_000, points=3, seed=7)
    return kills


@pytest.mark.parametrize("direction", ["up", "down"])
def test_migrate_killed_part_way_leaves_a_whole_version(migration_kills, direction):
    kills = [k for k in migration_kills if k.direction == direction]
    # Every kill point landed while the command was writing (each run's checks are in migration_crash_runs)
    assert [k.killed for k in kills] == [True, True, True]
    assert all(k.version_after in ("0001", "0002", "0003") for k in kills)
