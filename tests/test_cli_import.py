"""``datasette glyph-import``: the whole output, exit status and what lands in the database."""

import functools
import hashlib
import json
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from datasette.cli import cli

from datasette_glyph import cli as glyph_cli
from datasette_glyph.engine import importer, migrator
from datasette_glyph.engine.sqlite import BUSY_TIMEOUT_MS, connect

from .conftest import build_legacy_database
from .locks import lock_held_elsewhere, wait_until_waiting_for_a_lock
from .server import datasette_command
from .support import run_cli

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "scored_sample.csv"
HEADER = "canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score"

MIGRATIONS = migrator.load_migrations()


run = functools.partial(run_cli, "glyph-import")


def batches(db_path):
    conn = connect(db_path)
    try:
        return conn.execute(
            "SELECT import_id, filename, source, description, actor, record_count FROM import_batches ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def dump(db_path) -> str:
    conn = connect(db_path)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


@pytest.fixture
def files(tmp_path):
    """Small CSV files by name: good, good_extra (two unknown columns), bad (three errors)."""
    contents = {
        "good.csv": f"{HEADER}\nA10,24,0,False,150,1.5,0.5\nL4,24,0,True,72,2.5,0.7\n",
        "good_extra.csv": f"{HEADER},shade,quantization_capable\nA10,24,0,False,150,1.5,0.5,blue,True\n",
        "bad.csv": f"{HEADER}\nA10,24,0,False,150,-1,0.5\nA10,x,0,False,150,1,0.5\nA10,24\n",
    }
    paths = {}
    for name, text in contents.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text, encoding="utf-8")
    return paths


def test_imports_each_file_as_its_own_batch(db_path):
    result = run(db_path, SAMPLE, SAMPLE, "--source", "acme", "--description", "nightly")
    (first, *_), (second, *_) = rows = batches(db_path)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        f"Imported 40 rows from {SAMPLE} as {first}\n"
        f"Imported 40 rows from {SAMPLE} as {second}; same content as {first}\n",
        "",
    )
    assert rows == [
        (first, "scored_sample.csv", "acme", "nightly", None, 40),
        (second, "scored_sample.csv", "acme", "nightly", None, 40),
    ]


def test_keep_path_records_the_path_as_given(db_path):
    result = run(db_path, SAMPLE, "--keep-path", "--quiet")
    assert (result.exit_code, [row[1] for row in batches(db_path)]) == (0, [str(SAMPLE)])


def test_ignored_columns_are_named(db_path, files):
    result = run(db_path, files["good_extra.csv"])
    [(import_id, *_)] = batches(db_path)
    assert (result.exit_code, result.stdout) == (
        0,
        f"Imported 1 row from {files['good_extra.csv']} as {import_id}; ignored columns: shade, quantization_capable\n",
    )


def test_json_prints_one_result_object_per_file(db_path, files):
    result = run(db_path, files["good.csv"], files["good_extra.csv"], "--json")
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    conn = connect(db_path)
    recorded = conn.execute("SELECT import_id, finished_at, sha256, bytes FROM import_batches ORDER BY id").fetchall()
    conn.close()
    expected = []
    for (import_id, finished_at, sha256, size), name, models, count, ignored in zip(
        recorded,
        ["good.csv", "good_extra.csv"],
        [("A10", "L4"), ("A10", "A10")],
        [2, 1],
        [[], ["shade", "quantization_capable"]],
    ):
        expected.append(
            {
                "import_id": import_id,
                "record_count": count,
                "first_model": models[0],
                "last_model": models[1],
                "timestamp": finished_at.replace(" ", "T") + "Z",
                "filename": name,
                "sha256": sha256,
                "bytes": size,
                "source": None,
                "description": None,
                "actor": None,
                "ignored_columns": ignored,
                "same_content_as": None,
                "previous_import_id": None,
            }
        )
    assert (result.exit_code, objects, result.stderr) == (0, expected, "")
    assert [(o["sha256"], o["bytes"]) for o in objects] == [
        (hashlib.sha256(files[n].read_bytes()).hexdigest(), files[n].stat().st_size)
        for n in ("good.csv", "good_extra.csv")
    ]


def test_quiet_prints_nothing_on_success(db_path, files):
    result = run(db_path, files["good.csv"], "--quiet")
    assert (result.exit_code, result.stdout, result.stderr, len(batches(db_path))) == (0, "", "", 1)


def test_a_bad_file_is_reported_and_the_others_still_import(db_path, files):
    result = run(db_path, files["bad.csv"], files["good.csv"])
    [(import_id, filename, *_)] = batches(db_path)
    bad = files["bad.csv"]
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        f"Imported 2 rows from {files['good.csv']} as {import_id}\n",
        f"Error: {bad} was not imported (3 errors); nothing was written:\n"
        f"  {bad}: Line 2, column price: '-1' is negative; price must be >= 0\n"
        f"  {bad}: Line 3, column vram_gb: 'x' is not an integer\n"
        f"  {bad}: Line 4: expected 7 fields as in the header, found 2\n",
    )
    assert filename == "good.csv"


def test_errors_beyond_the_cap_are_counted(db_path, tmp_path):
    path = tmp_path / "many.csv"
    path.write_text(HEADER + "\n" + "".join(f"A10,24,0,False,150,-{i},0.5\n" for i in range(1, 53)))
    before = dump(db_path)
    result = run(db_path, path, "--quiet")
    expected = [f"  {path}: Line {i + 1}, column price: '-{i}' is negative; price must be >= 0\n" for i in range(1, 51)]
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"Error: {path} was not imported (52 errors); nothing was written:\n"
        + "".join(expected)
        + "  ... and 2 more\n",
    )
    assert dump(db_path) == before


def test_json_failure_object(db_path, files):
    result = run(db_path, files["bad.csv"], "--json")
    assert (result.exit_code, [json.loads(line) for line in result.stdout.splitlines()], result.stderr) == (
        1,
        [
            {
                "ok": False,
                "filename": str(files["bad.csv"]),
                "errors": [
                    {
                        "line": 2,
                        "column": "price",
                        "value": "-1",
                        "message": "Line 2, column price: '-1' is negative; price must be >= 0",
                    },
                    {
                        "line": 3,
                        "column": "vram_gb",
                        "value": "x",
                        "message": "Line 3, column vram_gb: 'x' is not an integer",
                    },
                    {
                        "line": 4,
                        "column": None,
                        "value": None,
                        "message": "Line 4: expected 7 fields as in the header, found 2",
                    },
                ],
                "more": 0,
            }
        ],
        "",
    )
    assert batches(db_path) == []


def test_standard_input(db_path, files):
    result = run(db_path, "-", "--source", "pipe", input=files["good.csv"].read_bytes())
    [(import_id, *rest)] = batches(db_path)
    assert (result.exit_code, result.stdout, rest) == (
        0,
        f"Imported 2 rows from standard input as {import_id}\n",
        [None, "pipe", None, None, 2],
    )


def test_a_missing_database_is_not_created(tmp_path, files):
    path = tmp_path / "nope.db"
    result = run(path, files["good.csv"])
    assert (result.exit_code, result.stdout, result.stderr, path.exists()) == (
        1,
        "",
        f"Error: {path} does not exist; create it with: datasette glyph-migrate {path}\n",
        False,
    )


@pytest.mark.parametrize(
    "make,state,pending",
    [
        (lambda path: connect(path).close(), "has no glyph schema", len(MIGRATIONS)),
        (lambda path: build_legacy_database(path).close(), "is at migration 0001", len(MIGRATIONS) - 1),
    ],
)
def test_an_unmigrated_database_is_refused(tmp_path, files, make, state, pending):
    path = tmp_path / "old.db"
    make(path)
    before = dump(path)
    result = run(path, files["good.csv"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"Error: {path} {state}, and {pending} migrations are pending; run datasette glyph-migrate {path} first\n",
    )
    assert dump(path) == before


def test_a_file_that_is_not_a_database(tmp_path, files):
    path = tmp_path / "notes.db"
    path.write_text("hello " * 200)
    result = run(path, files["good.csv"])
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {path} is not a SQLite database (file is not a database)\n",
    )


def test_usage_errors(db_path):
    assert run(db_path).exit_code == 2


def test_a_missing_file_fails_alone(db_path, files, tmp_path):
    missing, folder = tmp_path / "missing.csv", tmp_path / "folder.csv"
    folder.mkdir()
    result = run(db_path, missing, files["good.csv"], folder)
    [(import_id, filename, *_)] = batches(db_path)
    assert (result.exit_code, result.stdout, result.stderr, filename) == (
        1,
        f"Imported 2 rows from {files['good.csv']} as {import_id}\n",
        f"Error: {missing} was not imported (1 error); nothing was written:\n"
        f"  {missing}: Cannot read the file: No such file or directory\n"
        f"Error: {folder} was not imported (1 error); nothing was written:\n"
        f"  {folder}: Cannot read the file: Is a directory\n",
        "good.csv",
    )


def test_help_shows_usage_and_examples():
    result = run("--help")
    lines = result.stdout.splitlines()
    assert (result.exit_code, lines[0]) == (0, "Usage: cli glyph-import [OPTIONS] PATH FILE...")
    start = lines.index("  Examples:")
    assert lines[start : start + 4] == [
        "  Examples:",
        "      datasette glyph-import glyph.db sample/scored_sample.csv",
        '      datasette glyph-import glyph.db *.csv --source broker-x --description "nightly run"',
        "      datasette glyph-import glyph.db listings.csv --json | jq .import_id",
    ]


def test_a_read_error_is_reported_per_file(db_path, files, monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(importer, "import_csv", unreadable)
    result = run(db_path, files["good.csv"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"Error: {files['good.csv']} was not imported (1 error); nothing was written:\n"
        f"  {files['good.csv']}: Cannot read the file: Permission denied\n",
    )


@pytest.mark.parametrize("args,bar", [((), True), (("--quiet",), False)])
def test_progress_bar_only_on_a_terminal_and_not_when_quiet(db_path, tmp_path, monkeypatch, args, bar):
    path = tmp_path / "big.csv"
    path.write_text(HEADER + "\n" + "A10,24,0,False,150,1.5,0.5\n" * 50_000)
    monkeypatch.setattr(importer, "READ_BUFFER_BYTES", 64 * 1024)
    monkeypatch.setattr(glyph_cli, "stderr_is_terminal", lambda: True)
    positions = []
    real_update = click.progressbar(length=1).__class__.update
    monkeypatch.setattr(
        "click._termui_impl.ProgressBar.update",
        lambda self, n, *a: (real_update(self, n, *a), positions.append(self.pos)),
    )
    result = run(db_path, path, *args)
    size = path.stat().st_size
    # Without a real terminal click draws the label once; the positions show the bar following the bytes read.
    assert (result.exit_code, result.stderr) == (0, f"{path}\n" if bar else "")
    assert positions == (list(range(64 * 1024, size, 64 * 1024)) + [size] if bar else [])


def test_waits_for_a_write_lock_held_by_another_process_and_then_imports(db_path, files):
    """A second process holds the write lock: glyph-import (a process of its own) does not fail at once but waits
    for it (seen asleep in SQLite's busy handler, whose limit is BUSY_TIMEOUT_MS, five minutes), and imports once
    the lock is released."""
    assert BUSY_TIMEOUT_MS == 5 * 60 * 1000
    with lock_held_elsewhere(db_path, "write"):
        process = subprocess.Popen(
            [datasette_command(), "glyph-import", str(db_path), str(files["good.csv"]), "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_waiting_for_a_lock(process)
        assert batches(db_path) == []
    out, err = process.communicate(timeout=120)
    assert (process.returncode, out, err) == (0, "", "")
    assert [(filename, count) for _, filename, _, _, _, count in batches(db_path)] == [("good.csv", 2)]


# A header saved by a spreadsheet: another delimiter, or names spelled another way ----------------------------------

EXCEL_HEADER = "canonical_model;vram_gb;mig_support;nvlink;tdp_watts;price;score"


@pytest.mark.parametrize(
    "name, text, errors",
    [
        (
            "semicolons.csv",  # as Excel saves "CSV" where the comma is the decimal separator
            f"{EXCEL_HEADER}\nA10;24;0;False;150;1,5;0,5\nL4;24;0;True;72;2,5;0,7\n",
            ["Line 1: the header uses ';' between names; save the file with commas"],
        ),
        (
            "tabs.csv",
            EXCEL_HEADER.replace(";", "\t") + "\nA10\t24\t0\tFalse\t150\t1.5\t0.5\n",
            ["Line 1: the header uses tabs between names; save the file with commas"],
        ),
        (
            "spelled.csv",
            "Canonical Model,vram_gb,mig_support,nvlink,tdp_watts,Price,SCORE\nA10,24,0,False,150,1.5,0.5\n",
            [
                "Line 1: required column canonical_model is missing from the header; did you mean canonical_model "
                "(the header has Canonical Model)?",
                "Line 1: required column price is missing from the header; did you mean price (the header has Price)?",
                "Line 1: required column score is missing from the header; did you mean score (the header has SCORE)?",
            ],
        ),
        (
            "near-and-far.csv",
            "canonical-model,vram,mig_support,nvlink,tdp_watts,price,score\nA10,24,0,False,150,1.5,0.5\n",
            [
                "Line 1: required column canonical_model is missing from the header; did you mean canonical_model "
                "(the header has canonical-model)?",
                "Line 1: required column vram_gb is missing from the header",
            ],
        ),
    ],
)
def test_a_header_from_a_spreadsheet_gets_errors_that_say_what_to_change(db_path, tmp_path, name, text, errors):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    before = dump(db_path)
    result = run(db_path, path)
    count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"Error: {path} was not imported ({count}); nothing was written:\n"
        + "".join(f"  {path}: {message}\n" for message in errors),
    )
    assert dump(db_path) == before


# A database whose folder does not exist -----------------------------------------------------------------------------


def test_a_database_in_a_missing_folder_is_named_by_import_and_migrate(tmp_path, files, monkeypatch):
    monkeypatch.chdir(tmp_path)
    imported = run("nosuch/glyph.db", files["good.csv"])
    migrated = CliRunner().invoke(cli, ["glyph-migrate", "nosuch/glyph.db"])
    assert (imported.exit_code, imported.stderr) == (
        1,
        "Error: nosuch/glyph.db does not exist: its folder nosuch does not exist\n",
    )
    assert (migrated.exit_code, migrated.stdout, migrated.stderr) == (
        1,
        "",
        "Error: Cannot create nosuch/glyph.db: its folder nosuch does not exist; nothing was changed\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bad.csv", "good.csv", "good_extra.csv"])


# glyph-sample refuses what it cannot do -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--changed", "0.6", "--removed", "0.5"],
            "--changed 0.6 and --removed 0.5 add up to 1.1: a listing either changes price or is removed, so the two "
            "shares can add up to 1 at most.",
        ),
        (
            ["--after", "{bad}"],
            "--after {bad} is not a market to continue: Line 2, column price: '-1' is negative; price must be >= 0",
        ),
        (
            ["--after", "{good}"],
            "--after {good} is not a market to continue: it has no source_url column, which matches a listing from "
            "one snapshot to the next",
        ),
    ],
)
def test_glyph_sample_refuses_rates_over_one_and_a_file_it_cannot_continue(tmp_path, files, options, message):
    out = tmp_path / "next.csv"
    paths = {"bad": files["bad.csv"], "good": files["good.csv"]}
    options = [option.format(**paths) for option in options]
    result = CliRunner().invoke(cli, ["glyph-sample", str(out), *options])
    assert (result.exit_code, result.stdout, result.stderr.splitlines()[-1]) == (
        2,
        "",
        "Error: " + message.format(**paths),
    )
    assert not out.exists()


def test_glyph_sample_sums_of_exactly_one_are_fine(tmp_path):
    out = tmp_path / "next.csv"
    result = CliRunner().invoke(
        cli, ["glyph-sample", str(out), "--after", str(SAMPLE), "--changed", "0.5", "--removed", "0.5"]
    )
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.startswith(f"Wrote {len(open(out).readlines()) - 1} listings to {out}; since {SAMPLE}: ")
