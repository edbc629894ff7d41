import functools
import itertools
import os
import sqlite3
import subprocess
import sys
from importlib import resources

import pytest

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect
from datasette_glyph.formats import utc_z

from .conftest import build_legacy_database
from .locks import lock_held_elsewhere, wait_until_waiting_for_a_lock
from .support import run_cli

APPLIED_AT = "2025-01-02T03:04:05+00:00"
DESCRIPTIONS = {m.id: m.description for m in migrator.load_migrations()}
# The migrations this package ships, in order; a fully migrated database is at the last of them
LABELS = [m.label for m in migrator.load_migrations()]
IDS = [m.id for m in migrator.load_migrations()]
LATEST = LABELS[-1]
KNOWN = ", ".join(IDS)
# --status lines up its columns on the longest migration name
WIDTH = max(len(m.label) for m in migrator.load_migrations())
SQL = {(m.id, "up"): m.up_sql.rstrip("\n") for m in migrator.load_migrations() if m.python is None}
SQL.update({(m.id, "down"): m.down_sql.rstrip("\n") for m in migrator.load_migrations() if m.python is None})
NAMESPACE = {m.id: m.python for m in migrator.load_migrations() if m.python is not None}


@pytest.fixture(autouse=True)
def frozen(monkeypatch):
    """Every step takes 0.5 s and every migration is applied at APPLIED_AT, so whole outputs can be compared."""
    monkeypatch.setattr(migrator, "now", lambda: APPLIED_AT)
    ticks = itertools.count(step=0.5)
    monkeypatch.setattr(migrator, "clock", lambda: next(ticks))


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "glyph.db")


run = functools.partial(run_cli, "glyph-migrate")


def at(path, target):
    conn = connect(path)
    migrator.migrate(conn, target=target)
    conn.close()


def status_lines(rows):
    """The listing part of --status: (label, state, applied_at) per migration, each with its description."""
    lines = []
    for label, state, applied_at in rows:
        lines.append(f"  {label:<{WIDTH}}  {state:<7}  {utc_z(applied_at)}".rstrip())  # the CLI's one time form
        lines.append(f"      {DESCRIPTIONS[label[:4]]}")
    return "\n".join(lines) + "\n"


def test_migrate_a_new_database_then_again(path):
    first = run(path)
    assert (first.exit_code, first.output) == (
        0,
        "".join(f"Applied {label} (0.50s)\n" for label in LABELS) + f"{path} is at {LATEST}\n",
    )
    second = run(path)
    assert (second.exit_code, second.output) == (0, f"{path} is at {LATEST}; nothing to do\n")


def test_migrate_a_legacy_database(path):
    build_legacy_database(path).close()
    result = run(path)
    assert (result.exit_code, result.output) == (
        0,
        f"{path} was made by the old store: taking it as 0001_inherited_schema\n"
        + "".join(f"Applied {label} (0.50s)\n" for label in LABELS[1:])
        + f"{path} is at {LATEST}\n",
    )


@pytest.mark.parametrize(
    "start,args,output",
    [
        (
            "0003",
            ["--to", "0001"],
            "Rolled back 0003_scored_listings_title (0.50s)\nRolled back 0002_import_lineage (0.50s)\n"
            "{path} is at 0001_inherited_schema\n",
        ),
        (
            "0003",
            ["--to", "0"],
            "Rolled back 0003_scored_listings_title (0.50s)\nRolled back 0002_import_lineage (0.50s)\n"
            "Rolled back 0001_inherited_schema (0.50s)\n{path} is at 0 (no migration applied)\n",
        ),
        ("0001", ["--to", "0002_import_lineage"],
         "Applied 0002_import_lineage (0.50s)\n{path} is at 0002_import_lineage\n"),
        ("0002", ["--to", "2"], "{path} is at 0002_import_lineage; nothing to do\n"),
        ("0003", ["--rollback", "1"],
         "Rolled back 0003_scored_listings_title (0.50s)\n{path} is at 0002_import_lineage\n"),
        (
            "0003",
            ["--rollback", "2"],
            "Rolled back 0003_scored_listings_title (0.50s)\nRolled back 0002_import_lineage (0.50s)\n"
            "{path} is at 0001_inherited_schema\n",
        ),
    ],
)  # fmt: skip
def test_to_and_rollback(path, start, args, output):
    at(path, start)
    result = run(path, *args)
    assert (result.exit_code, result.output) == (0, output.format(path=path))


def test_status_of_an_empty_database(path):
    sqlite3.connect(path).execute("VACUUM")  # what datasette --create makes
    result = run(path, "--status")
    assert (result.exit_code, result.output) == (
        0,
        f"{path}: at 0 (no migration applied), {len(LABELS)} pending\n\n"
        + status_lines([(label, "pending", "") for label in LABELS]),
    )


def test_status_part_way(path):
    at(path, "0002")
    result = run(path, "--status")
    assert (result.exit_code, result.output) == (
        0,
        f"{path}: at 0002_import_lineage, {len(LABELS) - 2} pending\n\n"
        + status_lines(
            [
                ("0001_inherited_schema", "applied", APPLIED_AT),
                ("0002_import_lineage", "applied", APPLIED_AT),
                *[(label, "pending", "") for label in LABELS[2:]],
            ]
        ),
    )


def test_status_up_to_date(path):
    at(path, None)
    result = run(path, "--status")
    assert (result.exit_code, result.output) == (
        0,
        f"{path}: at {LATEST}, up to date\n\n" + status_lines([(label, "applied", APPLIED_AT) for label in LABELS]),
    )


def test_status_of_a_legacy_database(path):
    build_legacy_database(path).close()
    result = run(path, "--status")
    assert (result.exit_code, result.output) == (
        0,
        f"{path}: at 0001_inherited_schema (made by the old store; glyph-migrate adopts it), "
        f"{len(LABELS) - 1} pending\n\n"
        + status_lines(
            [
                ("0001_inherited_schema", "applied", "by the old store"),
                *[(label, "pending", "") for label in LABELS[1:]],
            ]
        ),
    )
    assert (
        sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE name = 'glyph_migrations'").fetchall() == []
    )


def test_status_shows_drift_and_unknown_migrations(path):
    at(path, None)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE glyph_migrations SET checksum = 'edited' WHERE id = '0002'")
        conn.execute("INSERT INTO glyph_migrations VALUES ('9999', 'future', 'x', '2030-01-01T00:00:00+00:00')")
    result = run(path, "--status")
    assert (result.exit_code, result.output) == (
        0,
        f"{path}: at 9999, up to date\n\n"
        + status_lines([("0001_inherited_schema", "applied", APPLIED_AT)])
        + f"  {'0002_import_lineage':<{WIDTH}}  changed  {utc_z(APPLIED_AT)}\n"
        f"      {DESCRIPTIONS['0002']}\n"
        "      ! the up script has changed since it was applied (checksum drift)\n"
        + status_lines([(label, "applied", APPLIED_AT) for label in LABELS[2:]])
        + f"  {'9999':<{WIDTH}}  unknown  2030-01-01T00:00:00Z\n"
        "      applied to this database, but not one of this version's migrations\n",
    )


DRY_RUN_NOTE = (
    "-- glyph-migrate runs each step in its own transaction, with PRAGMA foreign_keys = OFF and\n"
    "-- PRAGMA legacy_alter_table = ON, and records it in glyph_migrations. The statements below are\n"
    "-- those each step ran on a scratch copy of this file.\n"
)


def dry_run_blocks(output):
    """The dry run's header, then (step header, [statements]) for each step."""
    head, *steps = output.split("\n\n-- Step ")
    blocks = []
    for step in steps:
        title, *statements = step.rstrip("\n").split(";\n")
        title, first = title.split("\n", 1)
        blocks.append(("-- Step " + title, [first, *statements]))
    return head + "\n", blocks


def file_statements(migration_id, direction):
    """The statements of a SQL migration's script, as a dry run prints them."""
    return [s.rstrip(";") for s in migrator.split_statements(SQL[migration_id, direction])]


def in_order(needles, haystack):
    position = 0
    for needle in needles:
        position = haystack.index(needle, position) + 1
    return True


def test_dry_run_on_a_legacy_database_prints_the_sql_and_changes_nothing(path):
    build_legacy_database(path).close()
    files = [path + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    before = [open(f, "rb").read() if os.path.exists(f) else None for f in files]
    result = run(path, "--dry-run")
    assert result.exit_code == 0
    head, blocks = dry_run_blocks(result.output)
    steps = len(LABELS) - 1
    assert head == (
        f"-- Dry run for {path}: {steps} steps from 0001_inherited_schema to {LATEST}. "
        "Nothing was changed.\n" + DRY_RUN_NOTE
    )
    assert [title for title, _ in blocks] == [
        f"-- Step {n} of {steps}: {label} (up)" for n, label in enumerate(LABELS[1:], start=1)
    ]
    lineage, title, stats, condition, *_ = [statements for _, statements in blocks]
    # The lineage step is planned from this file: it names the old store's own index and trigger names. It
    # changes each table where it stands, so the old store's other indexes are neither dropped nor rebuilt.
    assert in_order(
        [
            "ALTER TABLE import_batches ADD COLUMN filename TEXT",
            'DROP INDEX "idx_scored_listings_import_id"',
            'ALTER TABLE "scored_listings" ADD COLUMN import_index INTEGER',
            # (each batch's rows are consecutive rowids here: a row's number is its distance from the batch's first)
            'UPDATE "scored_listings" SET import_id = COALESCE("scored_listings".import_id, '
            "'dbaea5cd-0a4d-52ca-88af-4737290a1213'), import_index = \"scored_listings\".rowid - (SELECT f.first FROM "
            'temp._glyph_first AS f WHERE f.batch = COALESCE("scored_listings".import_id, '
            "'dbaea5cd-0a4d-52ca-88af-4737290a1213')) + 1",
            "PRAGMA writable_schema = ON",
            "PRAGMA writable_schema = OFF",
            "CREATE TRIGGER update_scored_listings_timestamp AFTER UPDATE ON scored_listings FOR EACH ROW\n"
            "BEGIN UPDATE scored_listings SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END",
            'CREATE UNIQUE INDEX idx_scored_listings_import ON "scored_listings"(import_id, import_index)',
        ],
        lineage,
    )
    # (the trigger is set aside while the rows get their numbers: they are not updates the old store made)
    assert lineage.index('DROP TRIGGER "update_scored_listings_timestamp"') < lineage.index(
        'ALTER TABLE "scored_listings" ADD COLUMN import_index INTEGER'
    )
    assert [s for s in lineage if "idx_scored_listings_score" in s and not s.startswith("INSERT")] == []
    assert title[0] == "ALTER TABLE scored_listings ADD COLUMN title TEXT"
    assert stats[0] == NAMESPACE["0004"]["CREATE_SQL"]
    assert condition[0] == file_statements("0005", "up")[0]
    assert [open(f, "rb").read() if os.path.exists(f) else None for f in files] == before


@pytest.mark.parametrize(
    "start,args,header,steps",
    [
        ("0003", ["--to", "0001"], "2 steps from 0003_scored_listings_title to 0001_inherited_schema",
         [("0003", "down"), ("0002", "down")]),
        ("0003", ["--rollback", "1"], "1 step from 0003_scored_listings_title to 0002_import_lineage",
         [("0003", "down")]),
        ("0001", ["--to", "0002"], "1 step from 0001_inherited_schema to 0002_import_lineage", [("0002", "up")]),
        ("0005", ["--to", "0003"], "2 steps from 0005_scored_listings_condition_index to 0003_scored_listings_title",
         [("0005", "down"), ("0004", "down")]),
    ],
)  # fmt: skip
def test_dry_run_of_a_move(path, start, args, header, steps):
    at(path, start)
    result = run(path, "--dry-run", *args)
    labels = {m.id: m.label for m in migrator.load_migrations()}
    head, blocks = dry_run_blocks(result.output)
    assert (result.exit_code, head) == (0, f"-- Dry run for {path}: {header}. Nothing was changed.\n" + DRY_RUN_NOTE)
    assert [title for title, _ in blocks] == [
        f"-- Step {n} of {len(steps)}: {labels[mid]} ({direction})" for n, (mid, direction) in enumerate(steps, start=1)
    ]
    for (mid, direction), (_, statements) in zip(steps, blocks):
        if (mid, direction) in SQL and SQL[mid, direction]:
            assert statements[: len(file_statements(mid, direction))] == file_statements(mid, direction)
    assert migrator.current_version(connect(path)) == start


def test_dry_run_with_nothing_to_do(path):
    at(path, None)
    result = run(path, "--dry-run")
    assert (result.exit_code, result.output) == (
        0,
        f"-- Dry run for {path}: at {LATEST}, nothing to do.\n",
    )


STATUS_ONLY = "Error: --status only reports; use it without --to, --rollback, --dry-run or --discard-kept."


@pytest.mark.parametrize(
    "setup,args,exit_code,output",
    [
        ("0003", ["--to", "1", "--rollback", "1"], 2, "Error: Use either --to or --rollback, not both."),
        ("0003", ["--status", "--to", "1"], 2, STATUS_ONLY),
        ("0003", ["--status", "--dry-run"], 2, STATUS_ONLY),
        ("0003", ["--rollback", "0"], 2, "Error: Invalid value for '--rollback': 0 is not in the range x>=1."),
        ("0003", ["--to", "9999"], 1, f"Error: Unknown target migration '9999'; known: {KNOWN}"),
        ("0003", ["--rollback", "4"], 1, "Error: Cannot roll back 4: only 3 migration(s) applied"),
        ("0003", ["--dry-run", "--to", "x"], 1, f"Error: Unknown target migration 'x'; known: {KNOWN}"),
        (None, ["--status"], 1, "Error: {path} does not exist"),
        (None, ["--dry-run"], 1, "Error: {path} does not exist"),
        ("not a database", [], 1, "Error: {path}: file is not a database"),
        ("not a database", ["--status"], 1, "Error: {path}: file is not a database"),
        ("drift", [], 1, "Error: Checksum drift: 0002_import_lineage.py changed after it was applied to this "
         "database. Restore the file as it was (a change to the schema needs a new migration), then run again."),
        ("drift", ["--dry-run"], 1, "Error: Checksum drift: 0002_import_lineage.py changed after it was applied "
         "to this database. Restore the file as it was (a change to the schema needs a new migration), then run "
         "again."),
    ],
)  # fmt: skip
def test_errors(path, setup, args, exit_code, output):
    if setup == "not a database":
        with open(path, "w") as f:
            f.write("canonical_model,price\n" * 100)
    elif setup == "drift":
        at(path, None)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE glyph_migrations SET checksum = 'edited' WHERE id = '0002'")
    elif setup:
        at(path, setup)
    result = run(path, *args)
    assert (result.exit_code, result.output.splitlines()[-1]) == (exit_code, output.format(path=path))


def test_a_directory_is_not_a_database(tmp_path):
    result = run(str(tmp_path))
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        2,
        f"Error: Invalid value for 'PATH': File '{tmp_path}' is a directory.",
    )


def test_a_failing_migration_stops_the_run_and_exits_1(path, tmp_path, monkeypatch):
    folder = tmp_path / "migrations"
    folder.mkdir()
    for f in resources.files("datasette_glyph.migrations").iterdir():
        if f.name.endswith(".sql") or (f.name.endswith(".py") and f.name[:1].isdigit()):
            (folder / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "0005_scored_listings_condition_index.up.sql").write_text(
        "-- Broken\nALTER TABLE nowhere ADD COLUMN x;\n"
    )
    broken = migrator.load_migrations(files=sorted(folder.iterdir()))
    monkeypatch.setattr(migrator, "load_migrations", lambda files=None: broken)
    result = run(path)
    assert (result.exit_code, result.output) == (
        1,
        "Applied 0001_inherited_schema (0.50s)\n"
        "Applied 0002_import_lineage (0.50s)\n"
        "Applied 0003_scored_listings_title (0.50s)\n"
        "Applied 0004_import_model_stats (0.50s)\n"
        "Error: Migration 0005_scored_listings_condition_index (up) failed at statement 1, line 2 of "
        "0005_scored_listings_condition_index.up.sql: no such table: nowhere\n    ALTER TABLE nowhere ADD COLUMN x;\n"
        "Nothing of it was kept: the database is still at 0004.\n",
    )


def test_help_shows_examples():
    result = run("--help")
    assert result.output.splitlines()[:14] == [
        "Usage: cli glyph-migrate [OPTIONS] PATH",
        "",
        "  Apply datasette-glyph's schema migrations to the database at PATH (created if",
        "  missing).",
        "",
        "  With no options every pending migration is applied, each in its own",
        "  transaction. A database made by the old store (inherited tables, no",
        "  glyph_migrations table) counts as being at 0001.",
        "",
        "  Examples:",
        "      datasette glyph-migrate glyph.db              # apply all pending",
        "      datasette glyph-migrate glyph.db --status",
        "      datasette glyph-migrate glyph.db --to 0001    # back to the schema before lineage",
        "      datasette glyph-migrate glyph.db --rollback 1",
    ]


def test_two_glyph_migrate_commands_at_once(tmp_path):
    """Real processes on one new file, both waiting at its write lock (held by a third process) before either
    applies anything: both succeed, each migration is applied once."""
    path = str(tmp_path / "glyph.db")
    sqlite3.connect(path).execute("PRAGMA journal_mode = wal").fetchone()  # an empty file, as `sqlite3 glyph.db`
    datasette = os.path.join(os.path.dirname(sys.executable), "datasette")
    with lock_held_elsewhere(path, "write"):
        runs = [
            subprocess.Popen(
                [datasette, "glyph-migrate", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        for r in runs:
            wait_until_waiting_for_a_lock(r)
    outputs = [r.communicate(timeout=60) for r in runs]
    assert [(r.returncode, err) for r, (_, err) in zip(runs, outputs)] == [(0, ""), (0, "")]
    applied = sorted(line.split()[1] for out, _ in outputs for line in out.splitlines() if line.startswith("Applied"))
    assert applied == LABELS
    assert [out.splitlines()[-1] for out, _ in outputs] in (
        [f"{path} is at {LATEST}", f"{path} is at {LATEST}; nothing to do"],
        [f"{path} is at {LATEST}; nothing to do", f"{path} is at {LATEST}"],
        [f"{path} is at {LATEST}"] * 2,
    )
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id FROM glyph_migrations ORDER BY id").fetchall() == [(i,) for i in IDS]
